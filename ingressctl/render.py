"""Render: StaticConfig -> nginx.conf text through templates/nginx.conf.j2.

Values reach the template already validated; the `q` filter still checks every string against an
allowlist and emits it double-quoted, so nothing from an object can end a token or a block.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ingressctl.config import StaticConfig

_REPO = Path(__file__).resolve().parent.parent
# Quoted-string content: no quote, whitespace, control character, ';', '{', '}' or '#'; a
# backslash only to escape a dot (server_name regexes).
_QUOTABLE = re.compile(r'(?:[^"\\\s;{}#\x00-\x1f\x7f]|\\\.)*')


class UnsafeValue(ValueError):
    pass


def quote(value: object, *, semicolons: bool = False) -> str:
    """Checks and double-quotes a value. `semicolons` only for the controller's own lua_package_path."""
    text = str(value)
    if not _QUOTABLE.fullmatch(text.replace(";", "") if semicolons else text):
        raise UnsafeValue(f"refusing to emit {text!r} into nginx.conf")
    return f'"{text}"'


def templates_dir() -> Path:
    return Path(os.environ.get("INGRESSCTL_TEMPLATES_DIR") or _REPO / "templates")


def lua_dir() -> Path:
    return Path(os.environ.get("INGRESSCTL_LUA_DIR") or _REPO / "lua")


@dataclass(frozen=True)
class Paths:
    """Where the running nginx finds its files; all under the work dir but the Lua code."""

    work: str
    lua: str

    @property
    def pid(self) -> str:
        return f"{self.work}/nginx.pid"

    @property
    def socket(self) -> str:
        return f"{self.work}/lua-api.sock"

    @property
    def tmp(self) -> str:
        return f"{self.work}/tmp"

    @property
    def certs(self) -> str:
        return f"{self.work}/certs"

    def cert(self, name: str) -> str:
        return f"{self.certs}/{name}.pem"


class Renderer:
    def __init__(self, *, paths: Paths, user: str | None = None, directory: Path | None = None) -> None:
        self.paths = paths
        self.user = user
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory or templates_dir())),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["q"] = quote
        self._template = env.get_template("nginx.conf.j2")

    def render(self, static: StaticConfig) -> str:
        address = static.options.listen_address

        def listen(port: int) -> str:
            if not address:
                return str(int(port))
            return quote(f"[{address}]:{int(port)}" if ":" in address else f"{address}:{int(port)}")

        return self._template.render(
            static=static,
            o=static.options,
            digest=static.digest(),
            paths=self.paths,
            user=self.user,
            listen=listen,
        )
