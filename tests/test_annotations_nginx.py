"""Annotations through the real controller, real nginx and real backends on 127.0.0.x: each test
checks that the annotation changes what a request gets (a controller that ignored it would fail),
next to a host without it that keeps the default behaviour."""

from __future__ import annotations

import http.client
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.annotation_backends import echo_pods
from tests.harness import (
    Controller,
    Response,
    backend,
    endpoint_slice,
    free_port,
    ingress,
    rule,
    service,
    wait_for,
    write_manifests,
)

PORT = free_port()
A = "nginx.ingress.kubernetes.io/"


def backing(name: str, addresses: list[str], port: int = PORT) -> list[dict[str, Any]]:
    """A Service (port 80 -> port) and its EndpointSlice."""
    return [service(name, target=port), endpoint_slice(name, addresses, port=port)]


def services(manifests: Path, names: dict[str, list[str]]) -> None:
    write_manifests(manifests, "services.yaml", [doc for name, a in names.items() for doc in backing(name, a)])


def host_ingress(name: str, host: str, annotations: dict[str, str], *, svc: str = "echo", **kw: Any) -> dict[str, Any]:
    paths = kw.pop("paths", None) or [("/", "Prefix", backend(svc))]
    return ingress(name, rules=[rule(host, *paths)], annotations={A + k: v for k, v in annotations.items()}, **kw)


def call(
    ctl: Controller,
    host: str,
    path: str = "/",
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
    timeout: float = 10.0,
) -> Response:
    """One request with an optional body (sent chunked if asked)."""
    ctl.settle()
    conn = http.client.HTTPConnection("127.0.0.1", ctl.http_port, timeout=timeout)
    try:
        all_headers = {"Host": host, **(headers or {})}
        if chunked:  # the body comes 0.2 s after the head: nginx starts proxying before it has it
            conn.request(method, path, body=_later(body or b""), headers=all_headers, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=all_headers)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def _later(body: bytes) -> Iterator[bytes]:
    time.sleep(0.2)
    yield body


def served(ctl: Controller, *hosts: str) -> None:
    for host in hosts:
        wait_for(lambda host=host: ctl.get(host).status not in (404, 503), what=f"{host} served")


def test_proxy_annotations(controller: Controller, manifests: Path) -> None:
    with echo_pods(("127.0.3.1", PORT, {}), ("127.0.3.2", PORT, {"fail": True}), ("127.0.3.3", PORT, {})):
        services(manifests, {"echo": ["127.0.3.1"], "flaky": ["127.0.3.2", "127.0.3.3"]})
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress("plain", "plain.test", {}),
                host_ingress("big", "big.test", {"proxy-body-size": "2m", "proxy-request-buffering": "off"}),
                host_ingress("slow", "slow.test", {"proxy-read-timeout": "1"}),
                host_ingress(
                    "headers",
                    "headers.test",
                    {
                        "proxy-http-version": "1.0",
                        "upstream-vhost": "internal.example.com",
                        "connection-proxy-header": "close",
                        "x-forwarded-prefix": "/pre",
                    },
                ),
                host_ingress(
                    "redir",
                    "redir.test",
                    {"proxy-redirect-from": "http://internal.local/", "proxy-redirect-to": "https://redir.test/app/"},
                ),
                host_ingress("buf", "buf.test", {"proxy-buffer-size": "16k", "proxy-buffers-number": "4"}),
                host_ingress(
                    "retry",
                    "retry.test",
                    {"proxy-next-upstream": "error timeout http_502", "proxy-next-upstream-tries": "3"},
                    svc="flaky",
                ),
                host_ingress("noretry", "noretry.test", {}, svc="flaky"),
            ],
        )
        served(controller, "plain.test", "big.test", "headers.test", "buf.test")

        # proxy-body-size: 1.5 MB passes where the global 1m answers 413.
        body = b"x" * 1_500_000
        assert call(controller, "big.test", method="POST", body=body).status == 200
        assert call(controller, "plain.test", method="POST", body=body).status == 413

        # proxy-request-buffering off: a chunked body is streamed on as chunked, not buffered and
        # sent with a Content-Length.
        streamed = call(controller, "big.test", method="POST", body=b"hello", chunked=True).json()
        buffered = call(controller, "plain.test", method="POST", body=b"hello", chunked=True).json()
        assert streamed["chunked"] and not buffered["chunked"], (streamed, buffered)
        assert buffered["headers"]["content-length"] == "5"

        # proxy-read-timeout 1: a backend that takes 2.5 s gets 504 there, 200 elsewhere.
        assert call(controller, "slow.test", "/slow").status == 504
        assert call(controller, "plain.test", "/slow").status == 200

        # proxy-http-version, upstream-vhost, connection-proxy-header, x-forwarded-prefix; the
        # other forwarded headers stay (a location's proxy_set_header replaces all of http{}'s).
        seen = call(controller, "headers.test", "/x").json()
        assert seen["version"] == "HTTP/1.0"
        assert seen["headers"]["host"] == "internal.example.com"
        assert seen["headers"]["connection"] == "close"
        assert seen["headers"]["x-forwarded-prefix"] == "/pre"
        assert seen["headers"]["x-forwarded-host"] == "headers.test"
        assert seen["headers"]["x-real-ip"] == "127.0.0.1"
        plain = call(controller, "plain.test", "/x").json()
        assert plain["version"] == "HTTP/1.1" and plain["headers"]["host"] == "plain.test"
        assert "x-forwarded-prefix" not in plain["headers"]

        # proxy-redirect-from/to rewrites the backend's Location header.
        assert call(controller, "redir.test", "/redirect").headers["location"] == "https://redir.test/app/landing"
        assert call(controller, "plain.test", "/redirect").headers["location"] == "http://internal.local/landing"

        # proxy-buffer-size 16k: a 6 KB response header fits; nginx's default (one 4k page) gives 502.
        assert call(controller, "buf.test", "/bigheader").status == 200
        assert call(controller, "plain.test", "/bigheader").status == 502

        # proxy-next-upstream with http_502: the failing endpoint is skipped, every request succeeds;
        # without it (error timeout only) the 502s reach the client.
        assert Counter(call(controller, "retry.test").status for _ in range(12)) == Counter({200: 12})
        assert 502 in {call(controller, "noretry.test").status for _ in range(12)}


