"""`make demo`: the hostnames example on this machine, no cluster needed.

Starts three "pods" (serve.py on 127.0.0.11-13:9376) and the controller on this folder, shows the
answers rotating, then runs until Ctrl-C and stops every process it started.
DEMO_HTTP_PORT / DEMO_HTTPS_PORT / DEMO_HEALTH_PORT change the ports; DEMO_SECONDS stops it after
that many seconds (used by the tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PODS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]


def get(url: str, host: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status, resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError as exc:
        return 0, str(exc)


def main() -> int:
    http_port = int(os.environ.get("DEMO_HTTP_PORT", "8080"))
    https_port = int(os.environ.get("DEMO_HTTPS_PORT", "8443"))
    health_port = int(os.environ.get("DEMO_HEALTH_PORT", "10254"))
    seconds = float(os.environ.get("DEMO_SECONDS", "0"))
    work = tempfile.mkdtemp(prefix="ingressctl-demo-")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes: list[subprocess.Popen[bytes]] = []
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        processes.append(subprocess.Popen([sys.executable, str(HERE / "serve.py"), *PODS], env=env))
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ingressctl",
                    "run",
                    "--manifests",
                    str(HERE),
                    "--work-dir",
                    work,
                    "--http-port",
                    str(http_port),
                    "--https-port",
                    str(https_port),
                    "--health-port",
                    str(health_port),
                    "--listen-address",
                    "127.0.0.1",
                    "--health-address",
                    "127.0.0.1",
                ],
                env=env,
            )
        )
        deadline = time.monotonic() + 30
        while get(f"http://127.0.0.1:{health_port}/readyz")[0] != 200:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                print("the controller did not become ready; see the log above", file=sys.stderr)
                return 1
            time.sleep(0.1)
        print("\n=== ingressctl is serving the hostnames example ===")
        for _ in range(6):
            print("  ", get(f"http://127.0.0.1:{http_port}/", "hostnames.local")[1])
        print(
            f"""
Try it:
  curl -H 'Host: hostnames.local' http://127.0.0.1:{http_port}/      (answers rotate over the 3 pods)
  curl -k --resolve hostnames.local:{https_port}:127.0.0.1 https://hostnames.local:{https_port}/
  curl http://127.0.0.1:{health_port}/metrics | grep ingressctl_nginx_reloads
Edit {HERE / "hostnames.yaml"} (e.g. remove an endpoint): nginx follows without a restart,
and endpoint changes do not even reload it. Ctrl-C stops everything.
""",
            flush=True,
        )
        started = time.monotonic()
        while not stop and not (seconds and time.monotonic() - started > seconds):
            if any(p.poll() is not None for p in processes):
                print("a demo process exited unexpectedly", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        for p in reversed(processes):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(processes):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)
        print("demo stopped")


if __name__ == "__main__":
    sys.exit(main())
