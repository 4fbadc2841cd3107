"""Backends go to the Lua store as deltas, and as a full replace whenever the controller cannot be
sure of the state there: through the real Applier, real nginx and the real Lua code.

Each worker's own view is read through the API's `GET /configuration/backends?worker` (answered
by whichever worker accepts the connection, after its sync), until every worker has answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ingressctl.cache import Cache
from ingressctl.certs import self_signed
from ingressctl.config import Backend, Configuration, Endpoint, GlobalOptions
from ingressctl.dataplane.apply import Applier
from ingressctl.dataplane.luaapi import LuaApi
from ingressctl.dataplane.nginx import Nginx
from ingressctl.dataplane.paths import Paths, lua_dir
from ingressctl.dataplane.render import Renderer
from ingressctl.metrics import Metrics
from ingressctl.model import Event, EventType
from ingressctl.translate import Settings, Translator
from tests.harness import (
    backend,
    endpoint_slice,
    free_port,
    ingress,
    ingress_class,
    pods,
    request,
    rule,
    service,
    unix_request,
    wait_for,
)

PORT = 18951
HOST = "delta.example.com"
APP = "default/app:80"


def posts(applier: Applier) -> tuple[int, int]:
    """Full replaces and deltas sent to the Lua API so far."""
    return applier.lua_backends.full_posts, applier.lua_backends.delta_posts


def _config(http_port: int) -> Configuration:
    cache = Cache()
    for obj in [
        ingress_class(),
        service("app", target=PORT),
        endpoint_slice("app", ["127.0.0.71"], port=PORT),
        ingress("app", rules=[rule(HOST, ("/", "Prefix", backend("app")))]),
    ]:
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    settings = Settings(
        fallback_certificate=self_signed(),
        options=GlobalOptions(http_port=http_port, https_port=free_port(), listen_address="127.0.0.1"),
    )
    return Translator(settings).full(cache.snapshot())


def _with(config: Configuration, *backends: Backend) -> Configuration:
    return dataclasses.replace(config, backends=tuple(sorted(backends, key=lambda b: b.name)))


def _app(*addresses: str) -> Backend:
    return Backend(APP, tuple(Endpoint(a, PORT) for a in addresses))


def _other(name: str, *addresses: str) -> Backend:
    return Backend(name, tuple(Endpoint(a, 80) for a in addresses))


@dataclasses.dataclass
class Running:
    applier: Applier
    config: Configuration
    http_port: int

    @property
    def socket(self) -> Path:
        return Path(self.applier.nginx.paths.socket)

    def served(self, n: int = 6) -> set[str]:
        return {str(request(self.http_port, host=HOST, path="/").pod) for _ in range(n)}

    def store(self) -> dict[str, Any]:
        result: dict[str, Any] = unix_request(self.socket, "GET", "/configuration/backends").json()
        return result

    def views(self) -> dict[int, dict[str, Any]]:
        return worker_views(self.socket, self.applier.nginx.worker_pids())


def worker_views(socket: Path, pids: list[int]) -> dict[int, dict[str, Any]]:
    """Each worker's view (pid -> {version, backends: name -> ["address:port"]})."""
    views: dict[int, dict[str, Any]] = {}
    for _ in range(1000):
        view = unix_request(socket, "GET", "/configuration/backends?worker").json()
        views[view["pid"]] = view
        if set(pids) <= set(views):
            return {pid: views[pid] for pid in pids}
    raise AssertionError(f"workers {sorted(set(pids) - set(views))} never answered")


def _expected(store: dict[str, Any]) -> dict[str, list[str]]:
    return {b["name"]: [f"{e['address']}:{e['port']}" for e in b["endpoints"]] for b in store["document"]["backends"]}


def assert_workers_follow_the_store(running: Running) -> None:
    store = running.store()
    for pid, view in running.views().items():
        assert view["version"] == store["version"], pid
        assert (view["backends"] or {}) == _expected(store), pid


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    http_port = free_port()
    paths = Paths(work=str(tmp_path / "work"), lua=str(lua_dir()))
    nginx = Nginx(binary="nginx", paths=paths)
    applier = Applier(
        nginx=nginx, renderer=Renderer(paths=paths, user=nginx.user), lua=LuaApi(paths.socket), metrics=Metrics()
    )
    config = _config(http_port)
    try:
        await applier.apply(config)
        yield Running(applier, config, http_port)
    finally:
        await nginx.stop()
        await applier.lua.close()


