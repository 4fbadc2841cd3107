"""Test harness: real backends on 127.0.0.x, the real controller (and so real nginx) as a
subprocess, and an HTTP(S) client that sets Host and SNI while connecting to 127.0.0.1.

Every process started here is stopped by PID when the test ends.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port no socket uses on any address. Bound on the wildcard address: pods and servers
    here listen on many 127.0.0.x addresses, and the health server on all of them."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02, what: str = "") -> Any:
    """Polls check() until it returns a truthy value; fails the test after the timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last {last!r}")


# How long "nothing else happened" checks wait: longer than the controller's minimum reload
# interval (1 s, a reload held back waits that long) plus its maximum sync delay (1 s) plus a
# reload's own time on a loaded machine. A change still pending after this would have shown.
QUIET = 3.0


# --- backends ---------------------------------------------------------------------------------


class Pod:
    """A backend "pod": an HTTP server on its own 127.0.0.x address that answers with JSON naming
    itself and echoing what it received (after `delay` seconds: a slow pod; with `headers` added to
    its answers)."""

    def __init__(
        self,
        address: str,
        port: int,
        name: str | None = None,
        *,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.address = address
        self.port = port
        self.name = name or address
        self.requests = 0
        pod = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle's algorithm holds the body
            # back until nginx's delayed ACK of the headers (about 40 ms per answer).
            disable_nagle_algorithm = True

            def _answer(self) -> None:
                pod.requests += 1
                if delay:
                    time.sleep(delay)
                length = int(self.headers.get("Content-Length") or 0)
                received = self.rfile.read(length) if length else b""
                body = json.dumps(
                    {
                        "pod": pod.name,
                        "path": self.path,
                        "method": self.command,
                        "headers": dict(self.headers),
                        "body": received.decode(errors="replace"),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *_: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.server = Server((address, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def pods(addresses: list[str], port: int) -> Iterator[list[Pod]]:
    started = [Pod(a, port) for a in addresses]
    try:
        yield started
    finally:
        for pod in started:
            pod.stop()


# --- client -----------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    peer_cert: dict[str, Any] | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def pod(self) -> str | None:
        try:
            return str(self.json()["pod"])
        except (ValueError, KeyError, TypeError):
            return None


def request(port: int, **kwargs: Any) -> Response:
    """One request; retried once if the connection was closed before any response came back.
    A reload makes old workers close connections they accepted but have not read a request from
    yet (nginx closes idle connections on shutdown): a client must retry such an idempotent
    request, as real clients do. Any response, and any other error, is returned or raised as is."""
    try:
        return _request(port, **kwargs)
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
        return _request(port, **kwargs)


def _request(
    port: int,
    *,
    host: str,
    path: str = "/",
    tls: bool = False,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    address: str = "127.0.0.1",
    timeout: float = 5.0,
    body: bytes | None = None,
) -> Response:
    """One request to nginx at address:port with the given Host (and SNI for TLS)."""
    sock = socket.create_connection((address, port), timeout=timeout)
    peer_cert = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=host if not host.startswith("*") else None)
        der = sock.getpeercert(binary_form=True)
        if der:
            from cryptography import x509

            cert = x509.load_der_x509_certificate(der)
            peer_cert = {"subject": cert.subject.rfc4514_string(), "der": der}
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        body = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, peer_cert)
    finally:
        conn.close()


# --- manifests --------------------------------------------------------------------------------


def write_manifests(directory: Path, name: str, docs: list[dict[str, Any]] | str) -> Path:
    """Writes a manifest file atomically (the controller never sees a half-written file)."""
    path = directory / name
    text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs, sort_keys=False)
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def ingress_class(name: str = "ingressctl", *, default: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": meta,
        "spec": {"controller": "ingressctl.io/controller"},
    }


def service(
    name: str, *, port: int = 80, target: int | str = 8080, namespace: str = "default", port_name: str | None = "http"
) -> dict[str, Any]:
    spec_port: dict[str, Any] = {"port": port, "targetPort": target}
    if port_name:
        spec_port["name"] = port_name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [spec_port]},
    }


