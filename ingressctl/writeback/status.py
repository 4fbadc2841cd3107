"""Ingress status: the leader writes status.loadBalancer.ingress of the Ingresses we serve.

The addresses come from --publish-service (that Service's status.loadBalancer.ingress, IPs and
hostnames, plus its spec.externalIPs), watched through its own small informer, or from
--publish-status-address. Only the Ingresses of the latest Configuration's `.ingresses` are ever
written (never another class's), only while `elector.is_leader`, and only when the status differs:
the current object comes from the source's watch (IngressView), so there is no GET. A write is a PUT
of the status subresource carrying the resourceVersion we saw; a 409 Conflict is retried (the watch
brings the newer version). Losing the lease cancels a write in flight.

API calls: update ingresses/status; list/watch services (field selector metadata.name) in the
publish Service's namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from ingressctl.config import Configuration, ObjectRef
from ingressctl.kubeapi.client import ApiError, read_json
from ingressctl.kubeapi.informer import DEFAULT_TIMING, Collection, Informer, Timing
from ingressctl.model import INGRESS, SERVICE, Event, EventType, Key, Obj, object_key
from ingressctl.writeback.leader import LeaderElector

log = logging.getLogger(__name__)

Address = dict[str, str]  # {"ip": ...} or {"hostname": ...}


def parse_addresses(value: str) -> tuple[Address, ...]:
    """--publish-status-address: a comma list of IPs and hostnames."""
    out: list[Address] = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        try:
            out.append({"ip": str(ipaddress.ip_address(item))})
        except ValueError:
            out.append({"hostname": item})
    return tuple(out)


def service_addresses(service: Obj) -> tuple[Address, ...]:
    """A Service's externally reachable addresses: its load balancer's IPs and hostnames, and its
    external IPs; sorted and without duplicates."""
    found: set[tuple[str, str]] = set()
    for lb in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if lb.get("ip"):
            found.add(("ip", str(lb["ip"])))
        if lb.get("hostname"):
            found.add(("hostname", str(lb["hostname"])))
    for ip in (service.get("spec") or {}).get("externalIPs") or []:
        found.add(("ip", str(ip)))
    return tuple({k: v} for k, v in sorted(found))


class IngressView:
    """The latest Ingress objects the source saw (with status and resourceVersion), fed by
    KubeSource's observer hook; tells listeners when anything changed."""

    def __init__(self) -> None:
        self._objects: dict[Key, Obj] = {}
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def observe(self, event: Event) -> None:
        if event.kind != INGRESS:
            return
        if event.type is EventType.REPLACED:
            self._objects = {object_key(o): o for o in event.objects}
        elif event.obj is not None and event.type is EventType.DELETED:
            self._objects.pop(object_key(event.obj), None)
        elif event.obj is not None:
            self._objects[object_key(event.obj)] = event.obj
        for listener in self._listeners:
            listener()

    def get(self, namespace: str, name: str) -> Obj | None:
        return self._objects.get((namespace, name))


