"""The request headers a gRPC backend gets (backend-protocol GRPC), through the real controller, real
nginx over TLS (HTTP/2), a real auth service and a real gRPC server on 127.48.0.x that answers the
metadata it received: the same X-Forwarded-*/X-Real-IP/X-Request-ID set as HTTP backends, and the
headers a backend trusts (auth-response-headers, basic auth's Authorization, the ssl-client-*
headers of client certificates) set by nginx, never what the client sent in their place."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.annotation_backends import GRPC_METADATA_METHOD, grpc_metadata_server
from tests.certs import make_cert, tls_secret
from tests.harness import Controller, free_port, opaque_secret, service, wait_for, write_manifests
from tests.test_annotations_nginx import backing, host_ingress
from tests.test_auth_nginx import auth_service

AUTH, POD = "127.48.0.1", "127.48.0.2"
AUTH_PORT, GRPC_PORT = free_port(), free_port()
HOSTS = ("plain.test", "auth.test", "basic.test", "mtls.test")
FORGED = {
    "x-forwarded-for": "6.6.6.6",
    "x-real-ip": "6.6.6.6",
    "x-forwarded-proto": "gopher",
    "x-user": "mallory",
    "x-email": "mallory@example.com",
    "ssl-client-verify": "SUCCESS",
    "ssl-client-subject-dn": "CN=admin",
}


def _sha(password: str) -> str:
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def test_grpc_backends_get_nginx_headers_not_forged_ones(controller: Controller, manifests: Path) -> None:
    cert, key = make_cert(*HOSTS)
    tls = [{"hosts": list(HOSTS), "secretName": "grpc-tls"}]
    auth_svc = service("authsvc", port=AUTH_PORT, target=AUTH_PORT)
    auth_svc["spec"]["clusterIP"] = AUTH  # the "cluster IP" is the auth service's own address here
    ca_secret = tls_secret("client-ca", cert, key)
    ca_secret["data"]["ca.crt"] = base64.b64encode(cert).decode()
    with auth_service(AUTH, AUTH_PORT), grpc_metadata_server(POD, GRPC_PORT):
        write_manifests(
            manifests,
            "services.yaml",
            [
                *backing("grpc", [POD], GRPC_PORT),
                auth_svc,
                tls_secret("grpc-tls", cert, key),
                ca_secret,
                opaque_secret("users", {"auth": f"alice:{_sha('wonderland')}\n"}),
            ],
        )
        annotations = {
            "plain": {},
            "auth": {"auth-url": f"http://{AUTH}:{AUTH_PORT}/check", "auth-response-headers": "X-User, X-Email"},
            "basic": {"auth-type": "basic", "auth-secret": "users"},
            "mtls": {"auth-tls-secret": "client-ca", "auth-tls-verify-client": "optional"},
        }
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress(name, f"{name}.test", {"backend-protocol": "GRPC", **extra}, svc="grpc", tls=tls)
                for name, extra in annotations.items()
            ],
        )

        def metadata(host: str, sent: dict[str, str]) -> dict[str, Any]:
            credentials = grpc.ssl_channel_credentials(root_certificates=cert)
            options = [("grpc.ssl_target_name_override", host), ("grpc.default_authority", host)]
            with grpc.secure_channel(f"127.0.0.1:{controller.https_port}", credentials, options=options) as channel:
                call = channel.unary_unary(GRPC_METADATA_METHOD)
                answer: dict[str, Any] = json.loads(call(b"", metadata=list(sent.items()), timeout=5))
                return answer

        def serves(host: str, sent: dict[str, str]) -> bool:
            try:
                metadata(host, sent)
            except grpc.RpcError:
                return False
            return True

        good = {"authorization": "Bearer good"}
        basic = {"authorization": "Basic " + base64.b64encode(b"alice:wonderland").decode()}
        controller.settle()
        assert wait_for(
            lambda: all(
                serves(h, s)
                for h, s in (("plain.test", {}), ("auth.test", good), ("basic.test", basic), ("mtls.test", {}))
            ),
            what="every gRPC host served",
        )

        for host, sent in (("plain.test", {}), ("auth.test", good), ("basic.test", basic), ("mtls.test", {})):
            seen = metadata(host, {**FORGED, **sent, "x-request-id": "req-42"})
            # The forwarded set, as on HTTP backends: the client's address (trust nothing by default).
            assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-real-ip"] == "127.0.0.1", (host, seen)
            assert seen["x-forwarded-proto"] == "https" and seen["x-forwarded-host"] == host, (host, seen)
            assert seen["x-forwarded-port"] == str(controller.https_port), (host, seen)
            assert seen["x-request-id"] == "req-42", (host, seen)
            if host == "auth.test":
                # The auth service's answer replaces the client's; a header it did not send is removed.
                assert seen["x-user"] == "alice" and seen["x-email"] == "alice@example.com", seen
            if host == "basic.test":
                assert "authorization" not in seen, "the client's credentials stay in nginx"
            if host == "mtls.test":
                # No client certificate: nginx says so, whatever the client claimed.
                assert seen["ssl-client-verify"] == "NONE" and "ssl-client-subject-dn" not in seen, seen
        # Without a token the auth service answers 401: the call is refused, the backend never asked.
        with pytest.raises(grpc.RpcError) as refused:
            metadata("auth.test", {})
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
