"""Warning Events for rejected objects: one core v1 Event per Problem of the latest Configuration.

Deduplicated the way the kubelet's event correlator does it: a problem that is still there on the
next sync is not sent again; its Event's count and lastTimestamp are patched at most once per
`repeat_interval` (10 minutes by default), and only when a sync reports it again. A problem that goes
away and comes back later gets a new Event. With an elector, only the leader records, so replicas do
not send one Event each. The Ingress's uid comes from the source's watch (IngressView), so
`kubectl describe ingress` lists the Event.

API calls: create, patch on events.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from ingressctl.config import Configuration, Problem
from ingressctl.kubeapi.client import ApiError, read_json
from ingressctl.model import INGRESS, Obj
from ingressctl.writeback.leader import LeaderElector
from ingressctl.writeback.status import IngressView

log = logging.getLogger(__name__)

COMPONENT = "ingressctl"
REASON = "Rejected"

_API_VERSIONS = {"Ingress": "networking.k8s.io/v1", "IngressClass": "networking.k8s.io/v1"}


@dataclass
class _Sent:
    name: str
    namespace: str
    count: int
    last: float  # monotonic time of the last create/patch


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(problem: Problem) -> tuple[object, ...]:
    return (problem.ref, problem.field, problem.reason, problem.severity)


class EventRecorder:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        view: IngressView | None = None,
        elector: LeaderElector | None = None,
        instance: str = "",
        repeat_interval: float = 600.0,
        write_timeout: float = 10.0,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._view = view
        self._elector = elector
        self._instance = instance
        self._repeat = repeat_interval
        self._timeout = aiohttp.ClientTimeout(total=write_timeout)
        self._problems: tuple[Problem, ...] | None = None
        self._sent: dict[tuple[object, ...], _Sent] = {}
        self._wake = asyncio.Event()
        self.created = 0
        self.patched = 0
        if elector is not None:
            elector.on_change(lambda _leader: self._wake.set())

    async def publish(self, config: Configuration) -> None:
        self._problems = config.problems
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._elector is not None and not self._elector.is_leader:
                self._sent.clear()  # a later leadership starts afresh (the old leader's dedup is lost)
                continue
            if self._problems is not None:
                await self.record(self._problems)

    async def record(self, problems: tuple[Problem, ...]) -> None:
        current = {_key(p): p for p in problems}
        for key in [k for k in self._sent if k not in current]:
            del self._sent[key]
        for key, problem in sorted(current.items(), key=lambda kv: str(kv[1])):
            sent = self._sent.get(key)
            try:
                if sent is None:
                    self._sent[key] = await self._create(problem)
                    self.created += 1
                elif time.monotonic() - sent.last >= self._repeat:
                    try:
                        await self._patch(sent)
                        self.patched += 1
                    except ApiError as err:
                        if err.code != 404:
                            raise
                        # The API server expired the Event (events have a TTL): start a new one.
                        self._sent[key] = await self._create(problem)
                        self.created += 1
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
                # Not fatal, and not retried in a loop: the next sync tries again.
                log.warning("recording an Event for %s: %s", problem, err)

    def _involved(self, problem: Problem) -> Obj:
        ref = problem.ref
        involved: dict[str, str] = {
            "apiVersion": _API_VERSIONS.get(ref.kind, "v1"),
            "kind": ref.kind,
            "name": ref.name,
        }
        if ref.namespace:
            involved["namespace"] = ref.namespace
        if ref.kind == INGRESS and self._view is not None:
            obj = self._view.get(ref.namespace, ref.name)
            meta = (obj or {}).get("metadata") or {}
            if meta.get("uid"):
                involved["uid"] = str(meta["uid"])
                involved["resourceVersion"] = str(meta.get("resourceVersion", ""))
        return involved

    async def _create(self, problem: Problem) -> _Sent:
        namespace = problem.ref.namespace or "default"
        now = _now()
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{problem.ref.name}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": self._involved(problem),
            "reason": REASON,
            "message": f"{problem.field}: {problem.reason}"[:1024],
            "type": "Warning" if problem.severity == "Warning" else "Normal",
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
        }
        created = await read_json(
            await self._core.create_namespaced_event(
                namespace, body, _preload_content=False, _request_timeout=self._timeout
            )
        )
        log.info("Event %s: %s", problem.ref, body["message"])
        return _Sent(str(created["metadata"]["name"]), namespace, 1, time.monotonic())

    async def _patch(self, sent: _Sent) -> None:
        patch: Any = {"count": sent.count + 1, "lastTimestamp": _now()}
        options: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
        await read_json(
            await self._core.patch_namespaced_event(
                sent.name,
                sent.namespace,
                patch,
                _preload_content=False,
                _request_timeout=self._timeout,
                **options,
            )
        )
        sent.count += 1
        sent.last = time.monotonic()