def _current(obj: Obj) -> list[Any]:
    return list(((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class StatusPublisher:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        view: IngressView,
        elector: LeaderElector,
        publish_service: tuple[str, str] | None = None,
        addresses: Sequence[Address] = (),
        timing: Timing = DEFAULT_TIMING,
        write_timeout: float = 10.0,
    ) -> None:
        self._net = client.NetworkingV1Api(api)
        self._core = client.CoreV1Api(api)
        self._view = view
        self._elector = elector
        self._publish_service = publish_service
        self._static = tuple(addresses)
        self._timing = timing
        self._write_timeout = write_timeout
        self._service: Obj | None = None
        self._config: Configuration | None = None
        self._wake = asyncio.Event()
        self._inflight: asyncio.Task[float | None] | None = None
        # Ingress -> the resourceVersion our last write replaced: the view is stale while it shows it.
        self._superseded: dict[Key, str] = {}
        self._failures: dict[Key, int] = {}
        self.writes = 0  # successful status writes, for tests and logs
        view.on_change(self._wake.set)
        elector.on_change(self._leadership)

    async def publish(self, config: Configuration) -> None:
        self._config = config
        self._wake.set()

    def _leadership(self, leader: bool) -> None:
        if not leader and self._inflight is not None:
            self._inflight.cancel()  # stop writing at once
        self._wake.set()

    def addresses(self) -> tuple[Address, ...] | None:
        """What status should say; None while it is not known (publish Service not seen yet)."""
        if self._publish_service is None:
            return self._static or None
        return None if self._service is None else service_addresses(self._service)

    async def _watch_service(self) -> None:
        assert self._publish_service is not None
        ns, name = self._publish_service
        collection = Collection(
            SERVICE,
            "v1",
            functools.partial(self._core.list_namespaced_service, ns),
            scope=ns,
            field_selector=f"metadata.name={name}",
        )
        async with contextlib.aclosing(Informer(collection, timing=self._timing).events()) as events:
            async for event in events:
                if event.type is EventType.REPLACED:
                    self._service = event.objects[0] if event.objects else None
                elif event.type is EventType.DELETED:
                    self._service = None
                else:
                    self._service = event.obj
                self._wake.set()

    async def run(self) -> None:
        watcher = asyncio.create_task(self._watch_service()) if self._publish_service else None
        retry: asyncio.TimerHandle | None = None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if retry is not None:
                    retry.cancel()
                    retry = None
                if not self._elector.is_leader:
                    continue
                self._inflight = asyncio.create_task(self._reconcile())
                try:
                    retry_in = await self._inflight
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # we were cancelled ourselves, not just the write
                    log.info("lost the lease: stopped writing Ingress status")
                    continue
                finally:
                    self._inflight = None
                if retry_in is not None:
                    retry = asyncio.get_running_loop().call_later(retry_in, self._wake.set)
        finally:
            if retry is not None:
                retry.cancel()
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    async def _reconcile(self) -> float | None:
        """Writes every status that differs; returns when to try again (conflicts, errors) or None."""
        config, desired = self._config, self.addresses()
        if config is None or desired is None:
            return None
        wanted = [dict(a) for a in desired]
        retry_in: float | None = None
        refs = sorted({r for r in config.ingresses if r.kind == INGRESS}, key=lambda r: (r.namespace, r.name))
        keys = {(r.namespace, r.name) for r in refs}
        self._superseded = {k: v for k, v in self._superseded.items() if k in keys}
        self._failures = {k: v for k, v in self._failures.items() if k in keys}
        for ref in refs:
            key = (ref.namespace, ref.name)
            obj = self._view.get(*key)
            if obj is None or _current(obj) == wanted or self._superseded.get(key) == _rv(obj):
                continue
            if not self._elector.is_leader:
                return None
            delay = await self._write(ref, obj, wanted)
            if delay is not None:
                retry_in = delay if retry_in is None else min(retry_in, delay)
        return retry_in

    async def _write(self, ref: ObjectRef, obj: Obj, wanted: list[Any]) -> float | None:
        key = (ref.namespace, ref.name)
        body: Any = copy.deepcopy(dict(obj))
        status = dict(body.get("status") or {})
        status["loadBalancer"] = {"ingress": wanted} if wanted else {}
        body["status"] = status
        try:
            written = await read_json(
                await self._net.replace_namespaced_ingress_status(
                    ref.name,
                    ref.namespace,
                    body,
                    _preload_content=False,
                    _request_timeout=aiohttp.ClientTimeout(total=self._write_timeout),
                )
            )
        except (ApiError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
            if isinstance(err, ApiError) and err.code == 404:
                return None  # deleted meanwhile; the view will drop it
            n = self._failures[key] = self._failures.get(key, 0) + 1
            if isinstance(err, ApiError) and err.code == 409:
                # Changed since our watch saw it: the watch brings the new version within moments;
                # try again shortly in any case.
                log.info("%s: status conflict (%d), retrying", ref, n)
                return min(5.0, 0.05 * 2.0 ** min(n, 7))
            log.warning("%s: writing status: %s", ref, err)
            return float(self._timing.backoff(n))
        self.writes += 1
        self._failures.pop(key, None)
        if _rv(written) != _rv(obj):
            self._superseded[key] = _rv(obj)
        log.info("%s: status.loadBalancer.ingress = %s", ref, wanted)
        return None
