"""Test helpers around the fake API: object factories, a client for it, and an event collector that
keeps a strict mirror of what a source reported (catching lost, replayed or out-of-order events)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from ingressctl.config import Configuration, GlobalOptions, ObjectRef, Problem, Server, StaticConfig
from ingressctl.kubeapi.informer import Timing
from ingressctl.model import Event, EventType
from ingressctl.sources.base import Source
from tests.fakeapi.server import FakeApi

# Informer timing for tests: short watches, quick reconnects.
FAST = Timing(
    page_size=2,
    watch_timeout=3,
    idle_timeout=1.5,
    connect_timeout=1,
    request_timeout=3,
    backoff_initial=0.1,
    backoff_max=1.0,
)


def ingress(
    name: str,
    namespace: str = "default",
    *,
    host: str = "a.example.com",
    service: str = "web",
    class_name: str | None = "ingressctl",
    tls_secret: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service, "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ]
    }
    if class_name:
        spec["ingressClassName"] = class_name
    if tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ingress_class(name: str = "ingressctl", controller: str = "ingressctl.io/controller") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": controller},
    }


def service(name: str, namespace: str = "default", *, port: int = 80, lb: list[Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}]},
    }
    if lb is not None:
        obj["spec"]["type"] = "LoadBalancer"
        obj["status"] = {"loadBalancer": {"ingress": lb}}
    return obj


def endpoint_slice(
    service_name: str,
    addresses: list[str],
    namespace: str = "default",
    *,
    port: int = 80,
    name: str | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-abc",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def tls_secret(name: str, namespace: str = "default", *, cert: bytes = b"cert", key: bytes = b"key") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()},
    }


def opaque_secret(name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"password": base64.b64encode(b"hunter2").decode()},
    }


def config_map(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


@contextlib.asynccontextmanager
async def api_client(api: FakeApi, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    path = api.write_kubeconfig(tmp_path / "kubeconfig")
    kube = await config.new_client_from_config(config_file=str(path))
    async with kube:
        yield kube


def _key(obj: Any) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def _rv(obj: Any) -> int:
    return int(obj["metadata"]["resourceVersion"])


class Collector:
    """Consumes a source in a task. `mirror` is what the events say the cluster holds; every
    ADDED/MODIFIED/DELETED is checked against it (an ADDED for an object already there, a DELETED for
    one not there, or a version not newer than the one held is a replayed or lost event)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.events: list[Event] = []
        self.mirror: dict[str, dict[tuple[str, str], Any]] = {}
        self.synced = asyncio.Event()
        self.errors: list[str] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        assert not self.errors, self.errors

    async def _run(self) -> None:
        async with contextlib.aclosing(self.source.events()) as events:
            async for event in events:
                self.events.append(event)
                self._apply(event)
                self._changed.set()

    def _apply(self, event: Event) -> None:
        if event.type is EventType.SYNCED:
            self.synced.set()
            return
        store = self.mirror.setdefault(event.kind, {})
        if event.type is EventType.REPLACED:
            self.mirror[event.kind] = {_key(o): o for o in event.objects}
            return
        obj = event.obj
        assert obj is not None
        key, old = _key(obj), store.get(_key(obj))
        if event.type is EventType.ADDED and old is not None:
            self.errors.append(f"ADDED for {event.kind} {key} already present")
        if event.type in (EventType.MODIFIED, EventType.DELETED) and old is None:
            self.errors.append(f"{event.type.value} for {event.kind} {key} not present")
        tombstone = event.type is EventType.DELETED and "resourceVersion" not in obj["metadata"]
        if old is not None and not tombstone and _rv(obj) <= _rv(old):
            self.errors.append(f"{event.type.value} for {event.kind} {key} replays version {_rv(obj)}")
        if event.type is EventType.DELETED:
            store.pop(key, None)
        else:
            store[key] = obj

    def task_done(self) -> bool:
        return self._task is not None and self._task.done()

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self._task is not None and self._task.done():
                self._task.result()  # raises the source's error
                raise AssertionError("source ended")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.1))

    def names(self, kind: str) -> list[str]:
        return sorted(f"{ns}/{name}" if ns else name for ns, name in self.mirror.get(kind, {}))

    def matches(self, api: FakeApi, kind: str, *, where: Callable[[Any], bool] = lambda o: True) -> bool:
        """Whether the mirror holds exactly the server's objects of a kind (same versions)."""
        server = {_key(o): o["metadata"]["resourceVersion"] for o in api.list(kind) if where(o)}
        mine = {k: o["metadata"]["resourceVersion"] for k, o in self.mirror.get(kind, {}).items()}
        return server == mine


def configuration(ingresses: Sequence[tuple[str, str]] = (), problems: Sequence[Problem] = ()) -> Configuration:
    """A Configuration with nothing to serve but the given Ingresses (namespace, name) and problems:
    all the publishers read."""
    default = Server(host="", server_name="_", locations=())
    static = StaticConfig(
        servers=(), default_server=default, certificates=(), default_certificate="", options=GlobalOptions()
    )
    return Configuration(
        static=static,
        backends=(),
        ingresses=tuple(ObjectRef("Ingress", ns, name) for ns, name in ingresses),
        problems=tuple(problems),
    )


def problem(namespace: str, name: str, field: str, reason: str) -> Problem:
    return Problem(ObjectRef("Ingress", namespace, name), field, reason)
