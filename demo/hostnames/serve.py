"""Tiny "pods" for the local demo: each answers every request with its own name (like serve_hostname)."""

from __future__ import annotations

import argparse
import http.server
import signal
import sys
import threading


def serve(address: str, port: int, name: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"{name}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9376)
    parser.add_argument("addresses", nargs="+")
    args = parser.parse_args()
    servers = [serve(a, args.port, f"hostnames-{i + 1} ({a})") for i, a in enumerate(args.addresses)]
    print(f"pods serving on {', '.join(args.addresses)} port {args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