def test_redirects_and_server_scope(controller: Controller, manifests: Path) -> None:
    from tests.certs import make_cert, tls_secret

    cert, key = make_cert("tls.test", "notls.test")
    with echo_pods(("127.0.3.11", PORT, {})):
        services(manifests, {"echo": ["127.0.3.11"]})
        write_manifests(manifests, "secret.yaml", [tls_secret("tls", cert, key)])
        tls = [{"hosts": ["tls.test", "notls.test"], "secretName": "tls"}]
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress("plain", "plain.test", {}),
                host_ingress("moved", "moved.test", {"permanent-redirect": "https://new.example.com/x"}),
                host_ingress(
                    "moved308",
                    "moved308.test",
                    {"permanent-redirect": "https://new.example.com/y", "permanent-redirect-code": "308"},
                ),
                host_ingress("temp", "temp.test", {"temporal-redirect": "https://status.example.com/"}),
                host_ingress("approot", "approot.test", {"app-root": "/app1"}),
                host_ingress("tls", "tls.test", {}, tls=tls),
                host_ingress("notls", "notls.test", {"ssl-redirect": "false"}, tls=tls),
                host_ingress("force", "force.test", {"force-ssl-redirect": "true"}),
                host_ingress("www", "www.shop.test", {"from-to-www-redirect": "true"}),
                host_ingress("alias", "main.test", {"server-alias": "alias.test, other-alias.test"}),
            ],
        )
        served(controller, "plain.test", "approot.test", "main.test")
        moved = controller.get("moved.test", "/anything")
        assert (moved.status, moved.headers["location"]) == (301, "https://new.example.com/x")
        moved308 = controller.get("moved308.test")
        assert (moved308.status, moved308.headers["location"]) == (308, "https://new.example.com/y")
        temp = controller.get("temp.test")
        assert (temp.status, temp.headers["location"]) == (302, "https://status.example.com/")
        root = controller.get("approot.test", "/")
        assert root.status == 302 and root.headers["location"].endswith("/app1")
        assert controller.get("approot.test", "/app1").json()["path"] == "/app1", "only / redirects"
        # ssl-redirect: on by default for TLS hosts; "false" serves HTTP; force-ssl-redirect without TLS.
        assert controller.get("tls.test").status == 308
        assert controller.get("notls.test").status == 200
        assert controller.get("notls.test", tls=True).status == 200
        force = controller.get("force.test", "/p?q=1")
        assert force.status == 308 and force.headers["location"].startswith("https://force.test")
        assert force.headers["location"].endswith("/p?q=1")
        assert controller.get("plain.test").status == 200
        # from-to-www-redirect: the name without www. redirects to the host.
        bare = controller.get("shop.test", "/cart")
        assert (bare.status, bare.headers["location"]) == (308, "http://www.shop.test/cart")
        # server-alias: the aliases are served like the host.
        assert controller.get("alias.test").json()["headers"]["host"] == "alias.test"
        assert controller.get("other-alias.test").status == 200


