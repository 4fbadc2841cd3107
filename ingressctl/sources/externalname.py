"""ExternalName Services: resolved by the controller, handed to translate as EndpointSlices.

A source wrapper: every event of the inner source passes through; for each Service of type
ExternalName it resolves `spec.externalName` (A and AAAA, through dnspython), honouring the answer's
TTL (clamped to [min_ttl, max_ttl]), and emits an EndpointSlice of its own for that Service. Translate
stays pure (it reads that slice like any other), and a changed answer is an endpoint change: a Lua
update, no reload. Names are checked (DNS-1123); answers inside refused networks (loopback,
link-local, cloud metadata addresses, the cluster's Service range from --service-cidr) are dropped
unless an --externalname-allow-cidr network contains them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.resolver

from ingressctl.model import ENDPOINT_SLICE, SERVICE, Event, EventType, Key, Obj, object_key
from ingressctl.sources.base import Source
from ingressctl.translate import validate
from ingressctl.translate.validate import Invalid

log = logging.getLogger("ingressctl.externalname")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Never a backend by default: loopback, "this network", link-local (169.254.169.254 and the other
# metadata addresses of AWS, GCP, Azure, OpenStack), Alibaba's and AWS's IPv6 metadata addresses.
REFUSED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "0.0.0.0/8",
        "169.254.0.0/16",
        "100.100.100.200/32",
        "::1/128",
        "fe80::/10",
        "fd00:ec2::254/128",
        "::/128",
    )
)
SLICE_SUFFIX = "-externalname-ingressctl"


@dataclass(frozen=True)
class Policy:
    """Which resolved addresses may become endpoints."""

    refused: tuple[Network, ...] = REFUSED  # plus the cluster's Service range (--service-cidr)
    allowed: tuple[Network, ...] = ()  # exceptions (--externalname-allow-cidr), e.g. a test's 127.0.6.0/24

    def permits(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        if any(ip in n for n in self.allowed):
            return True
        return not (any(ip in n for n in self.refused) or ip.is_multicast or ip.is_unspecified)


@dataclass(frozen=True)
class Answer:
    addresses: tuple[str, ...]
    ttl: float  # seconds until the next lookup


Lookup = Callable[[str], Awaitable[Answer]]


def dns_lookup(*, nameserver: str = "", port: int = 53, min_ttl: float = 1, max_ttl: float = 300) -> Lookup:
    """A and AAAA through dnspython (the system's resolv.conf unless `nameserver` is given)."""
    try:
        resolver = dns.asyncresolver.Resolver(configure=not nameserver)
    except dns.resolver.NoResolverConfiguration:
        # No resolv.conf (a bare root filesystem): every lookup fails, and is retried, until the
        # --externalname-dns-server flag names a server; the controller still serves the rest.
        log.warning("no DNS resolver configuration; ExternalName Services will not resolve")
        resolver = dns.asyncresolver.Resolver(configure=False)
    if nameserver:
        resolver.nameservers = [nameserver]
        resolver.port = port
    resolver.lifetime = 5.0

    async def lookup(name: str) -> Answer:
        addresses: list[str] = []
        ttls: list[float] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await resolver.resolve(name + ".", rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            ttls.append(answer.rrset.ttl if answer.rrset is not None else min_ttl)
            addresses += [r.to_text() for r in answer]
        ttl = min(ttls) if ttls else min_ttl
        return Answer(tuple(sorted(set(addresses))), max(min_ttl, min(max_ttl, ttl)))

    return lookup


def endpoint_slice(service: Key, addresses: Iterable[str]) -> Obj:
    """The EndpointSlice translate reads for an ExternalName Service (no ports: the Service port's)."""
    namespace, name = service
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": namespace,
            "name": name + SLICE_SUFFIX,
            "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "ingressctl"},
        },
        "addressType": "IPv4",  # translate takes IPv4 and IPv6 addresses from any slice
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
    }


def external_name(service: Obj) -> str | None:
    spec = service.get("spec")
    if not isinstance(spec, dict) or spec.get("type") != "ExternalName":
        return None
    return str(spec.get("externalName") or "")


