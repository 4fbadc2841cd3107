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
    def socket(self) -> str:
        return f"{self.work}/lua-api.sock"

    @property
    def no_endpoints_socket(self) -> str:
        return f"{self.run or self.work}/no-endpoints.sock"

    @property
    def tmp(self) -> str:
        return f"{self.work}/tmp"

    @property
    def certs(self) -> str:
        return f"{self.work}/certs"

    def cert(self, name: str) -> str:
        return f"{self.certs}/{name}.pem"
