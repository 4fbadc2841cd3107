"""Memory under endpoint churn (issue 15): many endpoint-only changes through the real controller
path (source -> cache -> translate -> plan -> real Applier -> real nginx and its Lua store) must
leave memory bounded by the cluster's size, not by the number of changes.

Measured after a warm-up and again at the end: the live EndpointSlice objects (gc), the entries
of translate's memo, and the bytes tracemalloc traces to allocations made from ingressctl code.
Through the manifests folder and through the Kubernetes API source (fake API server, real
kubernetes-asyncio client over HTTP). Before the fix every change kept its slice, the Service's
slice mapping and a memo entry alive (about 3 KB each).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingressctl.cache import Cache
from ingressctl.certs import self_signed
from ingressctl.config import GlobalOptions
from ingressctl.controller import Controller
from ingressctl.dataplane.apply import Applier
from ingressctl.dataplane.luaapi import LuaApi
from ingressctl.dataplane.nginx import Nginx
from ingressctl.dataplane.paths import Paths, lua_dir
from ingressctl.dataplane.render import Renderer
from ingressctl.metrics import Metrics
from ingressctl.model import Event, EventType
from ingressctl.sources import kube
from ingressctl.sources.base import Source
from ingressctl.sources.manifests import ManifestsSource
from ingressctl.translate import Settings, Translator
from ingressctl.translate.memo import Memo
from tests.fakeapi import FakeApi
from tests.fakeapi.helpers import FAST, api_client
from tests.harness import (
    backend,
    endpoint_slice,
    free_port,
    ingress,
    ingress_class,
    rule,
    service,
    unix_request,
    write_manifests,
)

PORT = 18961
APP = "default/app:80"
POOL = [f"127.0.0.{i}" for i in range(81, 87)]  # 3 of these 6 serve at a time, in rotation
WARMUP = 150
# Allocations still alive that were made by ingressctl code, per change after the warm-up. The
# leak kept about 3 KB per change; what is left is noise (a log record, a dict resized once).
MAX_BYTES_PER_CHANGE = 150


def endpoints(i: int) -> list[str]:
    """The i-th endpoint set: consecutive sets always differ, and the same sets come back."""
    return [POOL[(i + k) % len(POOL)] for k in range(3)]


def static_objects() -> list[dict[str, Any]]:
    return [
        ingress_class(),
        service("app", target=PORT),
        ingress("app", rules=[rule("churn.example.com", ("/", "Prefix", backend("app")))]),
    ]


def live_slices() -> int:
    """EndpointSlice objects alive in this process (every parsed slice is a dict with its kind)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is dict and o.get("kind") == "EndpointSlice")


def ingressctl_bytes() -> int:
    """Bytes of live allocations made with ingressctl code on the stack (tests' own excluded)."""
    gc.collect()
    only_ours = tracemalloc.Filter(True, "*/ingressctl/*", all_frames=True)
    return sum(stat.size for stat in tracemalloc.take_snapshot().filter_traces([only_ours]).statistics("filename"))


@dataclass(frozen=True)
class Reading:
    slices: int
    memo: int
    traced: int


@dataclass
class Running:
    controller: Controller
    applier: Applier

    def served(self) -> list[str] | None:
        for b in self.applier.backends or ():
            if b.name == APP:
                return sorted(e.address for e in b.endpoints)
        return None

    def reading(self) -> Reading:
        return Reading(live_slices(), len(self.controller.translator.memo), ingressctl_bytes())


@contextlib.asynccontextmanager
async def running(tmp: Path, source: Source) -> AsyncIterator[Running]:
    """The controller's sync loop on `source`, with a real Applier on a real nginx."""
    paths = Paths(work=str(tmp / "work"), lua=str(lua_dir()))
    nginx = Nginx(binary="nginx", paths=paths)
    metrics = Metrics()
    applier = Applier(
        nginx=nginx, renderer=Renderer(paths=paths, user=nginx.user), lua=LuaApi(paths.socket), metrics=metrics
    )
    settings = Settings(
        fallback_certificate=self_signed(),
        options=GlobalOptions(http_port=free_port(), https_port=free_port(), listen_address="127.0.0.1"),
    )
    controller = Controller(source=source, translator=Translator(settings), applier=applier, metrics=metrics)
    task = asyncio.create_task(controller.run())
    try:
        yield Running(controller, applier)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await nginx.stop()
        await applier.lua.close()


async def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.001)


async def churn(
    run: Running, change: Callable[[list[str]], Awaitable[None]], *, changes: int, compact: Callable[[], None]
) -> tuple[Reading, Reading]:
    """Makes `changes` endpoint-only changes, each waited for until the Lua store's bookkeeping has
    it; returns the readings after the warm-up and at the end. `compact` drops what the test's own
    fixtures keep per change (the fake API's history) before each reading."""
    await until(lambda: run.controller.ready and run.served() is not None, "the first configuration")
    reloads = run.applier.reloads
    tracemalloc.start(12)
    try:
        warm: Reading | None = None
        for i in range(1, changes + 1):
            want = sorted(endpoints(i))
            await change(want)
            await until(lambda want=want: run.served() == want, f"change {i} ({want}) applied")  # type: ignore[misc]
            if i == WARMUP:
                compact()
                warm = run.reading()
        compact()
        end = run.reading()
    finally:
        tracemalloc.stop()
    assert warm is not None
    assert run.applier.reloads == reloads, "endpoint changes never reload nginx"
    # The Lua store holds the last set: the changes went all the way to the data plane.
    store = unix_request(Path(run.applier.nginx.paths.socket), "GET", "/configuration/backends").json()
    got = {b["name"]: sorted(e["address"] for e in b["endpoints"]) for b in store["document"]["backends"]}
    assert got[APP] == sorted(endpoints(changes))
    return warm, end


