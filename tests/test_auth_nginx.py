"""External authentication (auth-url and its auth-* annotations) and client certificates (auth-tls-*)
through the real controller, real nginx, a real auth service and real echo backends on 127.46.x.y,
with real TLS: each annotation changes what a request gets, next to hosts without it."""

from __future__ import annotations

import base64
import http.client
import http.server
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.annotation_backends import echo_pods
from tests.certs import make_cert, make_chain
from tests.harness import Controller, Response, backend, free_port, service, wait_for, write_manifests
from tests.test_annotations_nginx import backing, call, host_ingress

PORT = free_port()
AUTH = "127.46.0.1"
ECHO = "127.46.1.1"


class AuthService:
    """An auth service: `Authorization: Bearer good*` -> 200 (X-User, X-Email; Set-Cookie for `good`),
    `Bearer forbidden` -> 403, `Bearer broken` -> 500, anything else 401 with WWW-Authenticate.
    Records every request it gets (path, method, headers, body length)."""

    def __init__(self, address: str, port: int) -> None:
        self.seen: list[dict[str, Any]] = []
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                service.seen.append({"path": self.path, "method": self.command, "headers": headers, "body": body})
                token = headers.get("authorization", "")
                extra: dict[str, str] = {}
                if token.startswith("Bearer good"):
                    status = 200
                    extra = {"X-User": "alice", "X-Email": "alice@example.com"}
                    if token == "Bearer good":
                        extra["Set-Cookie"] = "session=s1; Path=/"
                elif token == "Bearer forbidden":
                    status = 403
                elif token == "Bearer broken":
                    status = 500
                else:
                    status, extra = 401, {"WWW-Authenticate": 'Bearer realm="test"'}
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *_: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server((address, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hits(self, path: str) -> list[dict[str, Any]]:
        return [s for s in self.seen if s["path"] == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def auth_service(address: str, port: int) -> Iterator[AuthService]:
    service = AuthService(address, port)
    try:
        yield service
    finally:
        service.stop()


GOOD = {"Authorization": "Bearer good"}


def test_external_auth(controller: Controller, manifests: Path) -> None:
    url = f"http://{AUTH}:{PORT}"
    with auth_service(AUTH, PORT) as auth, echo_pods((ECHO, PORT, {})):
        cluster_ip = service("authsvc", port=PORT, target=PORT)
        cluster_ip["spec"]["clusterIP"] = AUTH  # the "cluster IP" is the auth service's own address here
        write_manifests(
            manifests,
            "services.yaml",
            [*backing("echo", [ECHO], PORT), *backing("oauth", [AUTH], PORT), cluster_ip],
        )
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress("plain", "plain.test", {}),
                host_ingress(
                    "auth",
                    "auth.test",
                    {"auth-url": f"{url}/check?x=1", "auth-response-headers": "X-User, X-Email"},
                ),
                host_ingress(
                    "signin", "signin.test", {"auth-url": f"{url}/s", "auth-signin": "https://login.test/start"}
                ),
                host_ingress(
                    "signin2",
                    "signin2.test",
                    {"auth-url": f"{url}/s", "auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri"},
                ),
                host_ingress(
                    "signin3",
                    "signin3.test",
                    {
                        "auth-url": f"{url}/s",
                        "auth-signin": "https://login.test/start?app=1",
                        "auth-signin-redirect-param": "next",
                    },
                ),
                host_ingress(
                    "method",
                    "method.test",
                    {"auth-url": f"{url}/m", "auth-method": "POST", "auth-request-redirect": "https://app.test/home"},
                ),
                host_ingress(
                    "cache",
                    "cache.test",
                    {
                        "auth-url": f"{url}/cached",
                        "auth-cache-key": "$http_authorization",
                        "auth-cache-duration": "200 1m",
                    },
                ),
                host_ingress("cookie", "cookie.test", {"auth-url": f"{url}/c", "auth-always-set-cookie": "true"}),
                # oauth2-proxy's setup: the auth service is a path of the same host, asked through nginx.
                host_ingress("loop", "loop.test", {"auth-url": "http://$host/oauth2/auth"}),
                host_ingress("oauth", "loop.test", {}, svc="oauth", paths=[("/oauth2", "Prefix", backend("oauth"))]),
                # A Service's cluster DNS name: its cluster IP from the cache; a missing Service fails closed.
                host_ingress("svc", "svc.test", {"auth-url": f"http://authsvc.default.svc.cluster.local:{PORT}/svc"}),
                host_ingress("nosvc", "nosvc.test", {"auth-url": "http://nope.default.svc/x"}),
                host_ingress("down", "down.test", {"auth-url": f"http://127.46.0.2:{PORT}/x"}),  # nothing listens
                # Invalid: rejected alone, naming the annotation.
                host_ingress("dns", "dns.test", {"auth-url": "http://auth.example.com/check"}),
                host_ingress("var", "var.test", {"auth-url": f"{url}/$request_uri"}),
                host_ingress("badsign", "badsign.test", {"auth-url": f"{url}/s", "auth-signin": "https://x.test/$uri"}),
            ],
        )
        wait_for(lambda: call(controller, "auth.test", headers=GOOD).status == 200, what="auth.test served")
        wait_for(lambda: controller.get("plain.test").status == 200, what="plain.test served")

        # 2xx: through, with the auth response's headers copied to the request, its cookie to the client.
        auth.seen.clear()
        r = call(controller, "auth.test", "/some/page?q=1", headers={**GOOD, "Cookie": "a=b"})
        assert r.status == 200 and r.headers["set-cookie"] == "session=s1; Path=/"
        seen = r.json()["headers"]
        assert (seen["x-user"], seen["x-email"]) == ("alice", "alice@example.com")
        assert seen["host"] == "auth.test" and "content-length" not in seen
        [asked] = auth.seen
        h = asked["headers"]
        assert asked["path"] == "/check?x=1" and asked["method"] == "GET"
        assert h["host"] == f"{AUTH}:{PORT}"
        assert h["x-original-uri"] == "/some/page?q=1" and h["x-original-method"] == "GET"
        assert h["x-original-url"] == "http://auth.test/some/page?q=1"
        assert h["x-auth-request-redirect"] == "/some/page?q=1" and h["x-scheme"] == "http"
        assert h["x-sent-from"] == "nginx-ingress-controller" and h["x-real-ip"] == "127.0.0.1"
        assert h["authorization"] == "Bearer good" and h["cookie"] == "a=b"
        # The body never goes to the auth service.
        auth.seen.clear()
        r = call(controller, "auth.test", "/up", method="POST", body=b"x" * 5000, headers=GOOD)
        assert r.status == 200 and auth.seen[0]["body"] == b""
        assert auth.seen[0]["headers"].get("content-length") in (None, "0")
        assert auth.seen[0]["headers"]["x-original-method"] == "POST"
        # 401 and 403 pass through (with the auth service's WWW-Authenticate); anything else is 500.
        r = call(controller, "auth.test")
        assert r.status == 401 and r.headers["www-authenticate"] == 'Bearer realm="test"'
        assert call(controller, "auth.test", headers={"Authorization": "Bearer forbidden"}).status == 403
        assert call(controller, "auth.test", headers={"Authorization": "Bearer broken"}).status == 500
        # The auth location is internal: not reachable from outside.
        location = re.search(
            r'location = "(/_ingressctl_auth[|][0-9a-f]+)"', (controller.work_dir / "nginx.conf").read_text()
        )
        assert location and call(controller, "auth.test", location[1], headers=GOOD).status == 404

        # auth-signin: a 401 becomes a redirect carrying the original URL; a 2xx still passes.
        r = call(controller, "signin.test", "/p/a?b=1")
        assert r.status == 302
        assert r.headers["location"] == "https://login.test/start?rd=http://signin.test%2Fp%2Fa%3Fb%3D1"
        assert call(controller, "signin.test", headers=GOOD).status == 200
        r = call(controller, "signin2.test", "/x?y=2")
        assert r.headers["location"] == "https://signin2.test/oauth2/start?rd=%2Fx%3Fy%3D2"
        r = call(controller, "signin3.test", "/z")
        assert r.headers["location"] == "https://login.test/start?app=1&next=http://signin3.test%2Fz"

        # auth-method and auth-request-redirect.
        auth.seen.clear()
        assert call(controller, "method.test", "/m1", headers=GOOD).status == 200
        [asked] = auth.hits("/m")
        assert asked["method"] == "POST" and asked["headers"]["x-auth-request-redirect"] == "https://app.test/home"

        # auth-cache-key: one auth request per key while the answer is cached (nginx never caches an
        # answer that sets a cookie).
        auth.seen.clear()
        for _ in range(3):
            r = call(controller, "cache.test", headers={"Authorization": "Bearer good-a"})
            assert r.status == 200 and r.json()["headers"]["authorization"] == "Bearer good-a"
        assert len(auth.hits("/cached")) == 1
        assert call(controller, "cache.test", headers={"Authorization": "Bearer good-b"}).status == 200
        assert len(auth.hits("/cached")) == 2
        assert call(controller, "cache.test", headers=GOOD).status == 200
        assert call(controller, "cache.test", headers=GOOD).status == 200
        assert len(auth.hits("/cached")) == 4
        assert call(controller, "cache.test").status == 401  # a status not in the duration: asked again
        assert call(controller, "cache.test").status == 401
        assert len(auth.hits("/cached")) == 6
        auth.seen.clear()
        for _ in range(2):
            call(controller, "auth.test", headers=GOOD)
        assert len(auth.hits("/check?x=1")) == 2, "without auth-cache-key every request is checked"

        # auth-url on $host: asked through this nginx with the request's Host.
        auth.seen.clear()
        r = call(controller, "loop.test", "/app", headers=GOOD)
        assert r.status == 200 and r.pod == ECHO
        [asked] = auth.hits("/oauth2/auth")
        assert asked["headers"]["host"] == "loop.test" and asked["headers"]["x-original-uri"] == "/app"
        assert call(controller, "loop.test", "/app").status == 401

        # auth-url on a Service's name: asked at its cluster IP, with the name as Host.
        auth.seen.clear()
        assert call(controller, "svc.test", headers=GOOD).status == 200
        [asked] = auth.hits("/svc")
        assert asked["headers"]["host"] == f"authsvc.default.svc.cluster.local:{PORT}"
        assert call(controller, "svc.test").status == 401
        assert call(controller, "nosvc.test", headers=GOOD).status == 503
        assert call(controller, "down.test", headers=GOOD).status == 500, "an unreachable auth service fails closed"

        # auth-always-set-cookie: the cookie also on an error answer of the backend.
        r = call(controller, "cookie.test", "/fail", headers=GOOD)
        assert r.status == 502 and r.headers.get("set-cookie") == "session=s1; Path=/"
        r = call(controller, "auth.test", "/fail", headers=GOOD)
        assert r.status == 502 and "set-cookie" not in r.headers

        # Hosts without auth-url never ask the auth service.
        auth.seen.clear()
        assert call(controller, "plain.test").status == 200 and auth.seen == []

        # Invalid values reject their Ingress alone, naming the annotation.
        for host in ("dns.test", "var.test", "badsign.test"):
            assert call(controller, host, headers=GOOD).status == 404
        log = controller.log()
        assert re.search(r"default/dns.*auth-url.*IP address", log)
        assert re.search(r"default/nosvc.*auth-url.*Service default/nope not found", log)
        assert re.search(r"default/var.*auth-url", log)
        assert re.search(r"default/badsign.*auth-signin.*variables", log)


# --- client certificates ------------------------------------------------------------------------


def _secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "default"},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def _split(pem: bytes) -> list[bytes]:
    return [b"-----BEGIN" + part for part in pem.split(b"-----BEGIN")[1:]]


