"""`make demo` runs demo/hostnames/run.py: it must serve the three pods in turn and clean up."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.harness import REPO, free_port


def test_hostnames_demo_rotates_and_stops_everything() -> None:
    env = {
        **os.environ,
        "DEMO_HTTP_PORT": str(free_port()),
        "DEMO_HTTPS_PORT": str(free_port()),
        "DEMO_HEALTH_PORT": str(free_port()),
        "DEMO_SECONDS": "0.5",
    }
    result = subprocess.run(
        [sys.executable, str(REPO / "demo/hostnames/run.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for pod in ("hostnames-1 (127.0.0.11)", "hostnames-2 (127.0.0.12)", "hostnames-3 (127.0.0.13)"):
        assert pod in result.stdout, result.stdout
    assert "curl -H 'Host: hostnames.local'" in result.stdout
    assert "demo stopped" in result.stdout
    # The pods and nginx were stopped: nothing listens on the pod addresses any more.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "serve.py 127.0.0.11" not in ps
    assert "ingressctl-demo-" not in ps
