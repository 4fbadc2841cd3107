"""Leader election on a Lease and the Ingress status writer, against the fake API: every replica has
its own client, as separate processes would."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ingressctl import apimode
from ingressctl.sources import kubeflags
from ingressctl.writeback.events import EventRecorder
from ingressctl.writeback.leader import LeaderElector, LeaseSettings
from ingressctl.writeback.status import StatusPublisher, parse_addresses, service_addresses
from tests.fakeapi import FakeApi
from tests.fakeapi.helpers import (
    FAST,
    Collector,
    api_client,
    configuration,
    ingress,
    ingress_class,
    problem,
    service,
)
from tests.timing import Lag

LB = [{"ip": "203.0.113.10"}, {"hostname": "lb.example.com"}]
LB_STATUS = [{"hostname": "lb.example.com"}, {"ip": "203.0.113.10"}]
LEASE = ["--lease-duration", "2", "--lease-renew-deadline", "1.5", "--lease-retry-period", "0.2"]


@pytest.fixture
async def api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeApi]:
    monkeypatch.setenv("POD_NAMESPACE", "ingressctl")
    async with FakeApi.running(bookmark_interval=0.5) as fake:
        fake.create(ingress_class())
        fake.create(service("lb", "ingressctl", lb=LB))
        fake.create(ingress("ours", "default"))
        fake.create(ingress("theirs", "default", class_name="other"))
        yield fake


def lb_status(api: FakeApi, name: str = "ours") -> Any:
    return (api.get("Ingress", "default", name).get("status") or {}).get("loadBalancer", {}).get("ingress")


def status_puts(api: FakeApi, name: str = "ours") -> int:
    return api.count(method="PUT", path_contains=f"/ingresses/{name}/status")


async def eventually(predicate: Any, timeout: float = 5.0) -> float:
    """Waits until predicate() is true; returns how long it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"not true within {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


# ---------------------------------------------------------------------------------------------
# Leader election


@contextlib.asynccontextmanager
async def elector(api: FakeApi, tmp_path: Path, name: str, *, release: bool) -> AsyncIterator[LeaderElector]:
    settings = LeaseSettings(
        name="ingressctl-leader",
        namespace="ingressctl",
        identity=name,
        lease_duration=2.0,
        renew_deadline=1.5,
        retry_period=0.2,
        release_on_cancel=release,
    )
    (tmp_path / name).mkdir()
    async with api_client(api, tmp_path / name) as kube_client:
        candidate = LeaderElector(kube_client, settings)
        task = asyncio.create_task(candidate.run())
        try:
            yield candidate
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_takeover_after_crash(api: FakeApi, tmp_path: Path, lag: Lag) -> None:
    stacks = {n: contextlib.AsyncExitStack() for n in "ab"}
    try:
        electors = {n: await stacks[n].enter_async_context(elector(api, tmp_path, n, release=False)) for n in "ab"}
        await eventually(lambda: any(e.is_leader for e in electors.values()))
        for _ in range(40):  # 2 s, longer than a lease: never two leaders, never none
            assert sum(e.is_leader for e in electors.values()) == 1
            await asyncio.sleep(0.05)
        leader = next(n for n, e in electors.items() if e.is_leader)
        other = "b" if leader == "a" else "a"
        lease = api.get("Lease", "ingressctl", "ingressctl-leader")["spec"]
        assert lease["holderIdentity"] == leader and lease["leaseDurationSeconds"] == 2
        await stacks[leader].aclose()  # crash: renewals stop, the Lease is not released
        assert not electors[leader].is_leader
        took = await eventually(lambda: electors[other].is_leader, timeout=4)
        # Not before the lease could have expired, and within its duration plus one retry.
        assert took >= 1.5, took
        lag.within(took, 2.0 + 0.2 + 1.0, "takeover after the leader crashed")
        lease = api.get("Lease", "ingressctl", "ingressctl-leader")["spec"]
        assert lease["holderIdentity"] == other and lease["leaseTransitions"] == 1
    finally:
        for stack in stacks.values():
            await stack.aclose()


