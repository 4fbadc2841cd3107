"""Leader election on a coordination.k8s.io/v1 Lease, so only one replica writes to the API.

The algorithm is client-go's: a candidate takes the Lease when it does not exist, has no holder, or
its holder has not renewed it for leaseDurationSeconds as measured on *our* clock from when we last
saw the record change (so clock skew between replicas does not matter); the holder renews every
retry_period. Writes are optimistic (PUT with the resourceVersion read), so two candidates cannot both
win. A leader that has not renewed successfully for renew_deadline (< lease duration) stops being
leader on its own, before anyone else may take over; `is_leader` is that check, and writers ask it
before each write. On cancellation a leader releases the Lease (empty holder) so another replica
takes over at once.

API calls: get, create, update on leases in one namespace.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from ingressctl.kubeapi.client import ApiError, read_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseSettings:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True


def _micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api: client.ApiClient, settings: LeaseSettings) -> None:
        self.settings = settings
        self._leases = client.CoordinationV1Api(api)
        self._renewed_at: float | None = None  # monotonic start of our last successful acquire/renew
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._listeners: list[Callable[[bool], None]] = []
        self._was_leader = False
        self.transitions = 0  # times we became leader, for tests and logs

    @property
    def is_leader(self) -> bool:
        return self._renewed_at is not None and time.monotonic() < self._renewed_at + self.settings.renew_deadline

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Calls listener(is_leader) whenever leadership is gained or lost."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        leader = self.is_leader
        if leader != self._was_leader:
            self._was_leader = leader
            if leader:
                self.transitions += 1
            log.info(
                "%s %s the leader lease %s",
                self.settings.identity,
                "holds" if leader else "lost",
                self.settings.name,
            )
            for listener in self._listeners:
                listener(leader)

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=max(1.0, self.settings.renew_deadline / 2))

    async def try_acquire_or_renew(self) -> bool:
        s = self.settings
        attempt_start = time.monotonic()
        now = _micro_time()
        duration = max(1, round(s.lease_duration))
        try:
            lease = await read_json(
                await self._leases.read_namespaced_lease(
                    s.name, s.namespace, _preload_content=False, _request_timeout=self._timeout()
                )
            )
        except ApiError as err:
            if err.code != 404:
                raise
            body: Any = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": {
                    "holderIdentity": s.identity,
                    "leaseDurationSeconds": duration,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            try:
                await read_json(
                    await self._leases.create_namespaced_lease(
                        s.namespace, body, _preload_content=False, _request_timeout=self._timeout()
                    )
                )
            except ApiError as create_err:
                if create_err.code == 409:  # someone else created it first
                    return False
                raise
            self._renewed_at = attempt_start
            return True

        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("acquireTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        held_for = float(spec.get("leaseDurationSeconds") or s.lease_duration)
        if holder and holder != s.identity and self._observed_at + held_for > time.monotonic():
            self._renewed_at = None
            return False  # someone else holds a live lease
        if holder != s.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        spec.update(holderIdentity=s.identity, leaseDurationSeconds=duration, renewTime=now)
        lease["spec"] = spec
        try:
            await read_json(
                await self._leases.replace_namespaced_lease(
                    s.name, s.namespace, lease, _preload_content=False, _request_timeout=self._timeout()
                )
            )
        except ApiError as err:
            if err.code == 409:  # another candidate wrote first: whatever we held, we do not now
                self._renewed_at = None
                return False
            raise
        self._renewed_at = attempt_start
        return True

    async def run(self) -> None:
        """Campaigns and renews until cancelled; releases the lease on the way out if we hold it."""
        s = self.settings
        errors = 0
        try:
            while True:
                try:
                    await self.try_acquire_or_renew()
                    errors = 0
                except (ApiError, aiohttp.ClientError, TimeoutError, ValueError, OSError) as err:
                    errors += 1  # say it once, then now and then
                    level = logging.WARNING if errors == 1 or errors % 30 == 0 else logging.DEBUG
                    log.log(level, "leader election (lease %s/%s): %s", s.namespace, s.name, err)
                self._notify()
                delay = s.retry_period
                if self._renewed_at is not None and self.is_leader:
                    # Wake up when leadership would lapse, to tell the listeners at once.
                    delay = min(delay, max(0.0, self._renewed_at + s.renew_deadline - time.monotonic()))
                await asyncio.sleep(delay)
                self._notify()
        finally:
            was_leader = self.is_leader
            self._renewed_at = None
            self._notify()
            if was_leader and s.release_on_cancel:
                await asyncio.shield(self._release())

    async def _release(self) -> None:
        s = self.settings
        try:
            lease = await read_json(
                await self._leases.read_namespaced_lease(
                    s.name, s.namespace, _preload_content=False, _request_timeout=self._timeout()
                )
            )
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != s.identity:
                return
            lease["spec"] = dict(spec, holderIdentity=None, leaseDurationSeconds=1, renewTime=_micro_time())
            await read_json(
                await self._leases.replace_namespaced_lease(
                    s.name, s.namespace, lease, _preload_content=False, _request_timeout=self._timeout()
                )
            )
            log.info("%s released the leader lease %s", s.identity, s.name)
        except (ApiError, aiohttp.ClientError, TimeoutError, ValueError, OSError) as err:
            log.warning("could not release the leader lease %s/%s: %s", s.namespace, s.name, err)