async def test_endpoint_changes_go_as_deltas(running: Running) -> None:
    applier = running.applier
    assert posts(applier) == (1, 0), "the start sends everything"
    with pods(["127.0.0.71", "127.0.0.72", "127.0.0.73"], PORT):
        assert running.served() == {"127.0.0.71"}
        version = running.store()["version"]

        # Modify: the app's endpoints change.
        await applier.apply(_with(running.config, _app("127.0.0.72", "127.0.0.73")))
        assert running.served() == {"127.0.0.72", "127.0.0.73"}
        # Add two backends, then remove one (and modify the app) in one delta.
        await applier.apply(
            _with(running.config, _app("127.0.0.72"), _other("ns/x:80", "10.0.0.1"), _other("ns/y:80", "10.0.0.2"))
        )
        assert running.served() == {"127.0.0.72"}
        await applier.apply(_with(running.config, _app("127.0.0.73"), _other("ns/y:80", "10.0.0.3", "10.0.0.4")))
        assert running.served() == {"127.0.0.73"}
        assert posts(applier) == (1, 3)
        store = running.store()
        assert store["version"] == version + 3, "one version per delta"
        assert _expected(store) == {
            APP: [f"127.0.0.73:{PORT}"],
            "ns/y:80": ["10.0.0.3:80", "10.0.0.4:80"],
        }
        assert_workers_follow_the_store(running)  # ns/x:80 is gone from every worker too

        # As many backends as before, one of them another: a removal and an addition.
        await applier.apply(_with(running.config, _app("127.0.0.73"), _other("ns/z:80", "10.0.0.5")))
        assert _expected(running.store()) == {APP: [f"127.0.0.73:{PORT}"], "ns/z:80": ["10.0.0.5:80"]}
        assert_workers_follow_the_store(running)

        # Nothing changed (equal backends, new objects): nothing is sent, the version stays.
        await applier.apply(_with(running.config, _app("127.0.0.73"), _other("ns/z:80", "10.0.0.5")))
        assert posts(applier) == (1, 4)
        assert running.store()["version"] == version + 4