def assert_flat(warm: Reading, end: Reading, measured: int) -> None:
    growth = end.traced - warm.traced
    figures = f"after warm-up {warm}, after {measured} more changes {end}; {growth / measured:+.0f} B/change"
    print(figures)  # shown with -s: the figures the README quotes
    assert end.slices <= warm.slices + 2, f"EndpointSlices kept alive: {figures}"
    assert end.memo <= warm.memo, f"memo entries grow: {figures}"
    assert growth < MAX_BYTES_PER_CHANGE * measured, f"memory grows: {figures}"


async def test_manifests_folder_churn_keeps_memory_flat(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    write_manifests(folder, "static.yaml", static_objects())
    write_manifests(folder, "slice.yaml", [endpoint_slice("app", endpoints(0), port=PORT)])

    async def change(addresses: list[str]) -> None:
        write_manifests(folder, "slice.yaml", [endpoint_slice("app", addresses, port=PORT)])

    changes = WARMUP + 450
    async with running(tmp_path, ManifestsSource(folder, notify=False, interval=0.005)) as run:
        warm, end = await churn(run, change, changes=changes, compact=lambda: None)
    assert_flat(warm, end, changes - WARMUP)


async def test_api_source_churn_keeps_memory_flat(tmp_path: Path) -> None:
    async with FakeApi.running(bookmark_interval=0.5) as api, api_client(api, tmp_path) as client:
        for obj in static_objects():
            api.create(obj)
        api.create(endpoint_slice("app", endpoints(0), port=PORT))

        async def change(addresses: list[str]) -> None:
            api.update(endpoint_slice("app", addresses, port=PORT))

        def compact() -> None:
            api.compact()  # the fake's own history of every write (etcd compacts too)
            api.requests.clear()

        # Watches that last the whole run: re-opening them is time-driven work of its own (the
        # HTTP client's caches), not per change. Bookmarks keep them from looking idle.
        timing = dataclasses.replace(FAST, watch_timeout=120, idle_timeout=30)
        source = kube.KubeSource(
            kube.collections(client, configmap=None), timing=timing, empty_kinds=kube.empty_kinds(None)
        )
        changes = WARMUP + 450
        async with running(tmp_path, source) as run:
            warm, end = await churn(run, change, changes=changes, compact=compact)
    assert_flat(warm, end, changes - WARMUP)


class Anchor:
    """An object a memo entry keeps alive (weakly referenceable, unlike the dicts of objects)."""


def test_a_slot_holds_one_entry_and_releases_what_it_replaced() -> None:
    memo = Memo()
    first, second = Anchor(), Anchor()
    gone = weakref.ref(first)
    assert memo.latest("slot", id(first), (first,), lambda: "one") == "one"
    assert memo.latest("slot", id(first), (first,), lambda: "never computed") == "one"
    assert memo.latest("slot", id(second), (second,), lambda: "two") == "two"
    del first
    gc.collect()
    assert gone() is None, "the replaced entry no longer keeps its anchors alive"
    assert len(memo) == 1
    memo.rotate()
    assert memo.latest("slot", id(second), (second,), lambda: "never computed") == "two", "carried over"
    assert len(memo) == 1, "one copy of a carried-over entry"
    memo.rotate()
    memo.rotate()
    assert len(memo) == 0, "a slot no translation used is forgotten"


def test_get_carries_an_entry_over_once() -> None:
    memo = Memo()
    memo.get("k", (), lambda: 1)
    memo.rotate()
    assert memo.get("k", (), lambda: 2) == 1
    assert len(memo) == 1
    memo.rotate()
    assert len(memo) == 1


def test_endpoint_updates_between_full_translations_keep_no_old_slices() -> None:
    """The translate side alone, fast: endpoint-only updates (which never end a translation) do
    not accumulate memo entries nor keep old slices; a full translation afterwards is unchanged."""
    cache = Cache()
    objects = [*static_objects(), endpoint_slice("app", endpoints(0), port=PORT)]
    cache.load(Event(EventType.ADDED, o["kind"], o) for o in objects)
    del objects  # only the cache holds the first slice now
    translator = Translator(Settings(fallback_certificate=self_signed()))
    config = translator.full(cache.snapshot())
    cache.take_changes()
    entries, slices = len(translator.memo), live_slices()  # other tests' modules may hold slices too
    for i in range(1, 301):
        cache.apply(Event(EventType.MODIFIED, "EndpointSlice", endpoint_slice("app", endpoints(i), port=PORT)))
        changes = cache.take_changes()
        assert not changes.full
        config = translator.endpoints(config, cache.snapshot(), services=set(changes.services))
        assert len(translator.memo) <= entries + 1
    assert [sorted(e.address for e in b.endpoints) for b in config.backends] == [sorted(endpoints(300))]
    assert live_slices() <= slices, "the cache's slice, and none of the 300 before it"
    assert translator.full(cache.snapshot()) == config