def endpoint_slice(
    service_name: str,
    addresses: list[str],
    *,
    port: int = 8080,
    namespace: str = "default",
    name: str | None = None,
    port_name: str | None = "http",
    not_ready: tuple[str, ...] = (),
    terminating: tuple[str, ...] = (),
) -> dict[str, Any]:
    slice_port: dict[str, Any] = {"port": port, "protocol": "TCP"}
    if port_name:
        slice_port["name"] = port_name
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-slice",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [slice_port],
        "endpoints": [
            {
                "addresses": [a],
                "conditions": {"ready": a not in not_ready, "terminating": a in terminating},
            }
            for a in addresses
        ],
    }


def opaque_secret(name: str, data: dict[str, str], *, namespace: str = "default") -> dict[str, Any]:
    """An Opaque Secret (what `kubectl create secret generic` makes), its values base64-encoded."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def backend(service_name: str, port: int | str = 80) -> dict[str, Any]:
    return {"service": {"name": service_name, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def ingress(
    name: str,
    *,
    rules: list[dict[str, Any]] | None = None,
    namespace: str = "default",
    class_name: str | None = "ingressctl",
    default_backend: dict[str, Any] | None = None,
    tls: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    if created:
        meta["creationTimestamp"] = created
    spec: dict[str, Any] = {}
    if class_name:
        spec["ingressClassName"] = class_name
    if default_backend:
        spec["defaultBackend"] = default_backend
    if tls:
        spec["tls"] = tls
    if rules is not None:
        spec["rules"] = rules
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def rule(host: str | None, *paths: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"http": {"paths": [{"path": p, "pathType": t, "backend": b} for p, t, b in paths]}}
    if host:
        out["host"] = host
    return out


# --- the controller ---------------------------------------------------------------------------


@dataclass
class Controller:
    """`ingressctl run` as a subprocess, on free ports, with its own work dir."""

    manifests: Path | None
    work_dir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _settle_gave_up: bool = False

    def start(self, *, wait_ready: bool = True) -> Controller:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.work_dir.parent / f"{self.work_dir.name}.log"
        args = [
            sys.executable,
            "-m",
            "ingressctl",
            "run",
            "--work-dir",
            str(self.work_dir),
            "--http-port",
            str(self.http_port),
            "--https-port",
            str(self.https_port),
            "--health-port",
            str(self.health_port),
            "--listen-address",
            "127.0.0.1",
            "--health-address",
            "127.0.0.1",
            "--log-level",
            "debug",
            *self.extra_args,
        ]
        if self.manifests is not None:
            args += ["--manifests", str(self.manifests)]
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        # Append mode: nginx reopens /dev/stdout as a file of its own (O_APPEND); a plain "wb" offset
        # of ours would overwrite its access log lines.
        self.log_path.write_bytes(b"")
        self.process = subprocess.Popen(
            args, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        if wait_ready:
            self.wait_ready()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def health(self, path: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"controller exited with {self.process.returncode}:\n{self.log()}")
            return self.health("/readyz") == 200

        try:
            wait_for(ready, timeout=timeout, what="controller ready")
        except AssertionError as exc:
            tail = "\n".join(self.log().splitlines()[-40:])
            raise AssertionError(f"{exc}; the controller's log ends:\n{tail}") from None

    def metric(self, name: str) -> float:
        conn = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=2)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        # The sum over the family's label values (e.g. reloads by reason).
        values = re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        return sum(float(v) for v in values)

    def reloads(self) -> int:
        return int(self.metric("ingressctl_nginx_reloads_total"))

    def backend_updates(self) -> int:
        return int(self.metric("ingressctl_backend_updates_total"))

    def master_pid(self) -> int:
        return int((self.work_dir / "nginx.pid").read_text())

    def worker_pids(self) -> list[int]:
        pid = self.master_pid()
        return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())

    def settle(self, timeout: float = 5.0) -> None:
        """Waits until nginx runs exactly its configured workers, none of them a draining one from
        a previous configuration. Tests check what the current configuration serves; requests
        during a reload's hand-over are bench section 4's subject.

        Why a first good answer is not enough: on SIGHUP the nginx master starts the new workers,
        sleeps 100 ms ("allow new processes to start", ngx_process_cycle.c) and only then tells the
        old workers to quit. In that window old and new workers both accept on the shared listening
        sockets, so a test that saw the new configuration once could get the old one on its next
        connection (the 1-in-4 CI flake of the previous session: a 404 or the previous certificate
        right after a "served" check). The controller's own "live" check waits for the old workers
        to stop accepting (Nginx.wait_stopped_accepting); tests that poll nginx directly wait here."""
        if self._settle_gave_up:
            return
        deadline = time.monotonic() + timeout
        expected, pids = self._configured_workers(), []
        while time.monotonic() < deadline:
            try:
                pids = self.worker_pids()
            except (OSError, ValueError):
                return
            draining, workers = False, 0
            for pid in pids:
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    draining = draining or b"shutting down" in cmdline
                    # Not the cache manager and loader (auth-cache-key's proxy_cache_path starts them).
                    workers += b"cache " not in cmdline
            if not draining and workers == expected:
                return
            time.sleep(0.005)
        # An unexpected worker count: do not slow every request down, but say so (requests may
        # reach a draining worker from now on).
        self._settle_gave_up = True
        warnings.warn(f"settle() gave up after {timeout}s: workers {pids}", stacklevel=2)

    def _configured_workers(self) -> int:
        try:
            text = (self.work_dir / "nginx.conf").read_text()
        except OSError:
            text = ""
        match = re.search(r"^worker_processes (\d+);", text, re.M)
        return int(match.group(1)) if match else (os.cpu_count() or 1)

    def get(self, host: str, path: str = "/", **kwargs: Any) -> Response:
        self.settle()
        tls = kwargs.pop("tls", False)
        return request(self.https_port if tls else self.http_port, host=host, path=path, tls=tls, **kwargs)

    def stop(self) -> None:
        if self.process is None:
            return
        master, workers = None, []
        with contextlib.suppress(OSError, ValueError):
            master = self.master_pid()
            workers = self.worker_pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # The controller stops nginx; make sure, by PID, that it did (master first, so that it
        # takes its workers down, then any worker left).
        for pid in [p for p in (master, *workers) if p is not None]:
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
                with contextlib.suppress(AssertionError):
                    wait_for(lambda pid=pid: not _alive(pid), timeout=5, what=f"pid {pid} gone")
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


@contextlib.contextmanager
def running_controller(tmp: Path, manifests: Path | None, **kwargs: Any) -> Iterator[Controller]:
    ctl = Controller(manifests=manifests, work_dir=tmp / "work", **kwargs)
    try:
        ctl.start()
        yield ctl
    finally:
        ctl.stop()


def unix_request(socket_path: Path, method: str, url: str, body: bytes | None = None) -> Response:
    """One HTTP request over a unix socket (the Lua configuration API)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(socket_path))
    conn = http.client.HTTPConnection("localhost")
    conn.sock = sock
    try:
        conn.request(method, url, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@contextlib.contextmanager
def lua_nginx(work: Path, *, requires: list[str], location: str, dict_size: str = "8m") -> Iterator[int]:
    """A bare nginx (one worker, our Lua modules and tests/lua on the path, the shared dict) that
    requires `requires` at init and serves the Lua block `location` at /run; yields its port and
    stops it by PID. Lua code lives in modules loaded at init: started as root, the workers (nobody)
    cannot read files under pytest's 0700 tmp dirs."""
    port = free_port()
    lines = "\n".join(f'        require("{m}")' for m in requires)
    (work / "nginx.conf").write_text(
        f"""
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    lua_package_path "{REPO}/lua/?.lua;{REPO}/tests/lua/?.lua;;";
    lua_shared_dict ingressctl {dict_size};
    lua_shared_dict ingressctl_certificates 1m;
    init_by_lua_block {{
{lines}
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /run {{
            content_by_lua_block {{ {location} }}
        }}
    }}
}}
"""
    )
    nginx = subprocess.Popen(
        ["nginx", "-p", str(work), "-c", str(work / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=(work / "error.log").open("wb"),
    )
    try:
        wait_for(lambda: request(port, host="localhost", path="/nothing"), what="lua test nginx")
        yield port
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
