"""JSON logs through real nginx: with --log-format json every line the controller process writes
(its own logs and nginx's access log) parses as one JSON object with the shared field names; the
ConfigMap picks access log fields by name only, never by format string."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from ingressctl.config import GlobalOptions
from ingressctl.logfields import ACCESS_FIELDS, ACCESS_LOGGER, COMMON
from ingressctl.translate.options import apply_configmap
from tests.harness import (
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

PORT = 18972
HOST = "logs.example"
NASTY_AGENT = 'agent "quoted" \\ back\\slash \x01\x7f ünïcødé {"json": 1}'


def _setup(manifests: Path, configmap: dict[str, str] | None = None) -> None:
    docs: list[dict[str, Any]] = [
        service("web", target=PORT),
        endpoint_slice("web", ["127.0.5.1"], port=PORT),
        ingress("web", rules=[rule(HOST, ("/", "Prefix", backend("web")))]),
        # Nothing listens at this endpoint: nginx writes an [error] line to its error log (stderr).
        service("down", target=PORT),
        endpoint_slice("down", ["127.0.5.9"], port=PORT),
        ingress("down", rules=[rule("down.example", ("/", "Prefix", backend("down")))]),
    ]
    if configmap is not None:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"namespace": "default", "name": "cm"},
                "data": configmap,
            }
        )
    write_manifests(manifests, "app.yaml", docs)


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _lines(log: bytes) -> list[dict[str, Any]]:
    """Every line as JSON: a line that is not one JSON object fails the test, naming it."""
    parsed = []
    for raw in log.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            raise AssertionError(f"not a JSON line: {raw!r}") from None
        assert isinstance(line, dict), raw
        for name in COMMON:
            assert isinstance(line.get(name), str) and line[name], (name, raw)
        parsed.append(line)
    return parsed


def test_json_lines_from_controller_and_nginx(tmp_path: Path, manifests: Path) -> None:
    _setup(manifests)
    with pods(["127.0.5.1"], PORT), running_controller(tmp_path, manifests, extra_args=["--log-format", "json"]) as ctl:
        wait_for(lambda: ctl.get(HOST).status == 200, what="route served")
        request = (
            f'GET /a%22b/é?q=%5C"x HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: '.encode()
            + NASTY_AGENT.encode()
            + b'\r\nReferer: https://r.example/"\r\nX-Request-ID: req-1234\r\nConnection: close\r\n\r\n'
        )
        assert b" 200 " in _raw(ctl.http_port, request).split(b"\r\n", 1)[0]

        def access_line() -> dict[str, Any] | None:
            log = ctl.log_path.read_bytes() if ctl.log_path else b""
            lines = [line for line in _lines(log) if line.get("request_id") == "req-1234"]
            return lines[0] if lines else None

        line = wait_for(access_line, timeout=10, what="the access log line")
        assert ctl.get("down.example").status == 502
        wait_for(lambda: b'"nginx.error"' in ctl.log().encode(), timeout=10, what="nginx's error line")
        log_bytes = ctl.log_path.read_bytes() if ctl.log_path else b""
    lines = _lines(log_bytes)  # after stop: the whole log, shutdown lines included
    assert line["logger"] == ACCESS_LOGGER and line["level"] == "info"
    assert list(line) == [*COMMON, *ACCESS_FIELDS]
    assert line["user_agent"] == NASTY_AGENT
    assert line["referer"] == 'https://r.example/"'
    assert line["uri"] == '/a%22b/é?q=%5C"x'
    assert line["method"] == "GET" and line["host"] == HOST and line["status"] == 200
    assert line["remote_addr"] == "127.0.0.1" and line["backend"] == "default/web:80"
    assert line["upstream_addr"] == f"127.0.5.1:{PORT}" and isinstance(line["request_time"], float | int)
    controller = [x for x in lines if x["logger"] != ACCESS_LOGGER]
    assert controller and all(isinstance(x["msg"], str) for x in controller)
    assert any("nginx started" in x["msg"] for x in controller)
    errors = [x for x in controller if x["logger"] == "nginx.error"]
    assert errors and errors[0]["level"] == "error" and "connect() failed" in errors[0]["msg"], errors
    # the same clock format on both streams (nginx's $time_iso8601)
    assert line["time"][19:] == controller[0]["time"][19:] == "+00:00"


def test_configmap_picks_fields_by_name(tmp_path: Path, manifests: Path) -> None:
    _setup(manifests, {"log-format-escape-json": "true", "log-format-upstream": "remote_addr, status,uri"})
    args = ["--configmap", "default/cm"]
    with pods(["127.0.5.1"], PORT), running_controller(tmp_path, manifests, extra_args=args) as ctl:
        wait_for(lambda: ctl.get(HOST, "/picked").status == 200, what="route served")

        def access_line() -> dict[str, Any] | None:
            for raw in ctl.log().splitlines():
                if raw.startswith("{") and '"/picked"' in raw:
                    return dict(json.loads(raw))
            return None

        line = wait_for(access_line, timeout=10, what="the access log line")
    # Text controller logs (no --log-format json); JSON access log with the chosen fields only.
    assert line == {
        "time": line["time"],
        "level": "info",
        "logger": ACCESS_LOGGER,
        "remote_addr": "127.0.0.1",
        "status": 200,
        "uri": "/picked",
    }


def test_format_strings_are_refused() -> None:
    base = GlobalOptions(access_log_json=True)
    for bad in ('$remote_addr - "$request"', "status,$status", "status;", "", "upstream_addr,nope"):
        options, errors = apply_configmap(base, {"log-format-upstream": bad})
        assert [e.field for e in errors] == ["data.log-format-upstream"], bad
        assert "only comma-separated field names" in errors[0].reason
        assert options == base
    options, errors = apply_configmap(base, {"log-format-escape-json": "false", "log-format-upstream": "status,status"})
    assert errors == [] and options.access_log_fields == ("status",) and options.access_log_json is False