async def test_release_on_shutdown_hands_over_at_once(api: FakeApi, tmp_path: Path, lag: Lag) -> None:
    async with contextlib.AsyncExitStack() as stack_b:
        a_stack = contextlib.AsyncExitStack()
        a = await a_stack.enter_async_context(elector(api, tmp_path, "a", release=True))
        await eventually(lambda: a.is_leader)
        b = await stack_b.enter_async_context(elector(api, tmp_path, "b", release=True))
        await asyncio.sleep(0.5)
        assert a.is_leader and not b.is_leader
        await a_stack.aclose()  # a shuts down and releases the Lease: b does not wait for it to expire
        took = await eventually(lambda: b.is_leader, timeout=3)
        lag.within(took, 0.2 + 0.6, "takeover after a release (the retry period is 0.2 s)")


async def test_leader_stops_leading_when_it_cannot_renew(api: FakeApi, tmp_path: Path, lag: Lag) -> None:
    changes: list[bool] = []
    async with elector(api, tmp_path, "a", release=False) as a:
        a.on_change(changes.append)
        await eventually(lambda: a.is_leader)
        api.fail(500, path_contains="/leases")
        failed_at = time.monotonic()
        took = await eventually(lambda: not a.is_leader, timeout=3)
        # It must step down before its 2 s lease could expire and another replica lead.
        lag.within(max(took, time.monotonic() - failed_at), 1.5 + 0.4, "stepping down after failed renewals")
        await eventually(lambda: changes == [True, False], timeout=1)
        api.clear_failures()
        await eventually(lambda: a.is_leader, timeout=3)


# ---------------------------------------------------------------------------------------------
# Status, through the real wiring (apimode.build) of two replicas


@dataclass
class Replica:
    events: Collector
    status: StatusPublisher | None
    recorder: EventRecorder

    async def publish(self, *ingresses: str) -> None:
        config = configuration(ingresses=[("default", name) for name in ingresses])
        if self.status is not None:
            await self.status.publish(config)
        await self.recorder.publish(config)


@contextlib.asynccontextmanager
async def replica(api: FakeApi, tmp_path: Path, name: str, *flags: str) -> AsyncIterator[Replica]:
    parser = argparse.ArgumentParser()
    kubeflags.add_arguments(parser)
    path = api.write_kubeconfig(tmp_path / f"kubeconfig-{name}")
    args = parser.parse_args(["--kubeconfig", str(path), *LEASE, *flags])
    mode = await apimode.build(args, timing=FAST, identity=name)
    status = next((p for p in mode.publishers if isinstance(p, StatusPublisher)), None)
    recorder = next(p for p in mode.publishers if isinstance(p, EventRecorder))
    async with mode.running(), Collector(mode.source) as events:
        await events.until(events.synced.is_set)
        yield Replica(events, status, recorder)


async def test_only_the_leader_writes_only_our_ingresses_and_skips_no_ops(api: FakeApi, tmp_path: Path) -> None:
    stacks = {n: contextlib.AsyncExitStack() for n in ("r1", "r2")}
    try:
        replicas = {
            n: await stacks[n].enter_async_context(replica(api, tmp_path, n, "--publish-service", "ingressctl/lb"))
            for n in stacks
        }
        for r in replicas.values():
            await r.publish("ours")
        await eventually(lambda: lb_status(api) == LB_STATUS)
        await asyncio.sleep(0.5)
        assert status_puts(api) == 1
        writes = {n: r.status.writes for n, r in replicas.items() if r.status}
        assert sorted(writes.values()) == [0, 1]  # exactly one replica wrote
        leader = next(n for n, w in writes.items() if w)
        assert api.get("Lease", "ingressctl", "ingressctl-leader")["spec"]["holderIdentity"] == leader

        # Nothing changes: no writes, however often a sync publishes, and whatever else changes.
        for _ in range(3):
            for r in replicas.values():
                await r.publish("ours")
        api.update(dict(ingress("ours", "default", host="other.example.com")))
        await asyncio.sleep(0.5)
        assert status_puts(api) == 1

        # The leader goes away; the other replica takes over and follows the load balancer.
        await stacks[leader].aclose()
        follower = next(n for n in replicas if n != leader)
        lb = api.get("Service", "ingressctl", "lb")
        lb["status"]["loadBalancer"]["ingress"] = [{"ip": "198.51.100.7"}]
        api.update_status(lb)
        await eventually(lambda: lb_status(api) == [{"ip": "198.51.100.7"}], timeout=3)
        assert replicas[follower].status is not None and replicas[follower].status.writes == 1
        # The Ingress of another class was never touched.
        assert status_puts(api, "theirs") == 0 and "status" not in api.get("Ingress", "default", "theirs")
        assert all("/theirs" not in r.path for r in api.requests if r.method != "GET")
    finally:
        for stack in stacks.values():
            await stack.aclose()


