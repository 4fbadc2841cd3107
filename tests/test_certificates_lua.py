"""Certificates served by SNI from the Lua store, through real nginx and real TLS handshakes: exact
host, then a one-label wildcard, then the default certificate; 100 certificates rotated under load
with no reload and no failed request; a certificate OpenSSL refuses rejected alone while the others
rotate; the store's API refuses what it cannot serve and never hands out a key; one SSL context."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ingressctl.config import Certificate, GlobalOptions
from ingressctl.dataplane.paths import Paths, lua_dir, templates_dir
from ingressctl.dataplane.render import quote
from tests.certs import make_cert, make_chain, tls_secret
from tests.harness import (
    backend,
    endpoint_slice,
    free_port,
    ingress,
    pods,
    rule,
    running_controller,
    service,
    unix_request,
    wait_for,
    write_manifests,
)
from tests.timing import Lag

PORT = 18942
POD = "127.42.0.1"
ROTATED = 100
LOAD_SECONDS = 30.0  # the most a load loop runs
LOAD_REQUESTS = 50000  # and the most requests it sends

# OpenSSL at security level 3 for nginx only (as in test_tenants_nginx): an RSA 2048 key passes
# the controller's level-2 checks and OpenSSL in nginx refuses it.
SECLEVEL_3 = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = DEFAULT:@SECLEVEL=3
"""


