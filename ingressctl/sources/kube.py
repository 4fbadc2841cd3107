"""The Kubernetes API source, and the one entry point the cli needs for everything API-backed.

Interface for cli.py (only used when --manifests is not given; the flags live in
ingressctl.sources.kubeflags, so that a manifests-folder run never imports kubernetes_asyncio)::

    kubeflags.add_arguments(parser)         # adds the flags below to an argparse parser
    source, publishers = await kube.build(args)  # kube.ConfigError (a ValueError) if unusable
    # build() also reads args.configmap (NS/NAME tuple or None), the cli's own --configmap flag.
    # source.events() runs every informer and the background work of the publishers (leader
    # election, status and Event writers) and stops all of it, and closes the API client, when the
    # consumer stops iterating or is cancelled. Each publisher has `async def publish(config)`, which
    # returns at once (the API writes happen in the publisher's own task).

Flags (each also read from the environment as INGRESSCTL_<FLAG>, e.g. INGRESSCTL_WATCH_NAMESPACE=a,b):
--kubeconfig, --context, --watch-namespace (repeatable), --election-id,
--publish-service NS/NAME, --publish-status-address A,B, --update-status true|false, and the leader
Lease's timing --lease-duration (15), --lease-renew-deadline (10), --lease-retry-period (2) seconds.

Configuration: --kubeconfig, else $KUBECONFIG, else in-cluster (service account) in a pod, else
~/.kube/config; --context picks a kubeconfig context.

What is watched: one informer (ingressctl.sources.informer) per kind and namespace: Ingress,
IngressClass, Service, EndpointSlice (discovery.k8s.io/v1), Secret (field selector
type=kubernetes.io/tls) and, with --configmap, that one ConfigMap (field selector metadata.name).
Only the TLS Secrets that an Ingress (spec.tls[].secretName) or --default-ssl-certificate names are
passed on (ingressctl.sources.secrets). Endpoints are not watched (EndpointSlices are); the source
reports them, and the ConfigMap without --configmap, as empty. With several --watch-namespace values
a relist of one namespace is merged with the others' current objects, so REPLACED always carries the
whole kind.

RBAC, exactly the API calls this code makes (deploy/'s ClusterRole must match):
- list, watch: networking.k8s.io ingresses, ingressclasses; "" services, secrets;
  discovery.k8s.io endpointslices. (Namespaced Role per namespace is enough with --watch-namespace,
  except ingressclasses, which are cluster-scoped.)
- list, watch: "" configmaps, only in the --configmap namespace (field selector metadata.name).
- update: networking.k8s.io ingresses/status (PUT with resourceVersion; no get: the current object
  comes from the watch). Only with --update-status (default).
- list, watch: "" services in the --publish-service namespace (field selector metadata.name; no get).
- create, patch: "" events (core v1 Events, in the Ingress's namespace).
- get, create, update: coordination.k8s.io leases, in the pod's namespace (the --election-id Lease).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from ingressctl.cache import Key, object_key
from ingressctl.controller import Publisher
from ingressctl.events import EventRecorder
from ingressctl.leader import LeaderElector, LeaseSettings
from ingressctl.sources.base import (
    CONFIG_MAP,
    ENDPOINT_SLICE,
    ENDPOINTS,
    INGRESS,
    INGRESS_CLASS,
    SECRET,
    SERVICE,
    Event,
    EventType,
    Obj,
    Source,
)
from ingressctl.sources.informer import DEFAULT_TIMING, Collection, Informer, Timing
from ingressctl.sources.kubeflags import watch_namespaces
from ingressctl.sources.secrets import ReferencedSecrets
from ingressctl.status import IngressView, StatusPublisher, parse_addresses

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


Background = Callable[[], Awaitable[None]]


class ConfigError(ValueError):
    """No usable client configuration (missing or broken kubeconfig, unknown context...)."""


class KubeSource:
    """Runs one informer per collection and merges their events into one stream (see base.Source).
    Observers see every event before it is yielded (the Ingress view of the status writer); the
    background jobs run as long as the stream is consumed. With `secrets` (ReferencedSecrets), only
    referenced Secrets are passed on: the Secret informers start once the Ingresses are listed, and
    are restarted (relist) when an Ingress starts referencing a Secret that was dropped."""

    def __init__(
        self,
        collections: Sequence[Collection],
        *,
        timing: Timing = DEFAULT_TIMING,
        empty_kinds: Sequence[str] = (),
        background: Sequence[Background] = (),
        observers: Sequence[Callable[[Event], None]] = (),
        secrets: ReferencedSecrets | None = None,
        on_close: Background | None = None,
    ) -> None:
        self.timing = timing
        self.informers = [Informer(c, timing=timing) for c in collections]
        self._empty_kinds = tuple(empty_kinds)
        self._background = tuple(background)
        self._observers = tuple(observers)
        self._secrets = secrets
        self._on_close = on_close
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

        async def background(job: Background) -> None:
            try:
                await job()
            except Exception as err:
                await queue.put(err)

        pumps = {i: asyncio.create_task(pump(i, inf)) for i, inf in enumerate(self.informers)}
        started = list(pumps.values()) + [asyncio.create_task(background(job)) for job in self._background]
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
                    event = self._secrets.on_secret(raw, self.informers[index].collection.scope)
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
            if self._on_close is not None:
                await self._on_close()


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
    """len(collections(...)) without a client: IngressClass, 4 namespaced kinds, the ConfigMap."""
    return 1 + 4 * max(1, len(namespaces)) + (1 if configmap else 0)


def empty_kinds(configmap: tuple[str, str] | None) -> list[str]:
    return [ENDPOINTS] + ([] if configmap else [CONFIG_MAP])


# ---------------------------------------------------------------------------------------------
# Flags and wiring


async def load_client(kubeconfig: str | None, context: str | None, *, connections: int = 100) -> client.ApiClient:
    """A client from --kubeconfig, else $KUBECONFIG, else the in-cluster service account, else
    ~/.kube/config (controller-runtime's order). `connections` bounds the connection pool: every
    open watch holds one for as long as it runs."""
    configuration = client.Configuration()
    in_cluster = os.environ.get("KUBERNETES_SERVICE_HOST") and (SERVICE_ACCOUNT / "token").exists()
    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        if not path and in_cluster:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            default = Path("~/.kube/config").expanduser()
            if not path and not default.exists():
                raise ConfigError("no Kubernetes configuration: not in a pod, no --kubeconfig, no $KUBECONFIG")
            await config.load_kube_config(
                config_file=path, context=context, client_configuration=configuration, persist_config=False
            )
    except (config.ConfigException, OSError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"Kubernetes client configuration ({path or 'in-cluster'}): {err}") from err
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration=configuration)


def pod_namespace() -> str:
    if ns := os.environ.get("POD_NAMESPACE"):
        return ns
    with contextlib.suppress(OSError):
        if ns := (SERVICE_ACCOUNT / "namespace").read_text().strip():
            return ns
    return "default"


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


async def build(
    args: argparse.Namespace, *, timing: Timing = DEFAULT_TIMING, identity: str | None = None
) -> tuple[Source, list[Publisher]]:
    """The API source and its publishers (Event recorder, and status writer unless
    --update-status=false), from parsed flags. `identity` (default $POD_NAME, else host_pid) names
    this replica in the leader Lease."""
    lease = LeaseSettings(
        name=args.election_id,
        namespace=pod_namespace(),
        identity=identity or default_identity(),
        lease_duration=args.lease_duration,
        renew_deadline=args.lease_renew_deadline,
        retry_period=args.lease_retry_period,
    )
    if not 0 < lease.retry_period < lease.renew_deadline < lease.lease_duration:
        raise ValueError("need 0 < --lease-retry-period < --lease-renew-deadline < --lease-duration")
    namespaces = watch_namespaces(args)
    configmap: tuple[str, str] | None = getattr(args, "configmap", None)
    default_cert: tuple[str, str] | None = getattr(args, "default_ssl_certificate", None)
    # One connection per watch (informers and the publish Service's), plus room for lists and writes.
    watches = collection_count(namespaces=namespaces, configmap=configmap) + 1
    api = await load_client(args.kubeconfig, args.context, connections=watches + 20)
    elector = LeaderElector(api, lease)
    view = IngressView()
    events = EventRecorder(api, view=view, elector=elector, instance=lease.identity)
    publishers: list[Publisher] = [events]
    background: list[Background] = [elector.run, events.run]
    if args.update_status:
        status = StatusPublisher(
            api,
            view=view,
            elector=elector,
            publish_service=args.publish_service,
            addresses=parse_addresses(args.publish_status_address or ""),
            timing=timing,
        )
        publishers.append(status)
        background.append(status.run)
    source = KubeSource(
        collections(api, namespaces=namespaces, configmap=configmap),
        timing=timing,
        empty_kinds=empty_kinds(configmap),
        background=background,
        observers=[view.observe],
        secrets=ReferencedSecrets(static=[default_cert] if default_cert else []),
        on_close=api.close,
    )
    return source, publishers
