"""Client of the Lua configuration API on the unix socket in the work dir.

Every request uses a fresh connection, so an answer always comes from a current worker (a pooled
connection could stay with an old worker for a while after a reload).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp


class LuaApiError(RuntimeError):
    pass


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

    async def post_backends(self, document: dict[str, Any]) -> int:
        """Sends the backends document; returns the new version."""
        body = json.dumps(document, separators=(",", ":"))
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
