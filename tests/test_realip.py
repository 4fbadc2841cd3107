"""The client's real address through real nginx: by default no hop is trusted (a forged
X-Forwarded-For is dropped); use-forwarded-headers and use-proxy-protocol take the address only from
the hops in proxy-real-ip-cidr. Clients bind their sockets to chosen 127.0.0.x sources; the backend
echoes what it received and the access log shows what nginx recorded."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingressctl.config import GlobalOptions
from ingressctl.translate.options import apply_configmap
from tests.harness import (
    Controller,
    backend,
    endpoint_slice,
    ingress,
    pods,
    rule,
    running_controller,
    service,
    wait_for,
    write_manifests,
)

PORT = 18971
HOST = "realip.example"


def raw_get(port: int, *, source: str, headers: dict[str, str] | None = None, proxy: bytes = b"") -> tuple[int, Any]:
    """GET / from a socket bound to `source`, optionally preceded by a PROXY protocol v1 header.
    Returns (status, echoed JSON), or (0, None) when nginx closed the connection without answering."""
    lines = ["GET / HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(proxy + ("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        data = b""
    finally:
        sock.close()
    if not data:
        return 0, None
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if status == 200 else None


@pytest.fixture
def start(tmp_path: Path, manifests: Path) -> Iterator[Any]:
    started: list[Any] = []

    def run(options: dict[str, str]) -> Controller:
        write_manifests(
            manifests,
            "app.yaml",
            [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"namespace": "default", "name": "ingressctl"},
                    "data": options,
                },
                service("web", target=PORT),
                endpoint_slice("web", ["127.0.4.1"], port=PORT),
                ingress("web", rules=[rule(HOST, ("/", "Prefix", backend("web")))]),
            ],
        )
        context = running_controller(tmp_path, manifests, extra_args=["--configmap", "default/ingressctl"])
        ctl = context.__enter__()
        started.append(context)
        proxy = (
            f"PROXY TCP4 192.0.2.2 127.0.0.1 1 {ctl.http_port}\r\n".encode() if "use-proxy-protocol" in options else b""
        )
        wait_for(lambda: raw_get(ctl.http_port, source="127.0.4.2", proxy=proxy)[0] == 200, what="route served")
        assert ctl.reloads() == 0, "the first configuration already carries the ConfigMap's options"
        ctl.settle()
        return ctl

    with pods(["127.0.4.1"], PORT):
        try:
            yield run
        finally:
            for context in started:
                context.__exit__(None, None, None)


def access_log_has(ctl: Controller, text: str) -> None:
    """The access log (nginx's stdout, in the controller's log; flushed every second) shows `text`
    at the start of a line of the route."""
    wait_for(
        lambda: any(line.startswith(text) and "default/web:80" in line for line in ctl.log().splitlines()),
        timeout=10,
        what=f"access log line for {text}",
    )


def test_default_trusts_no_hop(start: Any) -> None:
    ctl = start({})
    status, seen = raw_get(ctl.http_port, source="127.0.4.50", headers={"X-Forwarded-For": "203.0.113.9"})
    assert status == 200
    assert seen["headers"]["X-Real-IP"] == "127.0.4.50"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.4.50"  # the forged chain is dropped
    access_log_has(ctl, "127.0.4.50 ")
    assert "203.0.113.9" not in ctl.log()


def test_forwarded_headers_only_from_trusted_hops(start: Any) -> None:
    ctl = start(
        {
            "use-forwarded-headers": "true",
            "compute-full-forwarded-for": "true",
            "proxy-real-ip-cidr": "127.0.4.60/32, 10.0.0.0/8",
        }
    )
    # A trusted load balancer: the rightmost untrusted address of its chain is the client.
    chain = "203.0.113.9, 198.51.100.4, 10.1.2.3"
    status, seen = raw_get(ctl.http_port, source="127.0.4.60", headers={"X-Forwarded-For": chain})
    assert status == 200
    assert seen["headers"]["X-Real-IP"] == "198.51.100.4"
    assert seen["headers"]["X-Forwarded-For"] == f"{chain}, 127.0.4.60"
    access_log_has(ctl, "198.51.100.4 ")
    # Anyone else: its header is ignored and dropped.
    status, seen = raw_get(ctl.http_port, source="127.0.4.61", headers={"X-Forwarded-For": "192.0.2.66"})
    assert status == 200
    assert seen["headers"]["X-Real-IP"] == "127.0.4.61"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.4.61"
    access_log_has(ctl, "127.0.4.61 ")
    assert not any(line.startswith("192.0.2.66") for line in ctl.log().splitlines())


def test_forwarded_headers_without_cidr_trust_nothing(start: Any) -> None:
    ctl = start({"use-forwarded-headers": "true", "forwarded-for-header": "X-Original-Forwarded-For"})
    status, seen = raw_get(ctl.http_port, source="127.0.4.62", headers={"X-Original-Forwarded-For": "192.0.2.7"})
    assert status == 200
    assert seen["headers"]["X-Real-IP"] == "127.0.4.62"


def test_custom_forwarded_for_header(start: Any) -> None:
    ctl = start(
        {
            "use-forwarded-headers": "true",
            "forwarded-for-header": "X-Original-Forwarded-For",
            "compute-full-forwarded-for": "true",
            "proxy-real-ip-cidr": "127.0.4.63",
        }
    )
    status, seen = raw_get(
        ctl.http_port,
        source="127.0.4.63",
        headers={"X-Original-Forwarded-For": "192.0.2.8", "X-Forwarded-For": "192.0.2.99"},
    )
    assert status == 200
    assert seen["headers"]["X-Real-IP"] == "192.0.2.8"
    assert seen["headers"]["X-Forwarded-For"] == "192.0.2.8, 127.0.4.63"


def test_proxy_protocol(start: Any) -> None:
    ctl = start({"use-proxy-protocol": "true", "proxy-real-ip-cidr": "127.0.4.70/32"})
    header = f"PROXY TCP4 203.0.113.7 127.0.0.1 40000 {ctl.http_port}\r\n".encode()
    # From the trusted load balancer: the PROXY header's source is the client.
    status, seen = raw_get(ctl.http_port, source="127.0.4.70", proxy=header, headers={"X-Forwarded-For": "192.0.2.1"})
    assert status == 200
    assert seen["headers"]["X-Real-IP"] == "203.0.113.7"
    assert seen["headers"]["X-Forwarded-For"] == "203.0.113.7"
    access_log_has(ctl, "203.0.113.7 ")
    # From anyone else the header is parsed but not believed.
    status, seen = raw_get(ctl.http_port, source="127.0.4.71", proxy=header)
    assert status == 200
    assert seen["headers"]["X-Real-IP"] == "127.0.4.71"
    access_log_has(ctl, "127.0.4.71 ")
    # Without a PROXY header, nginx refuses the connection (no answer).
    assert raw_get(ctl.http_port, source="127.0.4.70") == (0, None)


def test_bad_values_are_rejected_alone() -> None:
    options, errors = apply_configmap(
        GlobalOptions(),
        {
            "proxy-real-ip-cidr": "10.0.0.0/8, 1.2.3.4;",
            "forwarded-for-header": "X-Forwarded-For\nX",
            "use-forwarded-headers": "yes",
            "compute-full-forwarded-for": "true",
        },
    )
    assert {e.field for e in errors} == {
        "data.proxy-real-ip-cidr",
        "data.forwarded-for-header",
        "data.use-forwarded-headers",
    }
    assert options.compute_full_forwarded_for is True
    assert options.proxy_real_ip_cidr == () and options.use_forwarded_headers is False
    options, errors = apply_configmap(GlobalOptions(), {"proxy-real-ip-cidr": "10.1.2.3/8,::1"})
    assert errors == [] and options.proxy_real_ip_cidr == ("10.0.0.0/8", "::1/128")
