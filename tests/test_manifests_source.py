"""The manifests-folder source: what it emits for files added, edited, deleted and broken."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ingressctl.sources.base import Event, EventType
from ingressctl.sources.manifests import ManifestsSource
from tests.harness import ingress, ingress_class, rule, service, write_manifests


async def _next(events: AsyncIterator[Event], n: int, timeout: float = 5.0) -> list[Event]:
    out = []
    for _ in range(n):
        out.append(await asyncio.wait_for(anext(events), timeout))
    return out


async def test_initial_list_then_changes(tmp_path: Path) -> None:
    write_manifests(tmp_path, "a.yaml", [ingress_class(), service("svc")])
    (tmp_path / "sub").mkdir()
    write_manifests(tmp_path / "sub", "b.yml", [ingress("ing", rules=[rule("a.example.com")])])
    write_manifests(tmp_path, "deploy.yaml", "kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\n")
    source = ManifestsSource(tmp_path, interval=0.01)
    events = source.events()
    first = await _next(events, 8)
    replaced = {e.kind: e.objects for e in first if e.type is EventType.REPLACED}
    assert first[-1].type is EventType.SYNCED
    assert [o["metadata"]["name"] for o in replaced["IngressClass"]] == ["ingressctl"]
    assert "namespace" not in replaced["IngressClass"][0]["metadata"], "IngressClass is cluster-scoped"
    assert replaced["Service"][0]["metadata"]["namespace"] == "default"
    stamp = replaced["Ingress"][0]["metadata"]["creationTimestamp"]
    assert stamp

    write_manifests(tmp_path / "sub", "b.yml", [ingress("ing", rules=[rule("b.example.com")])])
    (modified,) = await _next(events, 1)
    assert modified.type is EventType.MODIFIED and modified.obj is not None
    assert modified.obj["spec"]["rules"][0]["host"] == "b.example.com"
    assert modified.obj["metadata"]["creationTimestamp"] == stamp, "first-seen time is kept across edits"

    (tmp_path / "a.yaml").unlink()
    deleted = await _next(events, 2)
    assert {(e.type, e.kind) for e in deleted} == {(EventType.DELETED, "IngressClass"), (EventType.DELETED, "Service")}
    await events.aclose()


async def test_broken_file_keeps_last_good_content(tmp_path: Path) -> None:
    write_manifests(tmp_path, "a.yaml", [service("svc")])
    source = ManifestsSource(tmp_path, interval=0.01)
    events = source.events()
    await _next(events, 8)
    write_manifests(tmp_path, "a.yaml", "kind: Service\nmetadata: [broken\n")
    write_manifests(tmp_path, "b.yaml", [service("other")])
    (added,) = await _next(events, 1)
    assert added.type is EventType.ADDED and added.obj is not None and added.obj["metadata"]["name"] == "other"
    assert list(source.errors) == [tmp_path / "a.yaml"]
    write_manifests(tmp_path, "a.yaml", [service("svc", port=81)])
    (fixed,) = await _next(events, 1)
    assert fixed.type is EventType.MODIFIED and fixed.obj is not None
    assert fixed.obj["spec"]["ports"][0]["port"] == 81
    assert not source.errors
    await events.aclose()


def test_legacy_ingress_is_converted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_manifests(
        tmp_path,
        "old.yaml",
        """
apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: old, namespace: legacy}
spec:
  backend: {serviceName: fallback, servicePort: 8080}
  rules:
  - host: old.example.com
    http:
      paths:
      - path: /api
        backend: {serviceName: api, servicePort: http}
""",
    )
    events = ManifestsSource(tmp_path).load_once()
    (ing,) = next(e for e in events if e.kind == "Ingress").objects
    assert ing["apiVersion"] == "networking.k8s.io/v1"
    assert ing["spec"]["defaultBackend"] == {"service": {"name": "fallback", "port": {"number": 8080}}}
    assert ing["spec"]["rules"][0]["http"]["paths"][0] == {
        "path": "/api",
        "pathType": "ImplementationSpecific",
        "backend": {"service": {"name": "api", "port": {"name": "http"}}},
    }
    assert "uses extensions/v1beta1; converted" in caplog.text


def test_object_without_name_is_an_error(tmp_path: Path) -> None:
    write_manifests(tmp_path, "noname.yaml", "kind: Service\napiVersion: v1\nmetadata: {}\n")
    source = ManifestsSource(tmp_path)
    source.load_once()
    assert "without metadata.name" in source.errors[tmp_path / "noname.yaml"]