def test_source_ranges_and_cors(controller: Controller, manifests: Path) -> None:
    with echo_pods(("127.0.3.21", PORT, {})):
        services(manifests, {"echo": ["127.0.3.21"]})
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress("plain", "plain.test", {}),
                host_ingress("allowed", "allowed.test", {"allowlist-source-range": "127.0.0.1/32, ::1"}),
                host_ingress("elsewhere", "elsewhere.test", {"whitelist-source-range": "10.0.0.0/8"}),
                host_ingress("denied", "denied.test", {"denylist-source-range": "127.0.0.0/8"}),
                host_ingress("cors", "cors.test", {"enable-cors": "true"}),
                host_ingress(
                    "cors-list",
                    "cors-list.test",
                    {
                        "enable-cors": "true",
                        "cors-allow-origin": "https://app.example.com, https://*.example.org:8443",
                        "cors-allow-methods": "GET, POST",
                        "cors-allow-headers": "X-Custom",
                        "cors-expose-headers": "X-Total",
                        "cors-allow-credentials": "false",
                        "cors-max-age": "600",
                    },
                ),
            ],
        )
        served(controller, "plain.test", "allowed.test", "cors.test", "cors-list.test")
        assert controller.get("elsewhere.test").status == 403
        assert controller.get("denied.test").status == 403

        pre = controller.get("cors.test", "/api", method="OPTIONS", headers={"Origin": "https://x.example.com"})
        assert pre.status == 204
        assert pre.headers["access-control-allow-origin"] == "*"
        assert pre.headers["access-control-allow-methods"] == "GET,PUT,POST,DELETE,PATCH,OPTIONS"
        assert pre.headers["access-control-allow-credentials"] == "true"
        assert pre.headers["access-control-max-age"] == "1728000"
        assert "Authorization" in pre.headers["access-control-allow-headers"]
        got = controller.get("cors.test", "/api", headers={"Origin": "https://x.example.com"})
        assert got.status == 200 and got.headers["access-control-allow-origin"] == "*"
        assert got.json()["method"] == "GET"
        plain = controller.get("plain.test", "/api", method="OPTIONS", headers={"Origin": "https://x.example.com"})
        assert plain.status == 200 and "access-control-allow-origin" not in plain.headers, "reaches the backend"

        def origin(value: str, method: str = "GET") -> Response:
            return controller.get("cors-list.test", method=method, headers={"Origin": value})

        ok = origin("https://app.example.com", "OPTIONS")
        assert ok.status == 204 and ok.headers["access-control-allow-origin"] == "https://app.example.com"
        assert ok.headers["access-control-allow-methods"] == "GET,POST"
        assert ok.headers["access-control-allow-headers"] == "X-Custom"
        assert ok.headers["access-control-max-age"] == "600"
        assert "access-control-allow-credentials" not in ok.headers
        assert (
            origin("https://a.example.org:8443").headers["access-control-allow-origin"] == "https://a.example.org:8443"
        )
        assert origin("https://a.example.org:8443").headers["access-control-expose-headers"] == "X-Total"
        for refused in ("https://evil.com", "https://a.b.example.org:8443", "https://app.example.com.evil.com"):
            assert "access-control-allow-origin" not in origin(refused).headers, refused