@pytest.fixture
def pod() -> Iterator[None]:
    with pods([POD], PORT):
        yield


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def https(port: int, host: str | None, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """One request over a new TLS connection with SNI `host` (None: no SNI): (status, peer cert DER)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with raw, ctx.wrap_socket(raw, server_hostname=host) as conn:
        peer = conn.getpeercert(binary_form=True) or b""
        conn.sendall(f"GET / HTTP/1.1\r\nHost: {host or 'none'}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, peer


def host_objects(hosts: list[str], secrets: dict[str, str]) -> list[dict[str, Any]]:
    """One Ingress per host, with a TLS section naming its Secret."""
    return [
        ingress(
            f"h{i}",
            rules=[rule(h, ("/", "Prefix", backend("web")))],
            tls=[{"hosts": [h], "secretName": secrets[h]}],
            created=f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
        )
        for i, h in enumerate(hosts)
    ]


@dataclass
class Load:
    """Bounded HTTPS load over new connections (each one a handshake), cycling through hosts; records
    failures and, per host, when it last served a certificate in `old` (the connection's start)."""

    port: int
    hosts: list[str]
    old: set[bytes] = field(default_factory=set)
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    last_old: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, offset: int) -> None:
        deadline = time.monotonic() + LOAD_SECONDS
        i = offset
        while not self._stop.is_set() and time.monotonic() < deadline and self.requests < LOAD_REQUESTS:
            host = self.hosts[i % len(self.hosts)]
            i += 1
            started = time.monotonic()
            try:
                status, peer = https(self.port, host)
            except (OSError, ssl.SSLError) as exc:
                status, peer = 0, repr(exc).encode()
            with self._lock:
                self.requests += 1
                if status != 200:
                    self.failures.append(f"{host}: {status} {peer[:80]!r}")
                elif peer in self.old:
                    self.last_old[host] = max(self.last_old.get(host, 0.0), started)

    def __enter__(self) -> Load:
        for n in range(3):
            thread = threading.Thread(target=self._run, args=(n * 7,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=LOAD_SECONDS + 10)


def test_sni_exact_then_wildcard_then_default(tmp_path: Path, manifests: Path, pod: None) -> None:
    exact, wild, inner, default = (
        make_cert("a.certs.example"),
        make_cert("*.w.certs.example"),
        make_cert("x.w.certs.example"),
        make_cert("default.certs.example"),
    )
    secrets = {"a.certs.example": "a", "*.w.certs.example": "w", "x.w.certs.example": "x"}
    write_manifests(
        manifests,
        "sni.yaml",
        [
            service("web", target=PORT),
            endpoint_slice("web", [POD], port=PORT),
            tls_secret("a", *exact),
            tls_secret("w", *wild),
            tls_secret("x", *inner),
            tls_secret("default-cert", *default, namespace="ctl"),
            *host_objects(list(secrets), secrets),
            ingress("plain", rules=[rule("plain.certs.example", ("/", "Prefix", backend("web")))]),
        ],
    )
    flags = ["--default-ssl-certificate", "ctl/default-cert"]
    with running_controller(tmp_path, manifests, extra_args=flags) as ctl:
        port = ctl.https_port
        wait_for(lambda: https(port, "a.certs.example") == (200, der(exact[0])), what="a.certs.example's certificate")
        cases = {
            "a.certs.example": exact,  # exact
            "A.Certs.Example": exact,  # SNI is case-insensitive
            "b.w.certs.example": wild,  # one label under the wildcard
            "x.w.certs.example": inner,  # an exact host wins over the wildcard
            "y.x.w.certs.example": default,  # a wildcard covers one label only
            "w.certs.example": default,  # nor the bare domain
            "plain.certs.example": default,  # a host without TLS
            "unknown.example": default,  # no server at all
        }
        for name, (cert, _) in cases.items():
            assert https(port, name)[1] == der(cert), name
        assert https(port, None)[1] == der(default[0])  # no SNI
        assert https(port, "b.w.certs.example")[0] == 200
        # One SSL context for every server (the default server's), plus the internal TLS socket's.
        conf = (ctl.work_dir / "nginx.conf").read_text()
        assert conf.count("ssl_certificate_key ") == 2
        assert conf.count("ssl_client_hello_by_lua_block") == 1
        # The API's socket (nginx makes it 0666) sits in a directory only the controller's user enters.
        assert stat.S_IMODE((ctl.work_dir / "api").stat().st_mode) == 0o700
        # The store's view names certificates, never a key; no tenant's key is on disk.
        view = unix_request(ctl.work_dir / "api" / "lua-api.sock", "GET", "/configuration/certificates")
        assert view.status == 200 and b"PRIVATE KEY" not in view.body and b"BEGIN" not in view.body
        doc = view.json()
        assert set(doc["hosts"]) == set(secrets) and len(doc["certificates"]) == 4
        on_disk = b"".join(p.read_bytes() for p in (ctl.work_dir / "certs").glob("*.pem"))
        assert all(key not in on_disk for _, key in (exact, wild, inner, default))


def test_rotating_100_certificates_under_load_reloads_nothing(
    tmp_path: Path, manifests: Path, pod: None, lag: Lag
) -> None:
    hosts = [f"r{i:03d}.rotate.example" for i in range(ROTATED)]
    secrets = {h: f"s{i:03d}" for i, h in enumerate(hosts)}
    old = {h: make_cert(h) for h in hosts}
    new = {h: make_cert(h) for h in hosts}
    write_manifests(
        manifests,
        "hosts.yaml",
        [service("web", target=PORT), endpoint_slice("web", [POD], port=PORT), *host_objects(hosts, secrets)],
    )
    write_manifests(manifests, "secrets.yaml", [tls_secret(secrets[h], *old[h]) for h in hosts])
    with running_controller(tmp_path, manifests) as ctl:
        port = ctl.https_port
        for h in hosts:
            wait_for(lambda h=h: https(port, h) == (200, der(old[h][0])), what=f"{h} serves its certificate")
        ctl.settle()  # the reload that served it is counted once its hand-over is over
        reloads = ctl.reloads()
        with Load(port, hosts, old={der(c) for c, _ in old.values()}) as load:
            wait_for(lambda: load.requests >= 2 * ROTATED, timeout=20, what="load running")
            at_write, written = load.requests, time.monotonic()
            write_manifests(manifests, "secrets.yaml", [tls_secret(secrets[h], *new[h]) for h in hosts])
            for h in hosts:
                wait_for(lambda h=h: https(port, h)[1] == der(new[h][0]), timeout=10, what=f"{h} rotated")
            # Keep the load on a while: no old certificate may come back.
            time.sleep(1.5)
        assert load.failures == [], load.failures[:5]
        lag.at_least(load.requests - at_write, ROTATED, "handshakes during the rotation")
        assert ctl.reloads() == reloads
        assert set(load.last_old) <= set(hosts)
        latest = max(load.last_old.values(), default=written)
        lag.within(latest - written, 1.0, "the last handshake that served an old certificate, after the change")
        for h in hosts:  # every host, at the end: its new certificate
            assert https(port, h) == (200, der(new[h][0])), h
        assert "certificates only (Lua update, no reload)" in ctl.log()


def test_a_certificate_openssl_refuses_is_rejected_alone(tmp_path: Path, manifests: Path, pod: None) -> None:
    conf = tmp_path / "seclevel3.cnf"
    conf.write_text(SECLEVEL_3)
    hosts = ["a.bad.example", "b.bad.example", "c.bad.example"]
    secrets = {h: h.split(".")[0] for h in hosts}
    first = {h: make_chain(h) for h in hosts}
    write_manifests(
        manifests,
        "hosts.yaml",
        [service("web", target=PORT), endpoint_slice("web", [POD], port=PORT), *host_objects(hosts, secrets)],
    )
    write_manifests(manifests, "secrets.yaml", [tls_secret(secrets[h], *first[h]) for h in hosts])
    with running_controller(tmp_path, manifests, env={"OPENSSL_CONF": str(conf)}) as ctl:
        port = ctl.https_port
        for h in hosts:
            wait_for(lambda h=h: https(port, h) == (200, der(first[h][0])), what=f"{h} served")
        refused = make_chain("b.bad.example", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
        rotated = make_chain("a.bad.example")
        with Load(port, ["a.bad.example", "c.bad.example"]) as load:
            wait_for(lambda: load.requests >= 20, timeout=20, what="load running")
            # b's refused certificate and a's rotation arrive together.
            second = {**first, "a.bad.example": rotated, "b.bad.example": refused}
            write_manifests(manifests, "secrets.yaml", [tls_secret(secrets[h], *second[h]) for h in hosts])
            wait_for(
                lambda: "nginx refused the configuration of Ingress default/h1 (" in ctl.log(),
                timeout=20,
                what="b refused",
            )
            wait_for(lambda: https(port, "a.bad.example")[1] == der(rotated[0]), timeout=20, what="a rotated")
            time.sleep(0.5)
        assert load.failures == [], load.failures[:5]
        log = ctl.log()
        line = next(x for x in log.splitlines() if "nginx refused the configuration of Ingress default/h1" in x)
        assert "SSL_CTX_use_certificate() failed" in line and "key too small" in line
        assert "rejected: Ingress default/h1: spec: nginx refused the configuration it makes: " in log
        assert https(port, "c.bad.example") == (200, der(first["c.bad.example"][0]))
        assert ctl.get("b.bad.example").status == 404  # its Ingress is out, whole
        assert ctl.metric("ingressctl_nginx_refused_ingresses_total") == 1


def test_the_store_refuses_what_it_cannot_serve_and_keeps_what_it_serves(
    tmp_path: Path, manifests: Path, pod: None
) -> None:
    cert = make_cert("api.certs.example")
    write_manifests(
        manifests,
        "api.yaml",
        [
            service("web", target=PORT),
            endpoint_slice("web", [POD], port=PORT),
            tls_secret("api", *cert),
            *host_objects(["api.certs.example"], {"api.certs.example": "api"}),
        ],
    )
    with running_controller(tmp_path, manifests) as ctl:
        sock = ctl.work_dir / "api" / "lua-api.sock"
        wait_for(lambda: https(ctl.https_port, "api.certs.example")[1] == der(cert[0]), what="served")
        before = unix_request(sock, "GET", "/configuration/certificates").json()
        name = before["hosts"]["api.certs.example"]
        _, other_key = make_cert("other.certs.example")
        mismatched = (cert[0] + other_key).decode()
        bad: list[tuple[dict[str, Any], int, str]] = [
            ({"default": before["default"], "hosts": {"x.example": "f" * 32}}, 409, "neither sent nor stored"),
            ({"default": "../etc", "hosts": {}}, 400, "default must be a certificate name"),
            ({"default": before["default"], "hosts": {"a b": name}}, 400, "is not a host name"),
            ({"default": before["default"], "hosts": {}, "extra": 1}, 400, "not 'extra'"),
            (
                {
                    "default": before["default"],
                    "hosts": {"x.example": "e" * 32},
                    "certificates": {"e" * 32: "-----BEGIN junk"},
                },
                400,
                "cannot be parsed",
            ),
            (
                {
                    "default": before["default"],
                    "hosts": {"x.example": "d" * 32},
                    "certificates": {"d" * 32: mismatched},
                },
                400,
                "key values mismatch",
            ),
        ]
        for doc, status, reason in bad:
            body = json.dumps({**doc, "ciphers": GlobalOptions().ssl_ciphers}).encode()  # the controller's
            answer = unix_request(sock, "POST", "/configuration/certificates", body)
            assert answer.status == status and reason in answer.json()["error"], (doc, answer.body)
        assert unix_request(sock, "GET", "/configuration/certificates").json() == before
        assert https(ctl.https_port, "api.certs.example")[1] == der(cert[0])
        assert re.fullmatch(r"[0-9a-f]{32}", name)


def test_a_host_gaining_tls_reloads_and_another_secret_for_it_does_not(
    tmp_path: Path, manifests: Path, pod: None
) -> None:
    one, two = make_cert("g.certs.example"), make_cert("g.certs.example")
    base = [
        service("web", target=PORT),
        endpoint_slice("web", [POD], port=PORT),
        tls_secret("one", *one),
        tls_secret("two", *two),
    ]
    plain = ingress("g", rules=[rule("g.certs.example", ("/", "Prefix", backend("web")))])
    write_manifests(manifests, "g.yaml", [*base, plain])
    with running_controller(tmp_path, manifests) as ctl:
        wait_for(lambda: ctl.get("g.certs.example").status == 200, what="served over http")
        ctl.settle()  # the reload that served it is counted once its hand-over is over
        reloads = ctl.reloads()
        write_manifests(manifests, "g.yaml", [*base, *host_objects(["g.certs.example"], {"g.certs.example": "one"})])
        wait_for(
            lambda: ctl.get("g.certs.example").status == 308, what="its http redirect"
        )  # the 443 server's TLS part
        assert https(ctl.https_port, "g.certs.example")[1] == der(one[0])
        assert ctl.reloads() == reloads + 1
        write_manifests(manifests, "g.yaml", [*base, *host_objects(["g.certs.example"], {"g.certs.example": "two"})])
        wait_for(lambda: https(ctl.https_port, "g.certs.example")[1] == der(two[0]), what="the other Secret")
        assert ctl.reloads() == reloads + 1


def test_a_server_with_an_ssl_context_of_its_own_serves_from_the_store_too(tmp_path: Path) -> None:
    """A server whose TLS settings need their own SSL context (client-certificate verification)
    uses templates/tls.j2 with own_context: nginx switches to that context after the ClientHello,
    and ssl_certificate_by_lua sets the store's certificate again. A bare nginx with the real
    macro, module and API; the store filled as the controller does."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir()), trim_blocks=True, lstrip_blocks=True)
    env.filters["q"] = quote
    macro = env.from_string('{% from "tls.j2" import tls_context %}{{ tls_context(paths, name, own_context=own) }}')
    paths = Paths(work=str(tmp_path), lua=str(lua_dir()))
    Path(paths.certs).mkdir(mode=0o700)
    placeholder, default, own, shared = (
        Certificate.from_pem(*make_cert(h))
        for h in ("placeholder.invalid", "d.example", "own.example", "shared.example")
    )
    Path(paths.cert(placeholder.name)).write_bytes(placeholder.pem)
    port = free_port()
    modules = "/usr/lib/nginx/modules"
    (tmp_path / "nginx.conf").write_text(f"""
load_module {modules}/ndk_http_module.so;
load_module {modules}/ngx_http_lua_module.so;
daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    lua_package_path "{paths.lua}/?.lua;;";
    lua_shared_dict ingressctl 1m;
    lua_shared_dict ingressctl_certificates 1m;
    init_by_lua_block {{
        require("ingressctl.configuration")
        require("ingressctl.certificates")
    }}
    server {{
        listen "unix:{tmp_path}/api.sock";
        location = /configuration/certificates {{
            content_by_lua_block {{ require("ingressctl.certificates").call() }}
        }}
    }}
    server {{
        listen 127.0.0.1:{port} ssl default_server;
        server_name _;
{macro.render(paths=paths, name=placeholder.name, own=False)}
        return 200;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name own.example;
{macro.render(paths=paths, name=placeholder.name, own=True)}
        ssl_verify_client optional_no_ca;
        return 200;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name shared.example;
        return 200;
    }}
}}
""")
    nginx = subprocess.Popen(
        ["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "error.log").open("wb"),
    )
    try:
        wait_for(lambda: (tmp_path / "api.sock").exists(), what="the API socket")
        document = {
            "default": default.name,
            "hosts": {"own.example": own.name, "shared.example": shared.name},
            "certificates": {c.name: c.pem.decode() for c in (default, own, shared)},
            "ciphers": GlobalOptions().ssl_ciphers,
        }
        answer = unix_request(
            tmp_path / "api.sock", "POST", "/configuration/certificates", json.dumps(document).encode()
        )
        assert answer.status == 201, answer.body
        assert https(port, "own.example")[1] == der(own.pem)
        assert https(port, "shared.example")[1] == der(shared.pem)
        assert https(port, "other.example")[1] == der(default.pem)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
    assert "[error]" not in (tmp_path / "error.log").read_text()


def test_a_host_verifying_client_certificates_serves_and_rotates_its_certificate(
    tmp_path: Path, manifests: Path, pod: None
) -> None:
    """auth-tls-secret gives the host an SSL context of its own (templates/tls.j2 own_context): it
    still serves its Secret's certificate from the store, and a renewal still reloads nothing."""
    first, second = make_cert("m.certs.example"), make_cert("m.certs.example")
    ca_cert, _ = make_cert("client-ca.certs.example")
    ca_secret = tls_secret("client-ca", ca_cert, make_cert("unused.example")[1])
    ca_secret["data"] = {"ca.crt": base64.b64encode(ca_cert).decode()}
    mtls = ingress(
        "m",
        rules=[rule("m.certs.example", ("/", "Prefix", backend("web")))],
        tls=[{"hosts": ["m.certs.example"], "secretName": "m"}],
        annotations={
            "nginx.ingress.kubernetes.io/auth-tls-secret": "default/client-ca",
            "nginx.ingress.kubernetes.io/auth-tls-verify-client": "optional",
        },
    )
    base = [service("web", target=PORT), endpoint_slice("web", [POD], port=PORT), ca_secret, mtls]
    write_manifests(manifests, "m.yaml", [*base, tls_secret("m", *first)])
    with running_controller(tmp_path, manifests) as ctl:
        port = ctl.https_port
        wait_for(lambda: https(port, "m.certs.example") == (200, der(first[0])), what="the mTLS host's certificate")
        assert "ssl_verify_client" in (ctl.work_dir / "nginx.conf").read_text()
        ctl.settle()  # the reload that served it is counted once its hand-over is over
        reloads = ctl.reloads()
        write_manifests(manifests, "m.yaml", [*base, tls_secret("m", *second)])
        wait_for(lambda: https(port, "m.certs.example") == (200, der(second[0])), what="its renewed certificate")
        assert ctl.reloads() == reloads
