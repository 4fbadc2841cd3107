"""demo/kind/up.sh and down.sh, without Docker or a cluster: shellcheck, strict mode, the
messages for missing tools, down.sh's idempotence, and the names they share with the controller.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KIND = ROOT / "demo" / "kind"
SCRIPTS = sorted(KIND.glob("*.sh"))
TOOLS = ("docker", "kind", "kubectl", "curl")


def test_the_demo_has_both_scripts() -> None:
    assert [p.name for p in SCRIPTS] == ["down.sh", "up.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_strict_executable_bash(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert script.stat().st_mode & stat.S_IXUSR
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=10)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    # Also the optional checks (-o all): errexit pitfalls matter in a script that must stop on errors.
    result = subprocess.run(
        [shellcheck, "--shell=bash", "--enable=all", str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def tool_dir(tmp_path: Path, fakes: dict[str, str]) -> Path:
    """A PATH directory with the few real commands the scripts run before their checks, plus fake
    ones (shell scripts) standing in for the tools that are not installed here."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for real in ("dirname", "grep"):
        found = shutil.which(real)
        assert found
        (bin_dir / real).symlink_to(found)
    for name, body in fakes.items():
        fake = bin_dir / name
        fake.write_text(f"#!/bin/bash\n{body}\n")
        fake.chmod(0o755)
    return bin_dir


def run_script(script: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(script)],
        env={"PATH": str(bin_dir), **env},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=bin_dir.parent,
    )


def test_up_names_every_missing_tool(tmp_path: Path) -> None:
    result = run_script(KIND / "up.sh", tool_dir(tmp_path, {}))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    for tool in TOOLS:
        assert any(line.startswith(f"up.sh: {tool} is required but not on PATH.") for line in lines), tool
    assert len(lines) == len(TOOLS)


def test_up_names_only_the_missing_tool(tmp_path: Path) -> None:
    bin_dir = tool_dir(tmp_path, {"docker": "exit 0", "kubectl": "exit 0", "curl": "exit 0"})
    result = run_script(KIND / "up.sh", bin_dir)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "up.sh: kind is required but not on PATH. "
        "Install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
    ]


def test_up_stops_when_the_docker_daemon_does_not_answer(tmp_path: Path) -> None:
    fakes = {"docker": 'echo "Cannot connect to the Docker daemon" >&2; exit 1', "kind": "exit 0"}
    fakes |= {"kubectl": "exit 0", "curl": "exit 0"}
    result = run_script(KIND / "up.sh", tool_dir(tmp_path, fakes))
    assert result.returncode == 1
    assert "the Docker daemon does not answer" in result.stderr
    assert "Cannot connect" not in result.stderr + result.stdout


FAKE_KIND = """\
echo "$*" >> "$KIND_CALLS"
if [[ "$1 $2" == "get clusters" ]]; then
  [[ -n "$KIND_CLUSTERS" ]] && printf '%s\\n' $KIND_CLUSTERS
  exit 0
fi
if [[ "$1 $2" == "delete cluster" ]]; then exit 0; fi
exit 3"""


def test_down_deletes_the_cluster_once_and_is_idempotent(tmp_path: Path) -> None:
    bin_dir = tool_dir(tmp_path, {"kind": FAKE_KIND})
    calls = tmp_path / "calls"
    env = {"KIND_CALLS": str(calls)}

    first = run_script(KIND / "down.sh", bin_dir, KIND_CLUSTERS="other ingressctl", **env)
    assert first.returncode == 0, first.stderr
    assert calls.read_text().splitlines() == ["get clusters", "delete cluster --name ingressctl"]

    calls.unlink()
    again = run_script(KIND / "down.sh", bin_dir, KIND_CLUSTERS="other", **env)
    assert again.returncode == 0, again.stderr
    assert "nothing to delete" in again.stdout
    assert calls.read_text().splitlines() == ["get clusters"]

    calls.unlink()
    named = run_script(KIND / "down.sh", bin_dir, KIND_CLUSTERS="ingressctl-x", CLUSTER_NAME="ingressctl-x", **env)
    assert named.returncode == 0, named.stderr
    assert calls.read_text().splitlines() == ["get clusters", "delete cluster --name ingressctl-x"]


def test_down_without_kind_says_so(tmp_path: Path) -> None:
    result = run_script(KIND / "down.sh", tool_dir(tmp_path, {}))
    assert result.returncode == 1
    assert result.stderr.startswith("down.sh: kind is required but not on PATH.")


def test_up_uses_the_clusters_published_port_and_the_demo_host() -> None:
    text = (KIND / "up.sh").read_text()
    assert 'url="http://127.0.0.1/"' in text, "kind-config.yaml publishes the Service on 127.0.0.1:80"
    assert 'host="hostnames.local"' in text
    assert '"${here}/kind-config.yaml"' in text
    assert 'kubectl kustomize "${here}/controller"' in text
    assert 'kc apply -f "${here}/hostnames.yaml"' in text


def test_up_reads_the_reload_counter_the_controller_exports() -> None:
    from prometheus_client import generate_latest

    from ingressctl.metrics import Metrics

    match = re.search(r'^reload_metric="([a-z_]+)"$', (KIND / "up.sh").read_text(), re.MULTILINE)
    assert match
    metrics = Metrics()
    metrics.reloads.labels(reason="host_added").inc()
    metrics.reloads.labels(reason="tls_changed").inc(2)
    exported = generate_latest(metrics.registry).decode()
    # up.sh's own sed expression finds every reason's line; their sum is the reloads.
    expression = re.search(r'values="\$\(sed -n "(.+)" <<<', (KIND / "up.sh").read_text())
    assert expression
    script = expression.group(1).replace("${reload_metric}", match.group(1)).replace("\\$", "$")
    values = subprocess.run(
        ["sed", "-n", script],
        input=exported,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sum(float(v) for v in values) == 3.0
    # ... on the health port, which up.sh reaches through the API server's pod proxy.
    proxied = re.findall(r":(\d+)/proxy/metrics", (KIND / "up.sh").read_text())
    with (ROOT / "deploy" / "deployment.yaml").open() as f:
        (container,) = yaml.safe_load(f)["spec"]["template"]["spec"]["containers"]
    health = {p["name"]: p["containerPort"] for p in container["ports"]}["health"]
    assert proxied == [str(health)]
