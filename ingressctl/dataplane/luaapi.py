"""Client of the Lua configuration API on the unix socket in the work dir, and the JSON it sends
(the backends; the certificates' document is ingressctl.dataplane.certificates').

Two ways to update the backends (lua/ingressctl/configuration.lua): POST replaces them all (start,
after an nginx restart, whenever the state there is not known); PATCH sends only the backends that
changed, on top of the store's epoch and version that the last answer gave, and is refused with
409 when the store is elsewhere (then the caller sends everything).

Every request uses a fresh connection, so an answer always comes from a current worker (a pooled
connection could stay with an old worker for a while after a reload).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from ingressctl.config import ROUND_ROBIN, Backend


class LuaApiError(RuntimeError):
    pass


class LuaApiConflict(LuaApiError):
    """409: the store is not at the epoch and version a delta was built on."""


@dataclass(frozen=True)
class LuaState:
    """Where the Lua store is: its epoch (new with every nginx master) and its version."""

    epoch: str
    version: int


def _fragment(backend: Backend) -> str:
    document: dict[str, object] = {"name": backend.name}
    if backend.algorithm != ROUND_ROBIN:  # the balancer's default: not sent
        document["algorithm"] = backend.algorithm
    document.update(backend.settings())
    document["endpoints"] = [{"address": e.address, "port": e.port} for e in backend.endpoints]
    if backend.canary is not None:
        document["canary"] = backend.canary.document()
    return json.dumps(document, separators=(",", ":"))


class BackendsEncoder:
    """Encodes the backends documents for the Lua API. For a full document, each Backend's JSON is
    kept from one encoding to the next (by identity: translate hands back the same object while
    its endpoints do not change), so a full document at 10,000 backends encodes only what changed.
    A delta encodes just its own backends."""

    def __init__(self) -> None:
        self._fragments: dict[int, tuple[Backend, str]] = {}

    def encode(self, backends: Iterable[Backend]) -> str:
        fragments: dict[int, tuple[Backend, str]] = {}
        parts = []
        for backend in backends:
            entry = self._fragments.get(id(backend))
            if entry is None:
                entry = (backend, _fragment(backend))
            fragments[id(backend)] = entry
            parts.append(entry[1])
        self._fragments = fragments
        return '{"backends":[' + ",".join(parts) + "]}"

    def encode_delta(self, *, base: LuaState, upserts: Sequence[Backend], removals: Sequence[str]) -> str:
        entry = self._fragments.get
        parts = [e[1] if (e := entry(id(b))) is not None else _fragment(b) for b in upserts]
        return (
            f'{{"epoch":{json.dumps(base.epoch)},"base":{base.version},'
            f'"upsert":[{",".join(parts)}],"remove":{json.dumps(list(removals))}}}'
        )


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

    async def _write(self, method: str, body: str) -> LuaState:
        try:
            async with self._client().request(
                method,
                "http://ingressctl/configuration/backends",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LuaApiError(f"Lua API {method} failed: {exc!r}") from exc
        if status == 409:
            raise LuaApiConflict(f"Lua API answered 409: {text.strip()}")
        if status != 201:
            raise LuaApiError(f"Lua API answered {status} to {method}: {text.strip()}")
        answer = json.loads(text)
        return LuaState(epoch=str(answer["epoch"]), version=int(answer["version"]))

    async def post_backends(self, body: str) -> LuaState:
        """Replaces every backend with the document (JSON text); returns where the store is now."""
        return await self._write("POST", body)

    async def patch_backends(self, body: str) -> LuaState:
        """Applies a delta (from BackendsEncoder.encode_delta); raises LuaApiConflict when the
        store is not at the delta's base."""
        return await self._write("PATCH", body)

    async def post_certificates(self, body: str) -> tuple[int, dict[str, object]]:
        """Sends the certificate store's document (ingressctl.dataplane.certificates); returns the
        status and the JSON answer, whatever the status."""
        try:
            async with self._client().post(
                "http://ingressctl/configuration/certificates",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LuaApiError(f"Lua API POST of the certificates failed: {exc!r}") from exc
        try:
            answer = json.loads(text)
        except ValueError:
            raise LuaApiError(f"Lua API answered {status} to the certificates: {text.strip()[:200]}") from None
        return status, answer if isinstance(answer, dict) else {}

    async def digest(self) -> str | None:
        """The digest of the configuration the answering worker runs; None if unreachable."""
        try:
            async with self._client().get("http://ingressctl/configuration/digest") as resp:
                return (await resp.text()).strip() if resp.status == 200 else None
        except (aiohttp.ClientError, OSError):
            return None

    async def metrics(self) -> dict[str, Any] | None:
        """The per-route request totals (lua/ingressctl/monitor.lua); None if unreachable or off."""
        try:
            async with self._client().get("http://ingressctl/configuration/metrics") as resp:
                if resp.status != 200:
                    return None
                answer = json.loads(await resp.text())
        except (aiohttp.ClientError, OSError, ValueError):
            return None
        return answer if isinstance(answer, dict) else None
