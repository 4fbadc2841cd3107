"""Where things live on disk: the templates and Lua code we ship, and the running nginx's files
(work dir layout, sockets). Every data-plane module and the cli take their paths from here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent.parent


def templates_dir() -> Path:
    return Path(os.environ.get("INGRESSCTL_TEMPLATES_DIR") or _REPO / "templates")


def lua_dir() -> Path:
    return Path(os.environ.get("INGRESSCTL_LUA_DIR") or _REPO / "lua")


@dataclass(frozen=True)
class Paths:
    """Where the running nginx finds its files; all under the work dir but the Lua code and the
    sockets the workers connect to (under `run`, which the worker user must be able to traverse;
    the controller makes a directory of its own for it, as the work dir's parents may be private)."""

    work: str
    lua: str
    run: str = ""  # default: the work dir

    @property
    def pid(self) -> str:
        return f"{self.work}/nginx.pid"

    @property
    def emerg_log(self) -> str:
        """nginx's [emerg] messages alone: a reload the master refused says why here."""
        return f"{self.work}/emerg.log"

    @property
    def api(self) -> str:
        """The configuration API's directory, private to the controller's user (0700): nginx makes
        every unix socket 0666, and this one hands out the shared dicts, certificate keys included.
        The workers accept on the master's listening socket and never need its path."""
        return f"{self.work}/api"

    @property
    def socket(self) -> str:
        return f"{self.api}/lua-api.sock"

    @property
    def no_endpoints_socket(self) -> str:
        return f"{self.run or self.work}/no-endpoints.sock"

    @property
    def no_endpoints_sockets(self) -> dict[str, str]:
        """The no-endpoints server per protocol the upstreams speak: plain HTTP, TLS (HTTP/1.1 or
        HTTP/2 by ALPN: HTTPS and GRPCS backends) and cleartext HTTP/2 (GRPC backends)."""
        return {
            "http": self.no_endpoints_socket,
            "tls": f"{self.run or self.work}/no-endpoints-tls.sock",
            "h2c": f"{self.run or self.work}/no-endpoints-h2c.sock",
        }

    @property
    def tmp(self) -> str:
        # Workers write request bodies and large responses here: with workers of another user, in
        # the run dir, whose parents they can traverse (the work dir's may be private, e.g. /root).
        return f"{self.run or self.work}/tmp"

    @property
    def certs(self) -> str:
        return f"{self.work}/certs"

    def cert(self, name: str) -> str:
        return f"{self.certs}/{name}.pem"

    @property
    def auth(self) -> str:
        """Basic auth user files: nginx's workers read them at each request, so they live where the
        worker user can reach them (the run dir), in a directory only that user may read."""
        return f"{self.run or self.work}/auth"

    def htpasswd(self, name: str) -> str:
        return f"{self.auth}/{name}.htpasswd"
