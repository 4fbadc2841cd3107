"""The container image, run for real without a container engine: the controller started inside
build/rootfs (`make rootfs`: the image's Debian 13 filesystem, its nginx, its venv) the way
deploy/deployment.yaml runs it.

As in the pod: tini as PID 1 of its own PID namespace, in its own mount namespace; uid/gid 101, no
capabilities (bounding set empty), no_new_privs; the root filesystem read-only, with a tmpfs as the
work dir (the `work` emptyDir) and another as /tmp; the image's environment (Dockerfile ENV) and the
Deployment's arguments, plus `--kubeconfig` for the fake API server (mounted read-only, like a
Secret) and one loopback address of its own for 8080/8443/10254 (the machine is shared; a pod has an
IP of its own too). Traffic comes from outside the namespaces to pods on 127.0.0.x.

Needs root (namespaces, chroot), util-linux's unshare on the host; builds the rootfs when its
inputs changed (image/build-rootfs.sh, cached).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakeapi.threaded import ThreadedFakeApi, threaded_fake_api
from tests.harness import (
    REPO,
    Response,
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
)
from tests.test_dockerfile import key_values, listed_packages, runtime

ROOTFS = REPO / "build" / "rootfs"
PODS = ["127.0.0.81", "127.0.0.82"]
UID = 101

# Root in fresh mount + PID namespaces (this shell is PID 1 until it execs): the rootfs read-only,
# its own /proc, tmpfs for the work dir and /tmp, the kube dir read-only at /mnt; then into the
# root, down to uid 101 with no capability at all, and tini (PID 1, as in the image) runs the rest.
LAUNCHER = """\
set -eu
root="$1"; work="$2"; kube="$3"; shift 3
mount --bind "$root" "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o nosuid,nodev,mode=0700,uid=101,gid=101,size=256m work "$root$work"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m tmp "$root/tmp"
mount --bind "$kube" "$root/mnt"
mount -o remount,bind,ro "$root/mnt"
mount -o remount,bind,ro "$root"
exec chroot "$root" /usr/bin/setpriv --reuid=101 --regid=101 --clear-groups --no-new-privs \
    --inh-caps=-all --bounding-set=-all -- "$@"
"""


def inside(root: Path, path: str) -> str:
    """`path` as the image sees it with its symlinks resolved inside `root` (/var/run -> /run), so
    that a mount never follows an absolute link out to the host."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    for _ in range(40):
        if not parts:
            return "/" + "/".join(resolved)
        part = parts.pop(0)
        here = root.joinpath(*resolved, part)
        if here.is_symlink():
            target = os.readlink(here)
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                resolved = []
        else:
            resolved.append(part)
    raise AssertionError(f"too many links in {path}")


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def children(pid: int) -> list[int]:
    try:
        return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return []


def deployment_container() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "deploy" / "deployment.yaml").read_text())
    return dict(doc["spec"]["template"]["spec"]["containers"][0])


def free_address() -> str:
    """A loopback address of our own, on which the Deployment's fixed ports are free."""
    ports = [p["containerPort"] for p in deployment_container()["ports"]]
    for _ in range(50):
        address = f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind((address, port))
        except OSError:
            continue
        return address
    raise AssertionError("no free loopback address for 8080/8443/10254")


