"""One informer: the list -> watch -> relist loop for one collection, as an async generator.

It owns the whole loop instead of leaning on kubernetes-asyncio's Watch (which retries a 410 once
and then raises, and turns objects into models): list with limit/continue paging, then watch from the
list's resourceVersion with bookmarks, following resourceVersion through events and bookmarks; a
stream that ends (timeoutSeconds) or breaks is re-opened from the last resourceVersion, so nothing is
missed or replayed; 410 Gone (compacted history, expired continue token) means relist, and the relist
is reported as one REPLACED event so the cache swaps the whole kind at once; any other error (connection
refused, timeout, 5xx, 401/403, malformed data) waits a capped exponential backoff with jitter.

Objects stay plain dicts as the API serialises them; list items get back the apiVersion and kind the
API server strips from them, so every object looks like its YAML manifest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ingressctl.kubeapi.client import ApiError, read_json
from ingressctl.model import Event, EventType, Obj

log = logging.getLogger(__name__)

# A typed list function of kubernetes-asyncio, bound to its namespace if any, e.g.
# functools.partial(CoreV1Api(client).list_namespaced_service, "default").
ListCall = Callable[..., Awaitable[Any]]

_MAX_LINE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Timing:
    """How patient an informer is. Tests shrink these."""

    page_size: int = 500
    # Server-side timeoutSeconds of a watch, randomised in [watch_timeout, 2 * watch_timeout).
    watch_timeout: float = 300.0
    # A watch that sends nothing (not even a bookmark) for this long is treated as dead.
    idle_timeout: float = 120.0
    # Connecting, and a whole list request.
    connect_timeout: float = 10.0
    request_timeout: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 5.0

    def backoff(self, failures: int) -> float:
        """Capped exponential backoff with jitter: in [d/2, d], d = initial * 2^(failures-1)."""
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(failures - 1, 30))
        return random.uniform(delay / 2, delay)


DEFAULT_TIMING = Timing()


@dataclass(frozen=True)
class Collection:
    """What one informer lists and watches."""

    kind: str
    api_version: str
    call: ListCall
    scope: str = ""  # the namespace, "" for all namespaces or a cluster-scoped kind
    field_selector: str | None = None
    label_selector: str | None = None

    def __str__(self) -> str:
        where = f" in {self.scope}" if self.scope else ""
        sel = f" ({self.field_selector})" if self.field_selector else ""
        return f"{self.kind}{where}{sel}"


class _Lines:
    """Splits a streamed body into lines, with no limit on line length short of _MAX_LINE (aiohttp's
    readline stops at 128 KiB, and one object can be larger)."""

    def __init__(self, response: Any) -> None:
        self._content = response.content
        self._buffer = bytearray()

    async def next(self) -> bytes | None:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            chunk = await self._content.readany()
            if not chunk:
                return None  # the server ended the stream
            self._buffer += chunk
            if len(self._buffer) > _MAX_LINE:
                raise ValueError("watch event too large")


def _with_type_meta(collection: Collection, item: Obj) -> Obj:
    return {"apiVersion": collection.api_version, "kind": collection.kind, **item}


def _rv(obj: Any) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return str(rv) if rv else None


class Informer:
    """``async for event in Informer(collection, timing=...).events()`` yields REPLACED after every
    (re)list and ADDED/MODIFIED/DELETED in between, forever, until the consumer stops iterating."""

    def __init__(self, collection: Collection, *, timing: Timing = DEFAULT_TIMING) -> None:
        self.collection = collection
        self.timing = timing
        self.lists = 0  # completed lists, for tests and logs
        self._failures = 0

    async def _list(self) -> tuple[tuple[Obj, ...], str]:
        c, t = self.collection, self.timing
        items: list[Obj] = []
        token: str | None = None
        while True:
            response = await c.call(
                limit=t.page_size,
                _continue=token,
                field_selector=c.field_selector,
                label_selector=c.label_selector,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(total=t.request_timeout, connect=t.connect_timeout),
            )
            try:
                page = await read_json(response)
            except ApiError as err:
                if err.gone and token:
                    # The continue token expired between pages: start over for a consistent list.
                    log.info("%s: list continue token expired, listing again", c)
                    items, token = [], None
                    continue
                raise
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise ApiError(500, "BadList", "list response without items")
            items.extend(_with_type_meta(c, item) for item in page["items"])
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            if not token:
                rv = meta.get("resourceVersion")
                if not rv:
                    raise ApiError(500, "BadList", "list response without resourceVersion")
                self.lists += 1
                return tuple(items), str(rv)

    async def _sleep_backoff(self, err: BaseException) -> None:
        self._failures += 1
        delay = self.timing.backoff(self._failures)
        # A single broken stream is routine (API server restart, idle proxy); repeated failures are not.
        level = logging.INFO if self._failures == 1 else logging.WARNING
        log.log(level, "%s: %s: %s; retrying in %.1fs", self.collection, type(err).__name__, err or "error", delay)
        await asyncio.sleep(delay)

    async def events(self) -> AsyncGenerator[Event, None]:
        c, t = self.collection, self.timing
        rv: str | None = None
        relist_after_gone = False
        while True:
            try:
                if rv is None:
                    objects, rv = await self._list()
                    self._failures = 0
                    yield Event(EventType.REPLACED, c.kind, objects=objects)
                started = time.monotonic()
                delivered = 0
                response = await c.call(
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=int(t.watch_timeout * (1 + random.random())) or 1,
                    field_selector=c.field_selector,
                    label_selector=c.label_selector,
                    _preload_content=False,
                    _request_timeout=aiohttp.ClientTimeout(
                        connect=t.connect_timeout, sock_connect=t.connect_timeout, sock_read=t.idle_timeout
                    ),
                )
                async with response:
                    if response.status != 200:
                        await read_json(response)  # raises with the Status
                    lines = _Lines(response)
                    while (line := await lines.next()) is not None:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        kind, obj = event.get("type"), event.get("object")
                        if kind == "ERROR":
                            raise ApiError.from_status(obj)
                        new_rv = _rv(obj)
                        if new_rv is None:
                            raise ApiError(500, "BadWatchEvent", f"{kind} event without resourceVersion")
                        relist_after_gone = False  # the watch is making progress
                        self._failures = 0
                        if kind == "BOOKMARK":
                            rv = new_rv
                            continue
                        if kind not in ("ADDED", "MODIFIED", "DELETED"):
                            raise ApiError(500, "BadWatchEvent", f"unknown watch event type {kind!r}")
                        rv = new_rv
                        delivered += 1
                        yield Event(EventType(kind), c.kind, obj=obj)
                # The server ended the watch (timeoutSeconds): continue from rv. A stream that ends at
                # once without anything in it counts as a failure, so a broken server is not hammered.
                if not delivered and time.monotonic() - started < 1.0:
                    await self._sleep_backoff(ApiError(500, "WatchEnded", "watch ended immediately"))
                else:
                    log.debug("%s: watch ended, resuming from %s", c, rv)
            except ApiError as err:
                if err.gone:
                    log.info("%s: resourceVersion %s is gone, listing again", c, rv)
                    rv = None
                    if relist_after_gone:  # 410 straight after a relist: do not spin
                        await self._sleep_backoff(err)
                    relist_after_gone = True
                    continue
                await self._sleep_backoff(err)
            except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as err:
                await self._sleep_backoff(err)