async def test_conflicts_are_retried(api: FakeApi, tmp_path: Path) -> None:
    async with replica(api, tmp_path, "r1", "--publish-service", "ingressctl/lb") as r:
        api.fail(409, method="PUT", path_contains="/ingresses/ours/status", times=2)
        await r.publish("ours")
        await eventually(lambda: lb_status(api) == LB_STATUS)
        assert status_puts(api) == 3


async def test_real_conflict_from_a_concurrent_writer(api: FakeApi, tmp_path: Path) -> None:
    async with replica(api, tmp_path, "r1", "--publish-status-address", "10.0.0.9, lb.example.org") as r:
        api.stall()  # our watch falls behind...
        api.update(ingress("ours", "default", host="changed.example.com"))  # ...a newer version exists
        await r.publish("ours")
        await asyncio.sleep(0.3)
        assert status_puts(api) >= 1 and lb_status(api) is None  # stale resourceVersion: 409
        api.stall(False)
        await eventually(lambda: lb_status(api) == [{"ip": "10.0.0.9"}, {"hostname": "lb.example.org"}])
        assert api.get("Ingress", "default", "ours")["spec"]["rules"][0]["host"] == "changed.example.com"


async def test_no_writes_once_the_lease_is_lost(api: FakeApi, tmp_path: Path) -> None:
    async with replica(api, tmp_path, "r1", "--publish-service", "ingressctl/lb") as r:
        await r.publish("ours")
        await eventually(lambda: lb_status(api) == LB_STATUS)
        api.fail(500, path_contains="/leases")
        await asyncio.sleep(1.5 + 0.2)  # past the renew deadline
        lb = api.get("Service", "ingressctl", "lb")
        lb["status"]["loadBalancer"]["ingress"] = [{"ip": "198.51.100.7"}]
        api.update_status(lb)
        await r.publish("ours")
        await asyncio.sleep(1.0)
        assert status_puts(api) == 1 and lb_status(api) == LB_STATUS
        api.clear_failures()
        await eventually(lambda: lb_status(api) == [{"ip": "198.51.100.7"}], timeout=3)


async def test_update_status_false_writes_nothing(api: FakeApi, tmp_path: Path) -> None:
    flags = ("--publish-status-address", "10.0.0.9", "--update-status=false")
    async with replica(api, tmp_path, "r1", *flags) as r:
        assert r.status is None
        await r.publish("ours")
        await asyncio.sleep(0.5)
        assert api.count(method="PUT") == api.count(method="PUT", path_contains="/leases")
        assert lb_status(api) is None


def test_addresses() -> None:
    assert parse_addresses("10.0.0.1, lb.example.com,,2001:db8::1") == (
        {"ip": "10.0.0.1"},
        {"hostname": "lb.example.com"},
        {"ip": "2001:db8::1"},
    )
    svc = service("lb", lb=[{"ip": "10.0.0.2"}, {"ip": "10.0.0.1", "ipMode": "VIP"}, {"hostname": "x.example"}])
    svc["spec"]["externalIPs"] = ["10.0.0.1", "192.0.2.1"]
    assert service_addresses(svc) == (
        {"hostname": "x.example"},
        {"ip": "10.0.0.1"},
        {"ip": "10.0.0.2"},
        {"ip": "192.0.2.1"},
    )