def test_regex_paths_and_rewrites(controller: Controller, manifests: Path) -> None:
    with echo_pods(("127.0.3.31", PORT, {}), ("127.0.3.32", PORT, {})):
        services(manifests, {"echo": ["127.0.3.31"], "other": ["127.0.3.32"]})
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress(
                    "rewrite",
                    "rewrite.test",
                    {"use-regex": "true", "rewrite-target": "/$2"},
                    paths=[("/something(/|$)(.*)", "ImplementationSpecific", backend("echo"))],
                ),
                host_ingress(
                    "strip",
                    "strip.test",
                    {"rewrite-target": "/"},
                    paths=[("/api", "Prefix", backend("echo"))],
                ),
                host_ingress(
                    "regex",
                    "regex.test",
                    {"use-regex": "true"},
                    paths=[("/v[0-9]+/users", "ImplementationSpecific", backend("other"))],
                ),
                # The same host, another Ingress without use-regex: its paths keep their meaning.
                host_ingress("plain-on-regex-host", "regex.test", {}, paths=[("/v1", "Prefix", backend("echo"))]),
            ],
        )
        wait_for(lambda: controller.get("strip.test", "/api").status == 200, what="strip served")
        wait_for(lambda: controller.get("rewrite.test", "/something/x").status == 200, what="rewrite served")
        assert controller.get("rewrite.test", "/something/new?q=1").json()["path"] == "/new?q=1"
        assert controller.get("rewrite.test", "/something").json()["path"] == "/"
        assert controller.get("rewrite.test", "/SOMETHING/up").json()["path"] == "/up", "case-insensitive"
        assert controller.get("rewrite.test", "/other").status == 404
        assert controller.get("strip.test", "/api/deep/path").json()["path"] == "/"
        assert controller.get("regex.test", "/v2/users").pod == "127.0.3.32"
        assert controller.get("regex.test", "/v2/users/7").pod == "127.0.3.32"
        assert controller.get("regex.test", "/v1/other").pod == "127.0.3.31"
        assert controller.get("regex.test", "/vx/users").status == 404


def test_snippets_invalid_and_unknown_annotations(controller: Controller, manifests: Path) -> None:
    with echo_pods(("127.0.3.41", PORT, {})):
        services(manifests, {"echo": ["127.0.3.41"]})
        others = [
            host_ingress("snippet", "snippet.test", {"configuration-snippet": "deny all;"}),
            host_ingress("hostile", "hostile.test", {"upstream-vhost": 'a.test";\n  return 200 "owned'}),
            host_ingress("unknown", "unknown.test", {"mirror-target": "http://m.test", "mirror-uri": "/m"}),
        ]
        write_manifests(manifests, "ingresses.yaml", [host_ingress("good", "good.test", {}), *others])
        served(controller, "good.test", "unknown.test")
        assert controller.get("snippet.test").status == 404, "an Ingress with a snippet is not served"
        assert controller.get("hostile.test").status == 404
        log = controller.log()
        assert re.search(r"default/snippet.*configuration-snippet.*refused", log)
        assert re.search(r"default/hostile.*upstream-vhost", log)
        assert re.search(r"default/unknown.*not supported, ignored.*mirror-target.*mirror-uri", log)
        reloads = controller.reloads()
        good = host_ingress("good", "good.test", {"proxy-read-timeout": "30"})
        write_manifests(manifests, "ingresses.yaml", [good, *others])
        wait_for(lambda: controller.reloads() > reloads, what="reload for the annotation")
        text = _metrics(controller)
        assert re.search(r'ingressctl_nginx_reloads_total\{reason="annotations_changed"\} 1\.0', text), text


