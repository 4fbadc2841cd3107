"""Client of the Lua configuration API on the unix socket in the work dir.

Every request uses a fresh connection, so an answer always comes from a current worker (a pooled
connection could stay with an old worker for a while after a reload).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aiohttp

from ingressctl.config import Backend


class LuaApiError(RuntimeError):
    pass


class BackendsEncoder:
    """Encodes the backends document for the Lua API. Each Backend's JSON is kept from one
    encoding to the next (by identity: translate hands back the same object while its endpoints
    do not change), so an update at 10,000 backends encodes only what changed."""

    def __init__(self) -> None:
        self._fragments: dict[int, tuple[Backend, str]] = {}

    def encode(self, backends: Iterable[Backend]) -> str:
        fragments: dict[int, tuple[Backend, str]] = {}
        parts = []
        for backend in backends:
            entry = self._fragments.get(id(backend))
            if entry is None:
                document = {
                    "name": backend.name,
                    "endpoints": [{"address": e.address, "port": e.port} for e in backend.endpoints],
                }
                entry = (backend, json.dumps(document, separators=(",", ":")))
            fragments[id(backend)] = entry
            parts.append(entry[1])
        self._fragments = fragments
        return '{"backends":[' + ",".join(parts) + "]}"


class LuaApi:
    def __init__(self, socket: str) -> None:
        self.socket = socket
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket, force_close=True),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post_backends(self, body: str) -> int:
        """Sends the backends document (JSON text); returns the new version."""
        async with self._client().post(
            "http://ingressctl/configuration/backends",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as resp:
            text = await resp.text()
            if resp.status != 201:
                raise LuaApiError(f"Lua API answered {resp.status}: {text.strip()}")
            return int(json.loads(text)["version"])

    async def get_backends(self) -> dict[str, Any]:
        async with self._client().get("http://ingressctl/configuration/backends") as resp:
            result: dict[str, Any] = json.loads(await resp.text())
            return result

    async def digest(self) -> str | None:
        """The digest of the configuration the answering worker runs; None if unreachable."""
        try:
            async with self._client().get("http://ingressctl/configuration/digest") as resp:
                return (await resp.text()).strip() if resp.status == 200 else None
        except (aiohttp.ClientError, OSError):
            return None
