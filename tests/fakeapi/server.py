"""A fake Kubernetes API server over HTTP on 127.0.0.1, for tests only.

It speaks the protocol the real kubernetes-asyncio client speaks: typed paths (/api/v1/...,
/apis/GROUP/VERSION/...), namespaced and all-namespaces collections, lists with resourceVersion and
limit/continue paging from a consistent snapshot, watch=true streams of newline-delimited JSON events
(ADDED/MODIFIED/DELETED, BOOKMARK with allowWatchBookmarks, ERROR with a Status, 410 Gone for a
compacted resourceVersion), timeoutSeconds, label and field selectors, create/get/update/patch/delete,
the status subresource with optimistic concurrency, and bearer-token authentication.

Test code drives it directly (create/update/delete objects, compact history, drop or stall watch
streams, fail requests with 500s, take the whole server down and back up) and reads ``requests`` to
count what the client did.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakeapi.store import BY_KIND, BY_PATH, ApiError, Change, Obj, Resource, Store, Watcher
from tests.fakeapi.store import field_matcher as _field_matcher
from tests.fakeapi.store import label_matcher as _label_matcher

TOKEN = "fake-token"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    watch: bool


@dataclass
class Failure:
    """Fails matching requests with ``code`` until ``times`` runs out (None: until cleared). Code 0
    fails nothing: the request is answered as usual, ``delay`` seconds late."""

    code: int
    method: str | None
    path_contains: str | None
    watch: bool | None
    times: int | None
    query_has: str | None = None  # only requests with this query parameter (e.g. "continue")
    delay: float = 0.0

    def matches(self, request: Request) -> bool:
        return (
            (self.method is None or request.method == self.method)
            and (self.path_contains is None or self.path_contains in request.path)
            and (self.watch is None or request.watch == self.watch)
            and (self.query_has is None or self.query_has in request.query)
        )


@dataclass(eq=False)
class _Stream:
    watcher: Watcher
    request: web.Request
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    expired: asyncio.Event = field(default_factory=asyncio.Event)


class FakeApi:
    def __init__(self, *, bookmark_interval: float = 1.0, gone_as_event: bool = True) -> None:
        self.store = Store()
        self.bookmark_interval = bookmark_interval
        # A watch from a compacted version: 200 with an ERROR event (watch cache) or a 410 response.
        self.gone_as_event = gone_as_event
        self.requests: list[Request] = []
        self.failures: list[Failure] = []
        self.port = 0
        self._streams: set[_Stream] = set()
        self._stalled = asyncio.Event()  # set: streams send nothing
        self._runner: web.AppRunner | None = None
        self._snapshots: dict[str, tuple[int, list[Obj]]] = {}

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, **kwargs: Any) -> AsyncIterator[FakeApi]:
        api = cls(**kwargs)
        await api.start()
        try:
            yield api
        finally:
            await api.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._runner = runner

    async def stop(self) -> None:
        """Takes the server down: closes the listener and every connection (watches included)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.drop_watches()
        await runner.cleanup()

    async def restart(self) -> None:
        await self.start()

    def write_kubeconfig(self, path: Path, *, token: str = TOKEN, context: str = "fake") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": context,
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    # -- test controls ----------------------------------------------------------------------

    def create(self, obj: Obj) -> Obj:
        resource = self._resource_of(obj)
        return self.store.create(resource, _ns(obj), obj)

    def update(self, obj: Obj) -> Obj:
        """Replaces an object unconditionally (its resourceVersion, if any, is ignored)."""
        resource = self._resource_of(obj)
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {}).pop("resourceVersion", None)
        return self.store.update(resource, _ns(obj), obj["metadata"]["name"], obj, status=False)

    def update_status(self, obj: Obj) -> Obj:
        resource = self._resource_of(obj)
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {}).pop("resourceVersion", None)
        return self.store.update(resource, _ns(obj), obj["metadata"]["name"], obj, status=True)

    def apply(self, obj: Obj) -> Obj:
        """Creates or replaces."""
        try:
            return self.create(obj)
        except ApiError as err:
            if err.code != 409:
                raise
            return self.update(obj)

    def delete(self, kind: str, namespace: str, name: str) -> Obj:
        return self.store.delete(BY_KIND[kind], namespace, name)

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        return self.store.get(BY_KIND[kind], namespace, name)

    def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        return self.store.items(BY_KIND[kind], namespace)

    def compact(self, *, expire_watches: bool = False) -> None:
        """Compacts history; with expire_watches, every open watch gets a 410 ERROR event and ends
        (what the API server does when a watcher falls too far behind)."""
        self.store.compact()
        self._snapshots.clear()
        if expire_watches:
            for stream in list(self._streams):
                stream.expired.set()

    def drop_watches(self) -> None:
        """Aborts every open watch connection mid-stream (no clean end of the chunked body)."""
        for stream in list(self._streams):
            stream.dropped.set()
            transport = stream.request.transport
            if transport is not None:
                transport.abort()

    def stall(self, stalled: bool = True) -> None:
        """While stalled, watch streams send nothing, not even their end at timeoutSeconds."""
        if stalled:
            self._stalled.set()
        else:
            self._stalled.clear()

    def fail(
        self,
        code: int = 500,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        watch: bool | None = None,
        times: int | None = None,
        query_has: str | None = None,
    ) -> Failure:
        failure = Failure(code, method, path_contains, watch, times, query_has)
        self.failures.append(failure)
        return failure

    def slow(self, seconds: float, *, method: str | None = None, path_contains: str | None = None) -> Failure:
        """Answers matching requests `seconds` late (a slow API server), until cleared."""
        failure = Failure(0, method, path_contains, None, None, delay=seconds)
        self.failures.append(failure)
        return failure

    def clear_failures(self) -> None:
        self.failures.clear()

    def count(self, *, method: str = "GET", path_contains: str = "", watch: bool | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if r.method == method and path_contains in r.path and (watch is None or r.watch == watch)
        )

    @property
    def open_watches(self) -> int:
        return len(self._streams)

    # -- HTTP -------------------------------------------------------------------------------

    def _resource_of(self, obj: Obj) -> Resource:
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        for resource in BY_PATH.values():
            if (resource.group, resource.version, resource.kind) == (group, version, obj.get("kind")):
                return resource
        raise KeyError(f"no resource for {obj.get('apiVersion')} {obj.get('kind')}")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        watch = _bool(query.get("watch"))
        record = Request(request.method, request.path, query, watch)
        self.requests.append(record)
        try:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            for failure in list(self.failures):
                if failure.matches(record):
                    if failure.times is not None:
                        failure.times -= 1
                        if failure.times <= 0:
                            self.failures.remove(failure)
                    if failure.code == 0:
                        await asyncio.sleep(failure.delay)
                        continue
                    reason = _REASONS.get(failure.code, "InternalError")
                    raise ApiError(failure.code, reason, f"{reason} (injected by the test)")
            resource, namespace, name, sub = self._route(request.path)
            if sub and not (sub == "status" and resource.status):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if request.method == "GET" and name is None:
                if watch:
                    return await self._watch(request, resource, namespace, query)
                return _json(200, self._list(resource, namespace, query))
            if name is None:
                if request.method != "POST" or (namespace is None and resource.namespaced):
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
                body = await request.json()
                return _json(201, self.store.create(resource, namespace or "", body))
            ns = namespace or ""
            if request.method == "GET":
                return _json(200, self.store.get(resource, ns, name))
            if request.method == "PUT":
                body = await request.json()
                if (body.get("metadata") or {}).get("name") not in (None, name):
                    raise ApiError(400, "BadRequest", "the name of the object does not match the request")
                return _json(200, self.store.update(resource, ns, name, body, status=sub == "status"))
            if request.method == "PATCH":
                ctype = request.headers.get("Content-Type", "")
                if ctype not in (
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                ):
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format: {ctype}",
                    )
                body = await request.json()
                return _json(200, self.store.patch(resource, ns, name, body, status=sub == "status"))
            if request.method == "DELETE":
                return _json(200, self.store.delete(resource, ns, name))
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        except ApiError as err:
            return _json(err.code, err.status())

    def _route(self, path: str) -> tuple[Resource, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        resource = BY_PATH.get((group, version, rest[0])) if rest else None
        if resource is None or len(rest) > 3 or (namespace is not None and not resource.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        return resource, namespace, name, sub

    def _filter(self, resource: Resource, query: dict[str, str]) -> Any:
        labels = _label_matcher(query["labelSelector"]) if query.get("labelSelector") else None
        fields = _field_matcher(resource.kind, query["fieldSelector"]) if query.get("fieldSelector") else None
        return lambda obj: (labels is None or labels(obj)) and (fields is None or fields(obj))

    def _list(self, resource: Resource, namespace: str | None, query: dict[str, str]) -> Obj:
        match = self._filter(resource, query)
        token = query.get("continue")
        if token:
            if token not in self._snapshots:
                raise ApiError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result.",
                )
            rv, items = self._snapshots.pop(token)
        else:
            rv = self.store.rv
            items = [o for o in self.store.items(resource, namespace) if match(o)]
        limit = int(query.get("limit") or 0)
        metadata: Obj = {"resourceVersion": str(rv)}
        if limit and len(items) > limit:
            items, rest = items[:limit], items[limit:]
            token = f"{rv}-{random.getrandbits(48):x}"
            self._snapshots[token] = (rv, rest)
            metadata["continue"] = token
            metadata["remainingItemCount"] = len(rest)
        for item in items:  # the API server strips TypeMeta from the items of a typed list
            item.pop("apiVersion", None)
            item.pop("kind", None)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }

    async def _watch(
        self, request: web.Request, resource: Resource, namespace: str | None, query: dict[str, str]
    ) -> web.StreamResponse:
        match = self._filter(resource, query)
        bookmarks = _bool(query.get("allowWatchBookmarks"))
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else 1800.0
        rv_param = query.get("resourceVersion") or ""
        watcher = Watcher(resource, namespace)
        stream = _Stream(watcher, request)
        # Register before reading history so no change falls between the two.
        self.store.watchers.add(watcher)
        self._streams.add(stream)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            pending: list[Obj] = []
            if rv_param in ("", "0"):
                # Start at the most recent state: synthetic ADDED events for every current object.
                start = self.store.rv
                pending = [{"type": "ADDED", "object": o} for o in self.store.items(resource, namespace) if match(o)]
                watcher.queue.clear()  # already contained in the state we just sent
            else:
                start = int(rv_param)
                try:
                    changes = self.store.since(resource, namespace, start)
                except ApiError as err:
                    if err.code != 410 or not self.gone_as_event:
                        raise  # without the watch cache, the API server answers 410 on the request itself
                    await response.prepare(request)
                    await response.write(_line({"type": "ERROR", "object": err.status()}))
                    await response.write_eof()
                    return response
                watcher.queue.clear()
                pending = [e for c in changes if (e := _event(c, match))]
                start = changes[-1].rv if changes else start
            await response.prepare(request)
            deadline = time.monotonic() + timeout
            last_sent = start
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                if stream.dropped.is_set():
                    return response
                if self._stalled.is_set():
                    await asyncio.sleep(0.05)
                    continue
                if stream.expired.is_set():
                    gone = ApiError(410, "Expired", f"too old resource version: {last_sent} ({self.store.compacted})")
                    await response.write(_line({"type": "ERROR", "object": gone.status()}))
                    break
                watcher.wake.clear()
                while watcher.queue:
                    change = watcher.queue.popleft()
                    if change.rv > last_sent:
                        last_sent = change.rv
                        if (event := _event(change, match)) is not None:
                            pending.append(event)
                # Everything up to here is in `pending`: a bookmark may claim this version.
                progress = max(self.store.rv, last_sent)
                for event in pending:
                    await response.write(_line(event))
                pending = []
                now = time.monotonic()
                if now >= deadline:
                    break
                if bookmarks and now >= next_bookmark:
                    bookmark = {
                        "kind": resource.kind,
                        "apiVersion": resource.api_version,
                        "metadata": {"resourceVersion": str(progress)},
                    }
                    await response.write(_line({"type": "BOOKMARK", "object": bookmark}))
                    next_bookmark = now + self.bookmark_interval
                wait = min(deadline, next_bookmark if bookmarks else deadline, now + 0.1) - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watcher.wake.wait(), max(wait, 0.001))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
            return response
        except ConnectionError:
            return response
        finally:
            self.store.watchers.discard(watcher)
            self._streams.discard(stream)


_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    429: "TooManyRequests",
}


def _event(change: Change, match: Any) -> Obj | None:
    """The watch event a change produces for a watcher with a selector: an object that starts or
    stops matching is ADDED or DELETED."""
    was = change.old is not None and match(change.old)
    now = match(change.new)
    if change.type == "DELETED":
        return {"type": "DELETED", "object": change.new} if was else None
    if change.type == "ADDED":
        return {"type": "ADDED", "object": change.new} if now else None
    if was and now:
        return {"type": "MODIFIED", "object": change.new}
    if now:
        return {"type": "ADDED", "object": change.new}
    if was:
        return {"type": "DELETED", "object": change.new}
    return None


def _bool(value: str | None) -> bool:
    """Go's strconv.ParseBool, as the API server parses query booleans."""
    return value in ("1", "t", "T", "TRUE", "true", "True")


def _ns(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _line(event: Obj) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _json(status: int, body: Obj) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


__all__ = ["TOKEN", "FakeApi"]