def _metrics(ctl: Controller) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", ctl.health_port, timeout=2)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_backend_protocols_https_and_grpc(controller: Controller, manifests: Path, tmp_path: Path) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.annotation_backends import grpc_health_server
    from tests.certs import make_cert, tls_secret

    backend_cert, backend_key = make_cert("internal.example.com")
    (tmp_path / "backend.crt").write_bytes(backend_cert)
    (tmp_path / "backend.key").write_bytes(backend_key)
    cert, key = make_cert("grpc.test", "nogrpc.test")
    grpc_port = free_port()
    tls_pod = {"tls": (tmp_path / "backend.crt", tmp_path / "backend.key")}
    with echo_pods(("127.0.3.51", PORT, tls_pod)) as (pod,), grpc_health_server("127.0.3.52", grpc_port):
        write_manifests(
            manifests,
            "services.yaml",
            [
                *backing("secure", ["127.0.3.51"], PORT),
                *backing("grpc", ["127.0.3.52"], grpc_port),
                tls_secret("grpc-tls", cert, key),
                service("empty", target=PORT),  # no endpoints
            ],
        )
        tls = [{"hosts": ["grpc.test", "nogrpc.test", "empty-grpc.test"], "secretName": "grpc-tls"}]
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress(
                    "https",
                    "https.test",
                    {
                        "backend-protocol": "HTTPS",
                        "proxy-ssl-server-name": "on",
                        "proxy-ssl-name": "internal.example.com",
                    },
                    svc="secure",
                ),
                host_ingress("nohttps", "nohttps.test", {}, svc="secure"),
                host_ingress("grpc", "grpc.test", {"backend-protocol": "GRPC"}, svc="grpc", tls=tls),
                host_ingress("nogrpc", "nogrpc.test", {}, svc="grpc", tls=tls),
                host_ingress("empty-https", "empty-https.test", {"backend-protocol": "HTTPS"}, svc="empty"),
                host_ingress("empty-grpc", "empty-grpc.test", {"backend-protocol": "GRPC"}, svc="empty", tls=tls),
            ],
        )
        wait_for(lambda: controller.get("https.test").status == 200, what="HTTPS backend served")
        assert controller.get("https.test", "/x").json()["path"] == "/x"
        assert "internal.example.com" in pod.sni, "proxy-ssl-name sent as SNI"
        assert controller.get("nohttps.test").status == 502, "plain HTTP to a TLS endpoint fails"

        def check(host: str) -> Any:
            credentials = grpc.ssl_channel_credentials(root_certificates=cert)
            options = [("grpc.ssl_target_name_override", host), ("grpc.default_authority", host)]
            with grpc.secure_channel(f"127.0.0.1:{controller.https_port}", credentials, options=options) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                return stub.Check(health_pb2.HealthCheckRequest(service="ingressctl"), timeout=5).status

        controller.settle()
        assert wait_for(lambda: check("grpc.test") == health_pb2.HealthCheckResponse.SERVING, what="gRPC served")
        # No ready endpoint: 503 in every protocol (the no-endpoints server speaks each of them).
        assert controller.get("empty-https.test").status == 503
        try:
            check("empty-grpc.test")
            raise AssertionError("a gRPC call to a Service without endpoints should fail")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
        try:
            check("nogrpc.test")
            raise AssertionError("a gRPC call through an HTTP/1.1 proxy location should fail")
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.OK


def test_custom_errors_default_backend_and_service_upstream(controller: Controller, manifests: Path) -> None:
    clustered = service("clustered", port=PORT, target=PORT)
    clustered["spec"]["clusterIP"] = "127.0.3.63"  # a "cluster IP" that answers as its own pod
    pods = [("127.0.3.61", PORT, {}), ("127.0.3.62", PORT, {}), ("127.0.3.63", PORT, {}), ("127.0.3.64", PORT, {})]
    with echo_pods(*pods):
        write_manifests(
            manifests,
            "services.yaml",
            [
                *backing("errors", ["127.0.3.61"], PORT),
                *backing("echo", ["127.0.3.62"], PORT),
                clustered,
                endpoint_slice("clustered", ["127.0.3.64"], port=PORT),
            ],
        )
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress(
                    "errs",
                    "errs.test",
                    {"custom-http-errors": "502,503", "default-backend": "errors"},
                    paths=[("/app", "Prefix", backend("echo"))],
                ),
                host_ingress("plain", "plain.test", {}, paths=[("/app", "Prefix", backend("echo"))]),
                host_ingress(
                    "upstream",
                    "upstream.test",
                    {"service-upstream": "true"},
                    paths=[("/", "Prefix", backend("clustered", PORT))],
                ),
                host_ingress("endpoints", "endpoints.test", {}, paths=[("/", "Prefix", backend("clustered", PORT))]),
            ],
        )
        wait_for(lambda: controller.get("errs.test", "/app").status == 200, what="errs served")
        failed = controller.get("errs.test", "/app/fail")
        assert failed.pod == "127.0.3.61", "the 502 is answered by the default backend"
        seen = failed.json()["headers"]
        assert seen["x-code"] == "502"
        assert seen["x-original-uri"] == "/app/fail"
        assert (seen["x-namespace"], seen["x-ingress-name"]) == ("default", "errs")
        assert (seen["x-service-name"], seen["x-service-port"]) == ("errors", "80")
        assert controller.get("plain.test", "/app/fail").status == 502
        # default-backend also answers the host's unmatched paths.
        assert controller.get("errs.test", "/elsewhere").pod == "127.0.3.61"
        assert controller.get("plain.test", "/elsewhere").status == 404
        # service-upstream: the Service's cluster IP, not its endpoints.
        wait_for(lambda: controller.get("upstream.test").status == 200, what="upstream served")
        assert {controller.get("upstream.test").pod for _ in range(4)} == {"127.0.3.63"}
        assert {controller.get("endpoints.test").pod for _ in range(4)} == {"127.0.3.64"}