def tls_call(ctl: Controller, host: str, path: str = "/", *, cert: tuple[Path, Path] | None = None) -> Response:
    """One HTTPS request with SNI `host` and an optional client certificate (chain file, key file)."""
    ctl.settle()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the client certificate in the handshake itself
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", ctl.https_port), timeout=10), server_hostname=host)
    conn = http.client.HTTPConnection("127.0.0.1", ctl.https_port, timeout=10)
    conn.sock = sock
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def test_client_certificates(controller: Controller, manifests: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = ec.generate_private_key(ec.SECP256R1())
    clients = {}
    for cn in ("alice", "bob"):
        chain, key = make_chain(cn, intermediates=1, ca_key=ca_key)
        leaf, ca = _split(chain)
        (tmp_path / f"{cn}.crt").write_bytes(leaf)
        (tmp_path / f"{cn}.key").write_bytes(key)
        clients[cn] = (tmp_path / f"{cn}.crt", tmp_path / f"{cn}.key")
    mallory_chain, mallory_key = make_chain("mallory", intermediates=1)  # another CA (of the same name)
    (tmp_path / "mallory.crt").write_bytes(_split(mallory_chain)[0])
    (tmp_path / "mallory.key").write_bytes(mallory_key)
    clients["mallory"] = (tmp_path / "mallory.crt", tmp_path / "mallory.key")
    stranger_cert, stranger_key = make_cert("stranger")  # self-signed
    (tmp_path / "stranger.crt").write_bytes(stranger_cert)
    (tmp_path / "stranger.key").write_bytes(stranger_key)
    clients["stranger"] = (tmp_path / "stranger.crt", tmp_path / "stranger.key")
    # A client three CAs below its root (OpenSSL allows depth + 2 certificates): verify-depth 1
    # refuses it, 2 accepts it.
    deep_chain, deep_key = make_chain("deep", intermediates=3)
    leaf, first, second, root = _split(deep_chain)
    (tmp_path / "deep.crt").write_bytes(leaf + first + second)
    (tmp_path / "deep.key").write_bytes(deep_key)
    clients["deep"] = (tmp_path / "deep.crt", tmp_path / "deep.key")

    server_cert, server_key = make_cert("mtls.test", "cn.test", "optional.test", "errpage.test", "depth.test")
    hosts = ("mtls.test", "cn.test", "optional.test", "errpage.test", "depth.test", "depth1.test", "missing.test")
    hosts += ("open.test", "other-ns.test", "noca.test", "plainhttp.test")
    tls = {"tls": [{"hosts": list(hosts), "secretName": "server"}]}
    ca_secret = {"auth-tls-secret": "default/client-ca"}
    with echo_pods((ECHO, PORT, {})):
        write_manifests(
            manifests,
            "services.yaml",
            [
                *backing("echo", [ECHO], PORT),
                _secret("server", {"tls.crt": server_cert, "tls.key": server_key}),
                _secret("client-ca", {"tls.crt": server_cert, "tls.key": server_key, "ca.crt": ca}),
                _secret("deep-ca", {"tls.crt": server_cert, "tls.key": server_key, "ca.crt": root}),
            ],
        )
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress(
                    "mtls", "mtls.test", {**ca_secret, "auth-tls-pass-certificate-to-upstream": "true"}, **tls
                ),
                host_ingress("cn", "cn.test", {**ca_secret, "auth-tls-match-cn": "CN=(alice|carol)"}, **tls),
                host_ingress("optional", "optional.test", {**ca_secret, "auth-tls-verify-client": "optional"}, **tls),
                host_ingress(
                    "errpage", "errpage.test", {**ca_secret, "auth-tls-error-page": "https://errors.test/cert"}, **tls
                ),
                host_ingress(
                    "depth", "depth.test", {"auth-tls-secret": "deep-ca", "auth-tls-verify-depth": "2"}, **tls
                ),
                host_ingress("depth1", "depth1.test", {"auth-tls-secret": "deep-ca"}, **tls),
                host_ingress("missing", "missing.test", {"auth-tls-secret": "nope"}, **tls),
                host_ingress("open", "open.test", {}, **tls),
                host_ingress("noca", "noca.test", {**ca_secret, "auth-tls-verify-client": "optional_no_ca"}, **tls),
                host_ingress("plainhttp", "plainhttp.test", {**ca_secret, "ssl-redirect": "false"}, **tls),
                host_ingress("notls", "notls.test", ca_secret),
                host_ingress("other", "other-ns.test", {"auth-tls-secret": "other/client-ca"}, **tls),
            ],
        )
        wait_for(lambda: tls_call(controller, "mtls.test", cert=clients["alice"]).status == 200, what="mtls served")
        # on: a certificate the CA signed passes, its PEM and DNs reach the endpoint; none or another CA's: 400.
        seen = tls_call(controller, "mtls.test", cert=clients["alice"]).json()["headers"]
        assert seen["ssl-client-verify"] == "SUCCESS" and seen["ssl-client-subject-dn"] == "CN=alice"
        assert seen["ssl-client-issuer-dn"] == "CN=ca-0"
        assert seen["ssl-client-cert"].startswith("-----BEGIN%20CERTIFICATE-----")
        assert tls_call(controller, "mtls.test").status == 400
        assert tls_call(controller, "mtls.test", cert=clients["mallory"]).status == 400
        assert tls_call(controller, "open.test").status == 200, "hosts without auth-tls-secret ask for nothing"
        # Over plain HTTP a host with verify `on` redirects to HTTPS (ssl-redirect), never serves unverified.
        assert call(controller, "mtls.test").status == 308
        # Without pass-certificate-to-upstream the PEM is not sent (the verification headers are).
        seen = tls_call(controller, "cn.test", cert=clients["alice"]).json()["headers"]
        assert "ssl-client-cert" not in seen and seen["ssl-client-verify"] == "SUCCESS"
        # match-cn: another name from the same CA gets 403.
        r = tls_call(controller, "cn.test", cert=clients["bob"])
        assert r.status == 403 and r.body == b"client certificate unauthorized"
        # optional: no certificate is served (and says so), a bad one is still refused.
        assert tls_call(controller, "optional.test").json()["headers"]["ssl-client-verify"] == "NONE"
        assert tls_call(controller, "optional.test", cert=clients["bob"]).json()["headers"]["ssl-client-verify"] == (
            "SUCCESS"
        )
        assert tls_call(controller, "optional.test", cert=clients["mallory"]).status == 400
        # optional_no_ca: a certificate of an unknown CA is served, the headers say it did not verify.
        seen = tls_call(controller, "noca.test", cert=clients["stranger"]).json()["headers"]
        assert seen["ssl-client-verify"].startswith("FAILED:") and seen["ssl-client-subject-dn"] == "CN=stranger"
        assert tls_call(controller, "mtls.test", cert=clients["stranger"]).status == 400
        # `on` never serves what nginx did not verify: plain HTTP without the HTTPS redirect gets 403.
        assert call(controller, "plainhttp.test").status == 403
        assert tls_call(controller, "plainhttp.test", cert=clients["alice"]).status == 200
        # A host without a TLS section (the default certificate's handshake asks for no client
        # certificate): reported, and nginx refuses its HTTPS requests rather than serve them unverified.
        assert tls_call(controller, "notls.test", cert=clients["alice"]).status == 400
        assert call(controller, "notls.test").status == 403
        assert re.search(r"default/notls.*auth-tls-secret: host notls.test has no TLS section", controller.log())
        # error-page: a missing or bad certificate is redirected there.
        for cert in (None, clients["mallory"]):
            r = tls_call(controller, "errpage.test", cert=cert)
            assert r.status == 302 and r.headers["location"] == "https://errors.test/cert"
        # verify-depth.
        assert tls_call(controller, "depth.test", cert=clients["deep"]).status == 200
        assert tls_call(controller, "depth1.test", cert=clients["deep"]).status == 400
        # A missing Secret fails closed; one of another namespace rejects the Ingress.
        assert tls_call(controller, "missing.test", cert=clients["alice"]).status == 503
        assert tls_call(controller, "other-ns.test", cert=clients["alice"]).status == 404
        log = controller.log()
        assert re.search(r"default/missing.*auth-tls-secret.*Secret default/nope not found", log)
        assert re.search(r"default/other.*auth-tls-secret.*own namespace", log)
        # The CA file is written like certificates: private, named by its content.
        certs = list((controller.work_dir / "certs").glob("*.pem"))
        assert any(c.read_bytes() == ca for c in certs)
        assert all(c.stat().st_mode & 0o077 == 0 for c in certs)