@dataclass
class ExternalNameSource:
    """Wraps a source; adds one EndpointSlice per ExternalName Service, kept resolved."""

    inner: Source
    lookup: Lookup
    policy: Policy = field(default_factory=Policy)
    retry: float = 5.0  # seconds after a failed lookup (the last good answer stays)
    _names: dict[Key, str] = field(default_factory=dict)
    _slices: dict[Key, Obj] = field(default_factory=dict)
    _tasks: dict[Key, asyncio.Task[None]] = field(default_factory=dict)

    async def events(self) -> AsyncGenerator[Event, None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(queue))
        pump.add_done_callback(lambda _: queue.put_nowait(None))  # after the pump's last event
        try:
            while (event := await queue.get()) is not None:
                yield event
            pump.result()  # the inner source's error, if it ended with one
        finally:
            pump.cancel()
            for task in self._tasks.values():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _pump(self, queue: asyncio.Queue[Event | None]) -> None:
        async with contextlib.aclosing(self.inner.events()) as events:
            async for event in events:
                if event.kind == ENDPOINT_SLICE and event.type is EventType.REPLACED:
                    # A relist of slices must not wipe ours.
                    event = Event(EventType.REPLACED, ENDPOINT_SLICE, objects=(*event.objects, *self._slices.values()))
                await queue.put(event)
                if event.kind == SERVICE:
                    self._services_changed(event, queue)

    def _services_changed(self, event: Event, queue: asyncio.Queue[Event | None]) -> None:
        if event.type is EventType.REPLACED:
            wanted = {object_key(o): external_name(o) for o in event.objects}
            for key in [k for k in self._names if not wanted.get(k)]:
                self._forget(key, queue)
            for key, name in wanted.items():
                if name is not None:
                    self._watch(key, name, queue)
        elif event.obj is not None:
            key = object_key(event.obj)
            name = None if event.type is EventType.DELETED else external_name(event.obj)
            if name is None:
                self._forget(key, queue)
            else:
                self._watch(key, name, queue)

    def _watch(self, key: Key, name: str, queue: asyncio.Queue[Event | None]) -> None:
        if self._names.get(key) == name and key in self._tasks:
            return
        self._forget(key, queue)
        self._names[key] = name
        try:
            checked = validate.host(name)
            if checked.startswith("*"):
                raise Invalid("a wildcard is not a name to resolve")
        except Invalid as exc:
            log.warning("ExternalName Service %s/%s: externalName %s", *key, exc)  # translate reports it
            return
        self._tasks[key] = asyncio.create_task(self._resolve_loop(key, checked, queue))

    def _forget(self, key: Key, queue: asyncio.Queue[Event | None]) -> None:
        self._names.pop(key, None)
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        old = self._slices.pop(key, None)
        if old is not None:
            queue.put_nowait(Event(EventType.DELETED, ENDPOINT_SLICE, old))

    async def _resolve_loop(self, key: Key, name: str, queue: asyncio.Queue[Event | None]) -> None:
        while True:
            try:
                answer = await self.lookup(name)
            except (dns.exception.DNSException, OSError) as exc:
                log.warning("ExternalName %s (Service %s/%s): lookup failed: %s", name, *key, exc)
                await asyncio.sleep(self.retry)
                continue
            permitted = [a for a in answer.addresses if self.policy.permits(a)]
            refused = sorted(set(answer.addresses) - set(permitted))
            if refused:
                log.warning(
                    "ExternalName %s (Service %s/%s): refused addresses %s (loopback, link-local, metadata or "
                    "the Service range; --externalname-allow-cidr permits them)",
                    name,
                    *key,
                    ", ".join(refused),
                )
            new = endpoint_slice(key, permitted)
            old = self._slices.get(key)
            if old is None or old["endpoints"] != new["endpoints"]:
                self._slices[key] = new
                await queue.put(Event(EventType.ADDED if old is None else EventType.MODIFIED, ENDPOINT_SLICE, new))
                log.info("ExternalName %s (Service %s/%s): %s", name, *key, ", ".join(permitted) or "no address")
            await asyncio.sleep(answer.ttl)