def test_backend_certificate_verification_and_client_certificate(
    controller: Controller, manifests: Path, tmp_path: Path
) -> None:
    import base64

    from tests.certs import make_cert

    backend_cert, backend_key = make_cert("internal.example.com")
    client_cert, client_key = make_cert("ingressctl-client")
    other_cert, _ = make_cert("someone-else.example.com")
    for name, data in {"b.crt": backend_cert, "b.key": backend_key, "client.crt": client_cert}.items():
        (tmp_path / name).write_bytes(data)

    def secret(name: str, ca: bytes, *, namespace: str = "default") -> dict[str, Any]:
        enc = {"tls.crt": client_cert, "tls.key": client_key, "ca.crt": ca}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v).decode() for k, v in enc.items()},
        }

    verify = {
        "backend-protocol": "HTTPS",
        "proxy-ssl-verify": "on",
        "proxy-ssl-name": "internal.example.com",
        "proxy-ssl-server-name": "on",
    }
    pod = {"tls": (tmp_path / "b.crt", tmp_path / "b.key"), "client_ca": tmp_path / "client.crt"}
    with echo_pods(("127.0.3.71", PORT, pod)):
        write_manifests(
            manifests,
            "services.yaml",
            [
                *backing("secure", ["127.0.3.71"], PORT),
                secret("backend-ca", backend_cert),
                secret("wrong-ca", other_cert),
                secret("elsewhere", backend_cert, namespace="other"),
            ],
        )
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress(
                    "verified", "verified.test", {**verify, "proxy-ssl-secret": "default/backend-ca"}, svc="secure"
                ),
                host_ingress("wrong", "wrong.test", {**verify, "proxy-ssl-secret": "wrong-ca"}, svc="secure"),
                host_ingress("missing", "missing.test", {**verify, "proxy-ssl-secret": "nope"}, svc="secure"),
                host_ingress("no-client", "no-client.test", {"backend-protocol": "HTTPS"}, svc="secure"),
                host_ingress(
                    "other-ns", "other-ns.test", {**verify, "proxy-ssl-secret": "other/elsewhere"}, svc="secure"
                ),
            ],
        )
        wait_for(lambda: controller.get("verified.test").status == 200, what="verified backend served")
        assert controller.get("verified.test", "/v").json()["path"] == "/v"
        assert controller.get("wrong.test").status == 502, "a certificate the CA did not sign is refused"
        assert controller.get("missing.test").status == 503, "no Secret: fail closed, never unverified"
        assert controller.get("no-client.test").status == 502, "the backend requires the client certificate"
        assert controller.get("other-ns.test").status == 404, "a Secret of another namespace rejects the Ingress"
        log = controller.log()
        assert re.search(r"default/other-ns.*proxy-ssl-secret.*own namespace", log)
        assert re.search(r"default/missing.*Secret default/nope not found", log)
        certs = list((controller.work_dir / "certs").glob("*.pem"))
        assert all(c.stat().st_mode & 0o077 == 0 for c in certs), "certificate files are private"


def test_proxy_buffering(controller: Controller, manifests: Path) -> None:
    """With buffering (nginx's default) nginx takes a 64 MB answer from the endpoint while the client
    reads nothing (into memory and a temp file the workers can write, also when they run as another
    user), then serves all of it; with proxy-buffering off it takes only what the client reads, so
    the endpoint cannot finish writing."""
    import socket

    with echo_pods(("127.0.3.81", PORT, {}), ("127.0.3.82", PORT, {})) as (buffered_pod, streamed_pod):
        services(manifests, {"buffered": ["127.0.3.81"], "streamed": ["127.0.3.82"]})
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress("buffered", "buffered.test", {}, svc="buffered"),
                host_ingress("streamed", "streamed.test", {"proxy-buffering": "off"}, svc="streamed"),
            ],
        )
        served(controller, "buffered.test", "streamed.test")
        controller.settle()
        for host in ("buffered.test", "streamed.test"):
            with socket.create_connection(("127.0.0.1", controller.http_port), timeout=10) as client:
                client.sendall(f"GET /big HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                pod = buffered_pod if host == "buffered.test" else streamed_pod
                finished = pod.sent_big.wait(timeout=10 if host == "buffered.test" else 3)
                assert finished == (host == "buffered.test"), host
                if finished:  # and the client then gets all of it (from nginx's temp file)
                    client.settimeout(10)
                    received = 0
                    while received < 64 << 20:
                        data = client.recv(1 << 20)
                        if not data:
                            break
                        received += len(data)
                    assert received > 64 << 20, "the whole answer, with its head"