async def test_only_the_leader_records_events(api: FakeApi, tmp_path: Path) -> None:
    bad = problem("default", "ours", "spec.rules[0].host", "invalid host")
    async with contextlib.AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(replica(api, tmp_path, n)) for n in ("r1", "r2")]
        await eventually(lambda: api.get("Lease", "ingressctl", "ingressctl-leader")["spec"]["holderIdentity"] != "")
        for _ in range(3):
            for r in replicas:
                await r.recorder.publish(configuration(ingresses=[("default", "ours")], problems=[bad]))
        await eventually(lambda: len(api.list("Event", "default")) == 1)
        await asyncio.sleep(0.5)
        assert len(api.list("Event", "default")) == 1
        assert sorted(r.recorder.created for r in replicas) == [0, 1]


# ---------------------------------------------------------------------------------------------
# Faults in the middle of leading: a 409 on the Lease, the lease lost during a status write


async def test_a_409_on_renewal_ends_leadership_at_once_and_never_makes_two_leaders(
    api: FakeApi, tmp_path: Path
) -> None:
    changes: list[bool] = []
    async with elector(api, tmp_path, "a", release=False) as a, elector(api, tmp_path, "b", release=False) as b:
        await eventually(lambda: a.is_leader or b.is_leader)
        leader, other = (a, b) if a.is_leader else (b, a)
        leader.on_change(changes.append)
        # Another writer updated the Lease between our read and our write: the API answers 409.
        api.fail(409, method="PUT", path_contains="/leases/ingressctl-leader", times=1)
        took = await eventually(lambda: not leader.is_leader, timeout=3)
        assert took < 1.5, f"stepped down after {took:.2f} s: it waited for the renew deadline"
        assert changes[:2] == [True, False] or changes[:1] == [False], changes
        # Its next round reads the Lease: still its own and live, so it takes it back; the other
        # candidate, seeing a live lease, never leads meanwhile.
        for _ in range(30):
            assert not other.is_leader
            if leader.is_leader:
                break
            await asyncio.sleep(0.05)
        await eventually(lambda: leader.is_leader, timeout=3)
        assert not other.is_leader


async def test_losing_the_create_race_is_not_leading(api: FakeApi, tmp_path: Path) -> None:
    # Two candidates found no Lease; the other one's create won: ours answers 409.
    api.fail(409, method="POST", path_contains="/leases", times=1)
    async with elector(api, tmp_path, "a", release=False) as a:
        await asyncio.sleep(0.1)
        assert not a.is_leader
        assert api.count(method="POST", path_contains="/leases") >= 1
        await eventually(lambda: a.is_leader, timeout=3)  # the next round creates it
        assert api.get("Lease", "ingressctl", "ingressctl-leader")["spec"]["holderIdentity"] == "a"


async def test_losing_the_lease_during_a_status_write_stops_writing(
    api: FakeApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    async with replica(api, tmp_path, "r1", "--publish-service", "ingressctl/lb") as r:
        await eventually(lambda: r.status is not None and api.count(method="PUT", path_contains="/leases") >= 1)
        # The status write hangs in a slow API server; meanwhile the Lease cannot be renewed.
        api.slow(5.0, method="PUT", path_contains="/ingresses/ours/status")
        await r.publish("ours")
        await eventually(lambda: status_puts(api) == 1, timeout=3)
        api.fail(500, path_contains="/leases")
        await eventually(lambda: "lost the lease: stopped writing Ingress status" in caplog.text, timeout=4)
        # Not leading: no other write is attempted, whatever changes.
        lb = api.get("Service", "ingressctl", "lb")
        lb["status"]["loadBalancer"]["ingress"] = [{"ip": "198.51.100.7"}]
        api.update_status(lb)
        await r.publish("ours")
        await asyncio.sleep(1.0)
        assert status_puts(api) == 1
        # The lease comes back and the API is fast again: the publisher (still running) writes the
        # current addresses.
        api.clear_failures()
        await eventually(lambda: lb_status(api) == [{"ip": "198.51.100.7"}], timeout=5)
