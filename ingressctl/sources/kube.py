"""The Kubernetes API source: one informer per kind and namespace, merged into one event stream.

It only produces events (see ingressctl.sources.base): the write-back side (leader election, Ingress
status, Events) lives in ingressctl.writeback and is wired next to this source by ingressctl.apimode,
which also owns the API client. The flags live in ingressctl.sources.kubeflags, so that a
manifests-folder run never imports kubernetes_asyncio.

What is watched: one informer (ingressctl.kubeapi.informer) per kind and namespace: Ingress,
IngressClass, Service, EndpointSlice (discovery.k8s.io/v1), Secret (two informers: field selector
type=kubernetes.io/tls, and type=Opaque for basic auth) and, with --configmap, that one ConfigMap (field
selector metadata.name). Only the Secrets that an Ingress (spec.tls[].secretName, proxy-ssl-secret,
auth-secret) or --default-ssl-certificate names are passed on (ingressctl.sources.secrets). Endpoints
are not watched (EndpointSlices are); the source reports them, and the ConfigMap without --configmap,
as empty. With several --watch-namespace values
a relist of one namespace is merged with the others' current objects, so REPLACED always carries the
whole kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

from kubernetes_asyncio import client

from ingressctl.kubeapi.informer import DEFAULT_TIMING, Collection, Informer, Timing
from ingressctl.model import (
    CONFIG_MAP,
    ENDPOINT_SLICE,
    ENDPOINTS,
    INGRESS,
    INGRESS_CLASS,
    SECRET,
    SERVICE,
    Event,
    EventType,
    Key,
    Obj,
    object_key,
)
from ingressctl.sources.secrets import ReferencedSecrets

log = logging.getLogger(__name__)


class KubeSource:
    """Runs one informer per collection and merges their events into one stream (see base.Source).
    Observers see every event before it is yielded (the Ingress view of the status writer). With
    `secrets` (ReferencedSecrets), only referenced Secrets are passed on: the Secret informers start
    once the Ingresses are listed, and are restarted (relist) when an Ingress starts referencing a
    Secret that was dropped."""

    def __init__(
        self,
        collections: Sequence[Collection],
        *,
        timing: Timing = DEFAULT_TIMING,
        empty_kinds: Sequence[str] = (),
        observers: Sequence[Callable[[Event], None]] = (),
        secrets: ReferencedSecrets | None = None,
    ) -> None:
        self.timing = timing
        self.informers = [Informer(c, timing=timing) for c in collections]
        self._empty_kinds = tuple(empty_kinds)
        self._observers = tuple(observers)
        self._secrets = secrets
        self.secret_relists = 0  # restarts of the Secret informers, for tests and logs

    async def events(self) -> AsyncGenerator[Event, None]:
        queue: asyncio.Queue[tuple[int, Event] | BaseException] = asyncio.Queue(maxsize=256)
        ingresses_listed = asyncio.Event()
        kinds = [inf.collection.kind for inf in self.informers]
        gated = {i for i, kind in enumerate(kinds) if kind == SECRET and self._secrets is not None}

        async def pump(index: int, informer: Informer) -> None:
            try:
                if index in gated:
                    await ingresses_listed.wait()
                async with contextlib.aclosing(informer.events()) as events:
                    async for event in events:
                        await queue.put((index, event))
            except Exception as err:  # a bug, not an API error (those are retried): surface it
                await queue.put(err)

        pumps = {i: asyncio.create_task(pump(i, inf)) for i, inf in enumerate(self.informers)}
        started = list(pumps.values())
        pending: set[str] = set()  # namespaces whose Secrets must be relisted
        restart: asyncio.TimerHandle | None = None

        def restart_secrets() -> None:
            nonlocal restart
            restart = None
            for i in gated:
                informer = self.informers[i]
                if informer.collection.scope in ("", *pending):
                    pumps[i].cancel()
                    self.informers[i] = Informer(informer.collection, timing=self.timing)
                    pumps[i] = asyncio.create_task(pump(i, self.informers[i]))
                    started.append(pumps[i])
            self.secret_relists += 1
            pending.clear()

        scopes: dict[str, list[int]] = {}
        for i, kind in enumerate(kinds):
            scopes.setdefault(kind, []).append(i)
        # Per-informer objects, only for kinds split over several namespaces (to merge relists).
        state: dict[int, dict[Key, Obj]] = {i: {} for indexes in scopes.values() if len(indexes) > 1 for i in indexes}
        unsynced = set(range(len(self.informers)))
        unlisted_ingresses = set(scopes.get(INGRESS, []))
        if not unlisted_ingresses:
            ingresses_listed.set()
        try:
            for kind in self._empty_kinds:
                yield Event(EventType.REPLACED, kind, objects=())
            if not unsynced:
                yield Event(EventType.SYNCED)
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                index, raw = item
                event: Event | None = raw
                if index in gated and self._secrets is not None:
                    collection = self.informers[index].collection
                    event = self._secrets.on_secret(raw, (collection.scope, collection.field_selector))
                if event is not None:
                    if index in state:
                        event = _merge(event, index, state, scopes[event.kind])
                    for observe in self._observers:
                        observe(event)
                    yield event
                if event is not None and event.kind == INGRESS and self._secrets is not None:
                    missing, deletes = self._secrets.on_ingress(event)
                    for delete in deletes:
                        assert delete.obj is not None
                        for i in scopes.get(SECRET, []):
                            state.get(i, {}).pop(object_key(delete.obj), None)
                        yield delete
                    if missing and ingresses_listed.is_set():
                        log.info("Secrets newly referenced: %s; listing Secrets again", sorted(missing))
                        pending.update(ns for ns, _ in missing)
                        if restart is None:  # coalesce a burst of new references into one relist
                            restart = asyncio.get_running_loop().call_later(0.2, restart_secrets)
                if raw.type is EventType.REPLACED and index in unlisted_ingresses:
                    unlisted_ingresses.discard(index)
                    if not unlisted_ingresses:
                        ingresses_listed.set()
                if raw.type is EventType.REPLACED and index in unsynced:
                    unsynced.discard(index)
                    if not unsynced:
                        yield Event(EventType.SYNCED)
        finally:
            if restart is not None:
                restart.cancel()
            for task in started:
                task.cancel()
            await asyncio.gather(*started, return_exceptions=True)


def _merge(event: Event, index: int, state: dict[int, dict[Key, Obj]], indexes: list[int]) -> Event:
    mine = state[index]
    if event.type is EventType.REPLACED:
        state[index] = {object_key(o): o for o in event.objects}
        objects = tuple(o for i in indexes for o in state[i].values())
        return Event(EventType.REPLACED, event.kind, objects=objects)
    assert event.obj is not None
    if event.type is EventType.DELETED:
        mine.pop(object_key(event.obj), None)
    else:
        mine[object_key(event.obj)] = event.obj
    return event


# ---------------------------------------------------------------------------------------------
# What to watch


def collections(
    api: client.ApiClient, *, namespaces: Sequence[str] = (), configmap: tuple[str, str] | None = None
) -> list[Collection]:
    """The collections the controller watches; namespaced kinds once per namespace (or all)."""
    net, core, disc = client.NetworkingV1Api(api), client.CoreV1Api(api), client.DiscoveryV1Api(api)
    out = [Collection(INGRESS_CLASS, "networking.k8s.io/v1", net.list_ingress_class)]
    namespaced: list[tuple[str, str, Callable[..., Any], Callable[..., Any], str | None]] = [
        (
            INGRESS,
            "networking.k8s.io/v1",
            net.list_ingress_for_all_namespaces,
            net.list_namespaced_ingress,
            None,
        ),
        (SERVICE, "v1", core.list_service_for_all_namespaces, core.list_namespaced_service, None),
        (
            ENDPOINT_SLICE,
            "discovery.k8s.io/v1",
            disc.list_endpoint_slice_for_all_namespaces,
            disc.list_namespaced_endpoint_slice,
            None,
        ),
        (
            SECRET,
            "v1",
            core.list_secret_for_all_namespaces,
            core.list_namespaced_secret,
            "type=kubernetes.io/tls",
        ),
        # Basic auth's users (auth-secret): `kubectl create secret generic` makes Opaque Secrets.
        (SECRET, "v1", core.list_secret_for_all_namespaces, core.list_namespaced_secret, "type=Opaque"),
    ]
    for kind, api_version, all_ns, one_ns, selector in namespaced:
        if not namespaces:
            out.append(Collection(kind, api_version, all_ns, field_selector=selector))
        for ns in namespaces:
            out.append(Collection(kind, api_version, functools.partial(one_ns, ns), scope=ns, field_selector=selector))
    if configmap is not None:
        ns, name = configmap
        call = functools.partial(core.list_namespaced_config_map, ns)
        out.append(Collection(CONFIG_MAP, "v1", call, scope=ns, field_selector=f"metadata.name={name}"))
    return out


def collection_count(*, namespaces: Sequence[str], configmap: tuple[str, str] | None) -> int:
    """len(collections(...)) without a client: IngressClass, 5 namespaced collections (Secrets twice:
    TLS and Opaque), the ConfigMap."""
    return 1 + 5 * max(1, len(namespaces)) + (1 if configmap else 0)


def empty_kinds(configmap: tuple[str, str] | None) -> list[str]:
    return [ENDPOINTS] + ([] if configmap else [CONFIG_MAP])


# ---------------------------------------------------------------------------------------------
# Flags and wiring