@pytest.fixture(scope="module")
def rootfs() -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root: namespaces, chroot and the rootfs build (CI runs as root)")
    assert shutil.which("unshare"), "util-linux's unshare is not installed"
    # Cached: returns at once unless the package list or the sources changed since the last build.
    build = subprocess.run(
        [str(REPO / "image" / "build-rootfs.sh"), str(ROOTFS)], capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return ROOTFS


@dataclass
class Pod:
    """The controller's pod: host PIDs of tini (the namespace's PID 1) and what it started."""

    launcher: subprocess.Popen[bytes]
    address: str
    ports: dict[str, int]
    log: Path

    @property
    def tini(self) -> int:
        (pid,) = children(self.launcher.pid)
        return pid

    @property
    def controller(self) -> int:
        (pid,) = children(self.tini)
        return pid

    @property
    def master(self) -> int:
        (pid,) = children(self.controller)
        return pid

    def get(self, host: str, path: str = "/", *, tls: bool = False, timeout: float = 5.0) -> Response:
        port = self.ports["https" if tls else "http"]
        return request(port, host=host, path=path, tls=tls, address=self.address, timeout=timeout)

    def metric(self, name: str) -> float:
        body = request(self.ports["health"], host="localhost", path="/metrics", address=self.address).body.decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith(name) and line[len(name)] in " {"
        )

    def reloads(self) -> int:
        return int(self.metric("ingressctl_nginx_reloads_total"))

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def pod_from_the_image(root: Path, api: ThreadedFakeApi, tmp: Path) -> Iterator[Pod]:
    container = deployment_container()
    env_image = key_values(runtime("ENV"))
    work = env_image["INGRESSCTL_WORK_DIR"]
    kube = tmp / "kube"
    kube.mkdir(mode=0o755)
    api.write_kubeconfig(kube / "kubeconfig").chmod(0o644)
    address = free_address()
    ports = {p["name"]: int(p["containerPort"]) for p in container["ports"]}
    debian_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {k: v.replace("$PATH", debian_path) for k, v in env_image.items()}
    env |= {"POD_NAME": "ingressctl-rootfs", "POD_NAMESPACE": "ingressctl"}
    image_command = [*json.loads(runtime("ENTRYPOINT")[0]), *container["args"]]
    command = [
        shutil.which("unshare") or "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        LAUNCHER,
        "launcher",
        str(root),
        inside(root, work),
        str(kube),
        *image_command,
        "--kubeconfig=/mnt/kubeconfig",
        f"--listen-address={address}",
        f"--health-address={address}",
        "--lease-duration=3",
        "--lease-renew-deadline=2",
        "--lease-retry-period=0.5",
    ]
    log = tmp / "controller.log"
    out = log.open("wb")
    # Like runc, hand the container stdio it owns: nginx reopens /dev/stdout and /dev/stderr.
    os.fchown(out.fileno(), UID, UID)
    launcher = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    pod = Pod(launcher, address, ports, log)
    try:

        def ready() -> bool:
            if launcher.poll() is not None:
                raise AssertionError(f"exited with {launcher.returncode}:\n{pod.text()}")
            try:
                return request(ports["health"], host="localhost", path="/readyz", address=address).status == 200
            except OSError:
                return False

        try:
            wait_for(ready, timeout=60, interval=0.1, what="the controller's /readyz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{pod.text()}") from None
        yield pod
    finally:
        tree: list[int] = []
        with contextlib.suppress(ValueError, OSError):
            tree = [pod.tini, pod.controller, pod.master, *children(pod.master)]
        if launcher.poll() is None and tree:
            os.kill(tree[0], signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                launcher.wait(timeout=30)
        if launcher.poll() is None:
            # The namespace's PID 1 dying takes every process in it down.
            if tree:
                os.kill(tree[0], signal.SIGKILL)
            launcher.kill()
            launcher.wait()
        out.close()
        for pid in tree:
            wait_for(lambda pid=pid: not _alive(pid), timeout=5, what=f"pid {pid} gone")


@pytest.fixture
def cluster() -> Iterator[ThreadedFakeApi]:
    with threaded_fake_api(bookmark_interval=1.0) as api:
        api.create(ingress_class())
        lb = service("ingressctl", namespace="ingressctl")
        api.create(lb)
        yield api


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """Outside pytest's private tmp, which uid 101 could not enter."""
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"ingressctl-rootfs-{os.getpid()}-{random.randrange(10**6)}"
    base.mkdir(mode=0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def web(host: str, service_name: str = "web") -> dict[str, Any]:
    return ingress(service_name + "-" + host.split(".")[0], rules=[rule(host, ("/", "Prefix", backend(service_name)))])


def test_the_rootfs_is_the_images_filesystem(rootfs: Path) -> None:
    # Every listed package is installed, from Debian 13; the venv and data trees are where the
    # image's environment says.
    status = (rootfs / "var" / "lib" / "dpkg" / "status").read_text()
    installed = {
        block.split("\n", 1)[0].removeprefix("Package: ")
        for block in status.split("\n\n")
        if "Status: install ok installed" in block
    }
    stages = listed_packages()
    assert stages["build"] | stages["runtime"] <= installed
    assert (rootfs / "etc" / "debian_version").read_text().startswith("13.")
    env = key_values(runtime("ENV"))
    assert (rootfs / env["INGRESSCTL_TEMPLATES_DIR"].lstrip("/") / "nginx.conf.j2").is_file()
    assert (rootfs / env["INGRESSCTL_LUA_DIR"].lstrip("/") / "ingressctl" / "balancer.lua").is_file()
    assert (rootfs / "opt" / "ingressctl" / "bin" / "ingressctl").is_file()
    work = rootfs / inside(rootfs, env["INGRESSCTL_WORK_DIR"]).lstrip("/")
    assert (work.stat().st_uid, work.stat().st_gid, work.stat().st_mode & 0o777) == (UID, UID, 0o700)
    assert "ingressctl:x:101:101:" in (rootfs / "etc" / "passwd").read_text()
    # The image's sources are this tree's (the cached app layer was rebuilt if they changed).
    installed_cli = next((rootfs / "opt" / "ingressctl" / "lib").glob("python3.*/site-packages/ingressctl/cli.py"))
    assert installed_cli.read_bytes() == (REPO / "ingressctl" / "cli.py").read_bytes()


def test_the_build_is_cached_and_says_when_it_needs_root(rootfs: Path) -> None:
    script = REPO / "image" / "build-rootfs.sh"
    stamps = {p: p.read_text() for p in rootfs.parent.glob(f"{rootfs.name}.*-key")}
    assert len(stamps) == 2
    again = subprocess.run([str(script), str(rootfs)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"rootfs: {rootfs} is up to date"
    assert {p: p.read_text() for p in stamps} == stamps
    # Not root: a clear message, nothing touched.
    user = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", str(script), "/nonexistent/rootfs"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert user.returncode == 1
    assert "make rootfs needs root" in user.stderr
    assert not Path("/nonexistent").exists()


def test_runs_as_the_deployment_runs_it(rootfs: Path, cluster: ThreadedFakeApi, sandbox: Path) -> None:
    port = free_port()
    cluster.create(service("web", target=port))
    cluster.create(endpoint_slice("web", PODS, port=port))
    cluster.create(web("a.example.com"))
    with pods(PODS, port) as started, pod_from_the_image(rootfs, cluster, sandbox) as pod:
        # Served from outside the namespaces, over HTTP and HTTPS, round-robin over both pods.
        answers = [pod.get("a.example.com") for _ in range(6)]
        assert [r.status for r in answers] == [200] * 6
        assert {r.pod for r in answers} == set(PODS)
        assert pod.get("a.example.com", tls=True).pod in PODS
        assert sum(p.requests for p in started) == 7
        assert pod.ports == {"http": 8080, "https": 8443, "health": 10254}

        # tini is PID 1 of a PID namespace of its own, in a mount namespace of its own.
        assert status_field(pod.tini, "NSpid").split()[-1] == "1"
        for ns in ("pid", "mnt"):
            assert os.readlink(f"/proc/{pod.tini}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        # Everything in it is uid/gid 101 with no capability, no_new_privs, no supplementary group.
        workers = children(pod.master)
        assert workers
        for pid in [pod.tini, pod.controller, pod.master, *workers]:
            assert status_field(pid, "Uid").split() == [str(UID)] * 4
            assert status_field(pid, "Gid").split() == [str(UID)] * 4
            assert status_field(pid, "Groups") == ""
            for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(status_field(pid, caps), 16) == 0, caps
            assert status_field(pid, "NoNewPrivs") == "1"
        # The image's programs: Debian 13's nginx, the venv's Python, tini.
        root = Path(f"/proc/{pod.master}/root")
        assert os.path.samefile(root, rootfs)
        assert Path(f"/proc/{pod.tini}/cmdline").read_bytes().split(b"\0")[0] == b"/usr/bin/tini"
        assert b"/opt/ingressctl/bin/ingressctl" in Path(f"/proc/{pod.controller}/cmdline").read_bytes()
        version = subprocess.run(["chroot", str(rootfs), "/usr/sbin/nginx", "-v"], capture_output=True, text=True)
        assert "nginx/1.26" in version.stderr
        # Read-only root; the work dir and /tmp are the writable tmpfs mounts (mount points as the
        # chrooted process sees them).
        mounts = {
            line.split()[4]: (line.split(" - ")[1].split()[0], line.split()[5].split(","))
            for line in Path(f"/proc/{pod.controller}/mountinfo").read_text().splitlines()
        }
        work = inside(rootfs, key_values(runtime("ENV"))["INGRESSCTL_WORK_DIR"])
        assert "ro" in mounts["/"][1]
        for writable in (work, "/tmp"):
            assert mounts[writable][0] == "tmpfs" and "rw" in mounts[writable][1], writable
        assert "ro" in mounts["/mnt"][1]
        assert (rootfs / work.lstrip("/")).stat().st_mode & 0o777 == 0o700  # the image's dir, unchanged
        # The rendered configuration takes this nginx's forms (detected from `nginx -V`) and is
        # warning-free on it: `http2 on;`, no `listen ... http2`.
        conf = Path(f"/proc/{pod.master}/root{work}/nginx.conf").read_text()
        assert "http2 on;" in conf and "ssl http2" not in conf
        # With `http2 on;` HTTPS negotiates h2 by ALPN, and the plain port, which still answers
        # HTTP/1.1, also takes HTTP/2 with prior knowledge (h2c) on this nginx (README's matrix).
        for scheme, port, how in (("https", 8443, "--http2"), ("http", 8080, "--http2-prior-knowledge")):
            curl = subprocess.run(
                [
                    "curl",
                    "-sk",
                    how,
                    "--max-time",
                    "5",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                    "--resolve",
                    f"a.example.com:{port}:{pod.address}",
                    f"{scheme}://a.example.com:{port}/",
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            assert curl.stdout == "200 2", (scheme, curl.stdout, curl.stderr)
        assert pod.get("a.example.com").status == 200  # HTTP/1.1 on the plain port
        assert "[warn]" not in pod.text() and "[emerg]" not in pod.text(), pod.text()


class SlowPod:
    """A backend that holds each request for `delay` seconds: a request in flight at SIGTERM."""

    def __init__(self, address: str, port: int, delay: float) -> None:
        self.received = threading.Event()

        slow = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                slow.received.set()
                time.sleep(delay)
                body = b'{"pod": "slow"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_changes_and_a_graceful_stop(rootfs: Path, cluster: ThreadedFakeApi, sandbox: Path) -> None:
    port = free_port()
    cluster.create(service("web", target=port))
    cluster.create(endpoint_slice("web", PODS[:1], port=port))
    cluster.create(web("a.example.com"))
    slow = SlowPod("127.0.0.83", port, delay=1.5)
    try:
        with pods(PODS, port), pod_from_the_image(rootfs, cluster, sandbox) as pod:
            assert pod.get("a.example.com").pod == PODS[0]
            reloads = pod.reloads()

            # An endpoint change reaches the balancer without a reload.
            cluster.update(endpoint_slice("web", PODS[1:], port=port))
            wait_for(lambda: pod.get("a.example.com").pod == PODS[1], what="new endpoint served")
            assert pod.reloads() == reloads

            # A new host reloads nginx exactly once.
            cluster.create(service("slow", target=port))
            cluster.create(endpoint_slice("slow", ["127.0.0.83"], port=port))
            cluster.create(web("b.example.com", "slow"))
            wait_for(lambda: pod.get("b.example.com", timeout=10).status == 200, timeout=20, what="new host served")
            time.sleep(0.5)  # a second reload, if one were coming, would have started
            assert pod.reloads() == reloads + 1
            assert pod.get("a.example.com").pod == PODS[1]

            # SIGTERM to PID 1 (what the kubelet sends) with a request in flight: it completes,
            # nginx drains, everything exits, status 0.
            slow.received.clear()
            in_flight: list[Response | BaseException] = []

            def slow_request() -> None:
                try:
                    in_flight.append(pod.get("b.example.com", timeout=10))
                except BaseException as exc:  # reported below
                    in_flight.append(exc)

            client = threading.Thread(target=slow_request)
            client.start()
            assert slow.received.wait(5), "the slow request did not reach its pod"
            tree = [pod.tini, pod.controller, pod.master, *children(pod.master)]
            os.kill(pod.tini, signal.SIGTERM)
            client.join(15)
            assert len(in_flight) == 1 and isinstance(in_flight[0], Response), in_flight
            assert in_flight[0].status == 200 and in_flight[0].body == b'{"pod": "slow"}'
            assert pod.launcher.wait(timeout=30) == 0, pod.text()
            for pid in tree:
                assert not _alive(pid)
            with pytest.raises(OSError):
                pod.get("a.example.com", timeout=2)
    finally:
        slow.stop()
