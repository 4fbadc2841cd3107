"""API mode wiring: the Kubernetes API source next to the write-back side, on one API client.

The cli calls `build(args)` only when --manifests is not given (it imports kubernetes_asyncio)::

    mode = await apimode.build(args)        # ConfigError (a ValueError) if no configuration is usable
    async with mode.running() as jobs:      # leader election, status and Event writers run
        ...  # a Controller on mode.source, publishing to mode.publishers; `jobs` ends if one fails
    # leaving the block stops the jobs and closes the API client

Flags (each also read from the environment as INGRESSCTL_<FLAG>, e.g. INGRESSCTL_WATCH_NAMESPACE=a,b):
--kubeconfig, --context, --watch-namespace (repeatable), --election-id,
--publish-service NS/NAME, --publish-status-address A,B, --update-status true|false, and the leader
Lease's timing --lease-duration (15), --lease-renew-deadline (10), --lease-retry-period (2) seconds;
build() also reads args.configmap and args.default_ssl_certificate (NS/NAME tuples or None).

Configuration: --kubeconfig, else $KUBECONFIG, else in-cluster (service account) in a pod, else
~/.kube/config; --context picks a kubeconfig context.

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
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client

from ingressctl.controller import Publisher
from ingressctl.kubeapi.client import default_identity, load_client, pod_namespace
from ingressctl.kubeapi.informer import DEFAULT_TIMING, Timing
from ingressctl.sources.kube import KubeSource, collection_count, collections, empty_kinds
from ingressctl.sources.kubeflags import watch_namespaces
from ingressctl.sources.secrets import ReferencedSecrets
from ingressctl.writeback.events import EventRecorder
from ingressctl.writeback.leader import LeaderElector, LeaseSettings
from ingressctl.writeback.status import IngressView, StatusPublisher, parse_addresses

Job = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ApiMode:
    source: KubeSource
    publishers: Sequence[Publisher]
    jobs: tuple[Job, ...]  # the write-back side's background work
    api: client.ApiClient

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Future[None]]:
        """Runs the jobs while the block runs; yields a future that fails as soon as one of them
        fails (they run until cancelled). On exit every job is stopped and the client closed."""
        tasks = [asyncio.create_task(job(), name=getattr(job, "__qualname__", "job")) for job in self.jobs]
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None and not failed.done():
                failed.set_exception(task.exception())  # type: ignore[arg-type]

        for task in tasks:
            task.add_done_callback(done)
        try:
            yield failed
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not failed.done():
                failed.cancel()
            await self.api.close()


async def build(args: argparse.Namespace, *, timing: Timing = DEFAULT_TIMING, identity: str | None = None) -> ApiMode:
    """The API source, its publishers (Event recorder, and status writer unless
    --update-status=false) and their jobs, from parsed flags. Raises ConfigError (a ValueError) when
    no client configuration is usable. `identity` (default $POD_NAME, else host_pid) names
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
    jobs: list[Job] = [elector.run, events.run]
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
        jobs.append(status.run)
    source = KubeSource(
        collections(api, namespaces=namespaces, configmap=configmap),
        timing=timing,
        empty_kinds=empty_kinds(configmap),
        observers=[view.observe],
        secrets=ReferencedSecrets(static=[default_cert] if default_cert else []),
    )
    return ApiMode(source=source, publishers=publishers, jobs=tuple(jobs), api=api)
