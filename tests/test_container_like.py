"""`ingressctl run` as the container runs it, without a container engine: an unprivileged user, no
capabilities, no_new_privs, a read-only root filesystem with only the work dir writable (a private
mount namespace, like readOnlyRootFilesystem plus an emptyDir), the templates and Lua code in
read-only copies found through INGRESSCTL_TEMPLATES_DIR / INGRESSCTL_LUA_DIR (like /app in the
image), high ports. It must start nginx, become ready and serve a real backend on 127.0.0.x.

Needs root (to build the mount namespace and drop to the unprivileged user), util-linux's unshare
and setpriv, and nginx with the Lua module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    REPO,
    _alive,
    backend,
    endpoint_slice,
    free_port,
    ingress,
    ingress_class,
    pods,
    request,
    rule,
    service,
    wait_for,
    write_manifests,
)

UNPRIVILEGED = 65534  # nobody/nogroup; the image uses 101, taken by a system user on some hosts
BACKENDS = ["127.0.0.71", "127.0.0.72"]

# Runs as root inside the new (private) mount namespace, then becomes the unprivileged user:
# the work dir stays writable, the root filesystem and /dev/shm become read-only.
LAUNCHER = """\
set -eu
work="$1"; uid="$2"; shift 2
mount --bind "$work" "$work"
mount -o remount,bind,ro /
mount -o remount,bind,ro /dev/shm
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs \
    --inh-caps=-all --bounding-set=-all -- "$@"
"""


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def children(pid: int) -> list[int]:
    return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A directory outside pytest's private tmp (which the unprivileged user cannot enter)."""
    base = Path(tempfile.mkdtemp(prefix="ingressctl-container-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def read_only_copy(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@contextlib.contextmanager
def controller_as_in_the_image(
    sandbox: Path, manifests: Path
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    work = sandbox / "work"  # the emptyDir: owned by the user, private
    work.mkdir(mode=0o700)
    os.chown(work, UNPRIVILEGED, UNPRIVILEGED)
    app = sandbox / "app"
    read_only_copy(REPO / "templates", app / "templates")
    read_only_copy(REPO / "lua", app / "lua")
    ports = {"http": free_port(), "https": free_port(), "health": free_port()}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
        "INGRESSCTL_TEMPLATES_DIR": str(app / "templates"),
        "INGRESSCTL_LUA_DIR": str(app / "lua"),
        "INGRESSCTL_WORK_DIR": str(work),
        "INGRESSCTL_HTTP_PORT": str(ports["http"]),
        "INGRESSCTL_HTTPS_PORT": str(ports["https"]),
    }
    command = [
        shutil.which("unshare") or "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        LAUNCHER,
        "launcher",
        str(work),
        str(UNPRIVILEGED),
        sys.executable,
        "-m",
        "ingressctl",
        "run",
        "--manifests",
        str(manifests),
        "--listen-address",
        "127.0.0.1",
        "--health-address",
        "127.0.0.1",
        f"--health-port={ports['health']}",
        "--nginx-binary",
        shutil.which("nginx") or "nginx",
        "--log-level",
        "debug",
    ]
    log = (sandbox / "controller.log").open("wb")
    # Like runc (fixStdioPermissions), hand the process stdio it owns: nginx reopens /dev/stdout.
    os.fchown(log.fileno(), UNPRIVILEGED, UNPRIVILEGED)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    nginx_master = None
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"exited with {process.returncode}:\n{(sandbox / 'controller.log').read_text()}")
            nonlocal nginx_master
            nginx_master = next(iter(children(process.pid)), None)
            return request(ports["health"], host="localhost", path="/readyz").status == 200

        try:
            wait_for(ready, timeout=30, what="the controller's /readyz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{(sandbox / 'controller.log').read_text()}") from None
        yield process, ports
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        if nginx_master is not None and _alive(nginx_master):
            os.kill(nginx_master, signal.SIGKILL)
            wait_for(lambda: not _alive(nginx_master), timeout=5, what="nginx master gone")


def test_serves_as_an_unprivileged_user_on_a_read_only_filesystem(sandbox: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user in a read-only mount namespace")
    for tool in ("unshare", "setpriv", "nginx"):
        assert shutil.which(tool), f"{tool} is not installed"
    manifests = sandbox / "manifests"
    manifests.mkdir()
    port = free_port()
    write_manifests(
        manifests,
        "app.yaml",
        [
            ingress_class(),
            service("app", target=port),
            endpoint_slice("app", BACKENDS, port=port),
            ingress("app", rules=[rule("container.local", ("/", "Prefix", backend("app")))]),
        ],
    )
    for path in [manifests, *manifests.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)

    with pods(BACKENDS, port) as started, controller_as_in_the_image(sandbox, manifests) as (process, ports):
        answers = [request(ports["http"], host="container.local") for _ in range(6)]
        assert [r.status for r in answers] == [200] * 6
        assert {r.pod for r in answers} == set(BACKENDS)
        assert sum(p.requests for p in started) == 6

        # What runs is unprivileged: the controller, the nginx master and its workers.
        master = children(process.pid)[0]
        workers = children(master)
        assert workers
        for pid in [process.pid, master, *workers]:
            assert status_field(pid, "Uid").split() == [str(UNPRIVILEGED)] * 4
            assert status_field(pid, "Gid").split() == [str(UNPRIVILEGED)] * 4
            assert int(status_field(pid, "CapEff"), 16) == 0
            assert int(status_field(pid, "CapBnd"), 16) == 0
            assert status_field(pid, "NoNewPrivs") == "1"
        # ... and the root filesystem really is read-only for it.
        mounts = Path(f"/proc/{process.pid}/mountinfo").read_text().splitlines()
        options = {line.split()[4]: line.split()[5].split(",") for line in mounts}
        assert "ro" in options["/"]
        assert "rw" in options[str(sandbox / "work")]

        work_files = {p.relative_to(sandbox / "work").as_posix() for p in (sandbox / "work").rglob("*")}
        assert "nginx.conf" in work_files

    assert process.returncode == 0, (sandbox / "controller.log").read_text()