async def test_a_failed_delta_falls_back_to_a_full_replace(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    applier = running.applier
    with pods(["127.0.0.74", "127.0.0.75"], PORT):
        # Something replaced the store behind the controller's back: its base version is stale.
        doc = {"backends": [{"name": "ns/stray:80", "endpoints": [{"address": "10.0.0.9", "port": 80}]}]}
        resp = unix_request(running.socket, "POST", "/configuration/backends", json.dumps(doc).encode())
        assert resp.status == 201
        await applier.apply(_with(running.config, _app("127.0.0.74")))
        assert "backends delta failed" in caplog.text and "409" in caplog.text
        assert posts(applier) == (2, 0)
        assert _expected(running.store()) == {APP: [f"127.0.0.74:{PORT}"]}, "the stray backend is gone"
        assert running.served() == {"127.0.0.74"}
        # And deltas work again from there.
        await applier.apply(_with(running.config, _app("127.0.0.75")))
        assert posts(applier) == (2, 1)
        assert running.served() == {"127.0.0.75"}
        assert_workers_follow_the_store(running)


async def test_invalid_delta_is_refused_and_the_store_kept(running: Running) -> None:
    store = running.store()
    body = {
        "epoch": store["epoch"],
        "base": store["version"],
        "upsert": [{"name": APP, "endpoints": [{"address": "127.0.0.1; drop", "port": PORT}]}],
    }
    resp = unix_request(running.socket, "PATCH", "/configuration/backends", json.dumps(body).encode())
    assert resp.status == 400 and "upsert[0].endpoints[0].address" in resp.json()["error"]
    stale = {**body, "base": store["version"] - 1, "upsert": []}
    resp = unix_request(running.socket, "PATCH", "/configuration/backends", json.dumps(stale).encode())
    assert resp.status == 409 and resp.json()["version"] == store["version"]
    assert running.store() == store
    assert_workers_follow_the_store(running)


async def test_sighup_keeps_the_store_and_deltas_go_on(running: Running) -> None:
    applier = running.applier
    with pods(["127.0.0.76", "127.0.0.77"], PORT):
        await applier.apply(_with(running.config, _app("127.0.0.76"), _other("ns/z:80", "10.0.0.5")))
        before = running.store()
        workers = applier.nginx.worker_pids()
        applier.nginx.reload()
        wait_for(lambda: not set(applier.nginx.worker_pids()) & set(workers), what="new workers")
        assert running.store() == before, "the shared dict survives a SIGHUP"
        for pid, view in running.views().items():
            assert view["stats"]["start_version"] == before["version"], f"worker {pid} built its view at start"
        assert running.served() == {"127.0.0.76"}, "new workers build their view from the store"
        await applier.apply(_with(running.config, _app("127.0.0.77")))
        assert posts(applier) == (1, 2), "still deltas after the reload"
        assert running.served() == {"127.0.0.77"}
        assert_workers_follow_the_store(running)


async def test_master_restart_sends_everything(running: Running) -> None:
    applier = running.applier
    with pods(["127.0.0.78", "127.0.0.79"], PORT):
        await applier.apply(_with(running.config, _app("127.0.0.78"), _other("ns/w:80", "10.0.0.6")))
        before = running.store()
        await applier.nginx.stop()  # the master is gone, and its shared dict with it
        # The same backends again: only a new master's empty store makes this send anything.
        await applier.apply(_with(running.config, _app("127.0.0.78"), _other("ns/w:80", "10.0.0.6")))
        after = running.store()
        assert after["epoch"] != before["epoch"]
        assert posts(applier) == (2, 1)
        assert _expected(after) == _expected(before)
        assert running.served() == {"127.0.0.78"}
        # A delta built on the old master's store is refused by the new one.
        stale = {"epoch": before["epoch"], "base": after["version"], "upsert": []}
        resp = unix_request(running.socket, "PATCH", "/configuration/backends", json.dumps(stale).encode())
        assert resp.status == 409
        await applier.apply(_with(running.config, _app("127.0.0.79")))
        assert posts(applier) == (2, 2)
        assert running.served() == {"127.0.0.79"}
        assert_workers_follow_the_store(running)


async def test_updates_racing_worker_syncs_and_each_other(running: Running) -> None:
    """A writer sends 150 deltas back to back (many within the same second) while two threads make
    every worker sync, and a rival writer sends full replaces and stale deltas. Writers never
    interleave (409 for a stale base, never a 5xx), and every worker ends at the store's state."""
    sock = running.socket
    rng = random.Random(11)
    stop = threading.Event()
    statuses: list[int] = []

    def churn() -> None:
        store = running.store()
        epoch, version = store["epoch"], store["version"]
        for i in range(150):
            name = f"ns/r{rng.randrange(20)}:80"
            if rng.random() < 0.3:
                body = {"epoch": epoch, "base": version, "remove": [name]}
            else:
                eps = [{"address": f"10.1.{i % 250}.{k + 1}", "port": 80} for k in range(rng.randrange(4))]
                body = {"epoch": epoch, "base": version, "upsert": [{"name": name, "endpoints": eps}]}
            resp = unix_request(sock, "PATCH", "/configuration/backends", json.dumps(body).encode())
            statuses.append(resp.status)
            if resp.status == 409:  # the rival wrote: start again from where the store is
                version = resp.json()["version"]
            else:
                assert resp.status == 201, resp.body
                version = resp.json()["version"]

    def rival() -> None:
        for i in range(20):
            doc = {"backends": [{"name": f"ns/r{k}:80", "endpoints": [{"address": f"10.2.{i}.{k + 1}", "port": 80}]}
                                for k in range(0, 20, 3)]}  # fmt: skip
            resp = unix_request(sock, "POST", "/configuration/backends", json.dumps(doc).encode())
            statuses.append(resp.status)
            assert resp.status == 201, resp.body
            stale = {"epoch": resp.json()["epoch"], "base": resp.json()["version"] - 1, "upsert": []}
            statuses.append(unix_request(sock, "PATCH", "/configuration/backends", json.dumps(stale).encode()).status)
            time.sleep(0.01)

    def readers() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            unix_request(sock, "GET", "/configuration/backends?worker")

    threads = [threading.Thread(target=t) for t in (readers, readers)]
    for t in threads:
        t.start()
    try:
        await asyncio.gather(asyncio.to_thread(churn), asyncio.to_thread(rival))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert statuses and set(statuses) <= {201, 409}, sorted(set(statuses))
    assert statuses.count(201) >= 150
    assert_workers_follow_the_store(running)
