"""Backends for the annotation tests: an HTTP(S) echo "pod" on its own 127.0.0.x address that
reports what nginx sent (request line, HTTP version, headers, how the body came) and has a few
special paths, and real gRPC servers (grpcio's health service; a metadata echo). Every server is
stopped by the context manager that started it."""

from __future__ import annotations

import contextlib
import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any


class Echo:
    """Answers JSON naming itself, echoing the request. Special paths:
    /redirect -> 302 to http://internal.local/landing; /bigheader -> a 6 KB response header;
    /slow -> answers after 2.5 s; any path containing /fail -> 502; /big -> 64 MB (sent_big is set
    once written to the end)."""

    def __init__(
        self,
        address: str,
        port: int,
        *,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        fail: bool = False,
    ) -> None:
        self.address = address
        self.sni: list[str | None] = []
        self.sent_big = threading.Event()  # a /big answer was written to the end
        pod = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
                length = int(self.headers.get("Content-Length") or 0)
                if chunked:
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        self.rfile.read(size + 2)
                        if size == 0:
                            break
                elif length:
                    self.rfile.read(length)
                status, extra = 200, {}
                if fail or "/fail" in self.path:
                    status = 502
                elif self.path.startswith("/redirect"):
                    status, extra = 302, {"Location": "http://internal.local/landing"}
                elif self.path.startswith("/bigheader"):
                    extra = {"X-Big": "x" * 6000}
                elif self.path.startswith("/slow"):
                    time.sleep(2.5)
                elif self.path.startswith("/big"):
                    self._big()
                    return
                body = json.dumps(
                    {
                        "pod": pod.address,
                        "path": self.path,
                        "method": self.command,
                        "version": self.request_version,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "chunked": chunked,
                    }
                ).encode()
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _big(self) -> None:
                chunk = b"x" * (1 << 20)
                self.send_response(200)
                self.send_header("Content-Length", str(64 * len(chunk)))
                self.end_headers()
                for _ in range(64):
                    self.wfile.write(chunk)
                pod.sent_big.set()

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _answer

            def log_message(self, *_: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server((address, port), Handler)
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            if client_ca:  # mutual TLS: a client certificate signed by client_ca is required
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(str(client_ca))

            def remember(sock: Any, name: str | None, _: Any) -> None:
                pod.sni.append(name)

            ctx.sni_callback = remember
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def echo_pods(*specs: tuple[str, int, dict[str, Any]]) -> Iterator[list[Echo]]:
    started: list[Echo] = []
    try:
        for address, port, kwargs in specs:
            started.append(Echo(address, port, **kwargs))
        yield started
    finally:
        for pod in started:
            pod.stop()


@contextlib.contextmanager
def _grpc_server(address: str, port: int, register: Callable[[Any], None]) -> Iterator[Any]:
    """A real gRPC server (plaintext HTTP/2) on address:port with what `register` adds to it."""
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    register(server)
    server.add_insecure_port(f"{address}:{port}")
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=None).wait(5)


def grpc_health_server(address: str, port: int) -> contextlib.AbstractContextManager[Any]:
    """A real gRPC server serving grpc.health.v1 with the service "ingressctl"."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servicer = health.HealthServicer()
    servicer.set("ingressctl", health_pb2.HealthCheckResponse.SERVING)
    return _grpc_server(address, port, lambda server: health_pb2_grpc.add_HealthServicer_to_server(servicer, server))


GRPC_METADATA_METHOD = "/ingressctl.Echo/Metadata"


def grpc_metadata_server(address: str, port: int) -> contextlib.AbstractContextManager[Any]:
    """A real gRPC server whose unary method GRPC_METADATA_METHOD answers (raw bytes, no protobuf)
    the JSON object of the request metadata it got, as the backend sees it."""
    import grpc

    def metadata(_request: bytes, context: Any) -> bytes:
        return json.dumps({key: value for key, value in context.invocation_metadata()}).encode()

    service, method = GRPC_METADATA_METHOD.strip("/").split("/")
    handler = grpc.method_handlers_generic_handler(service, {method: grpc.unary_unary_rpc_method_handler(metadata)})
    return _grpc_server(address, port, lambda server: server.add_generic_rpc_handlers((handler,)))
