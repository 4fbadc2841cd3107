"""The manifests-folder source: what it emits for files added, edited, deleted and broken."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import yaml

from ingressctl.model import Event, EventType
from ingressctl.sources import manifests as manifests_module
from ingressctl.sources.manifests import ManifestsSource
from tests.harness import backend, ingress, ingress_class, rule, service, write_manifests


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


# --- per-file behaviour, through the synchronous entry points (no timing involved) ---------------


def _load(tmp_path: Path) -> tuple[ManifestsSource, dict[tuple[str, str], Mapping[str, Any]]]:
    source = ManifestsSource(tmp_path)
    events = source.load_once()
    return source, {(e.kind, o["metadata"]["name"]): o for e in events for o in e.objects}


def _summary(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.type.value, e.kind, e.obj["metadata"]["name"]) for e in events if e.obj is not None]


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    reads: list[Path] = []
    original = manifests_module.parse_file

    def counting(path: Path) -> Any:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(manifests_module, "parse_file", counting)
    return reads


@pytest.mark.parametrize("entry", ["update", "rescan"])
def test_a_change_reads_and_reports_only_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    for i in range(5):
        write_manifests(tmp_path, f"f{i}.yaml", [service(f"s{i}"), service(f"t{i}")])
    source, before = _load(tmp_path)
    reads = _count_reads(monkeypatch)
    changed = write_manifests(tmp_path, "f2.yaml", [service("s2", port=81), service("t2")])
    events = source.update([changed]) if entry == "update" else source.rescan()
    assert reads == [changed]
    assert _summary(events) == [("MODIFIED", "Service", "s2")]
    assert events[0].obj is not None and events[0].obj["spec"]["ports"][0]["port"] == 81
    # The unchanged object of the re-read file is still the very object handed out before.
    assert source._current[("Service", "default", "t2")] is before[("Service", "t2")]


def test_added_modified_and_deleted_files(tmp_path: Path) -> None:
    write_manifests(tmp_path, "a.yaml", [service("a1"), service("a2")])
    source, _ = _load(tmp_path)
    added = write_manifests(tmp_path, "b.yaml", [service("b1")])
    assert _summary(source.update([added])) == [("ADDED", "Service", "b1")]
    modified = write_manifests(tmp_path, "a.yaml", [service("a1"), service("a3")])
    assert _summary(source.update([modified])) == [("DELETED", "Service", "a2"), ("ADDED", "Service", "a3")]
    modified.unlink()
    assert _summary(source.update([modified])) == [("DELETED", "Service", "a1"), ("DELETED", "Service", "a3")]
    assert _summary(source.rescan()) == [], "nothing left to report"


def test_object_moved_between_files_keeps_its_first_seen_time(tmp_path: Path) -> None:
    write_manifests(tmp_path, "a.yaml", [ingress("web", rules=[rule("a.example.com")]), service("stays")])
    source, before = _load(tmp_path)
    stamp = before[("Ingress", "web")]["metadata"]["creationTimestamp"]
    # Moved in one change (both files re-read together): no event at all, the content is the same.
    write_manifests(tmp_path, "b.yaml", [ingress("web", rules=[rule("a.example.com")])])
    write_manifests(tmp_path, "a.yaml", [service("stays")])
    assert _summary(source.update([tmp_path / "a.yaml", tmp_path / "b.yaml"])) == []
    assert source._files[tmp_path / "b.yaml"].objects[("Ingress", "default", "web")] is before[("Ingress", "web")], (
        "the moved object is still the one handed out: no second copy"
    )
    # Moved back and edited, noticed one file at a time: a MODIFIED, never a DELETED.
    write_manifests(tmp_path, "a.yaml", [service("stays"), ingress("web", rules=[rule("b.example.com")])])
    assert _summary(source.update([tmp_path / "a.yaml"])) == [], "b.yaml sorts last and still wins"
    (tmp_path / "b.yaml").unlink()
    (modified,) = source.update([tmp_path / "b.yaml"])
    assert modified.type is EventType.MODIFIED and modified.obj is not None
    assert modified.obj["spec"]["rules"][0]["host"] == "b.example.com"
    assert modified.obj["metadata"]["creationTimestamp"] == stamp


def test_defined_twice_the_last_file_wins_until_it_goes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_manifests(tmp_path, "a.yaml", [service("svc", port=80)])
    write_manifests(tmp_path, "b.yaml", [service("svc", port=81)])
    source, objects = _load(tmp_path)
    assert objects[("Service", "svc")]["spec"]["ports"][0]["port"] == 81
    assert "Service default/svc is defined twice" in caplog.text and "b.yaml wins" in caplog.text
    # Editing the losing definition changes nothing that is served.
    write_manifests(tmp_path, "a.yaml", [service("svc", port=82)])
    assert _summary(source.update([tmp_path / "a.yaml"])) == []
    (tmp_path / "b.yaml").unlink()
    (event,) = source.update([tmp_path / "b.yaml"])
    assert event.type is EventType.MODIFIED and event.obj is not None
    assert event.obj["spec"]["ports"][0]["port"] == 82
    (tmp_path / "a.yaml").unlink()
    assert _summary(source.update([tmp_path / "a.yaml"])) == [("DELETED", "Service", "svc")]


def test_malformed_file_keeps_its_last_good_content_until_deleted(tmp_path: Path) -> None:
    write_manifests(tmp_path, "a.yaml", [service("a1")])
    write_manifests(tmp_path, "b.yaml", [service("b1")])
    source, _ = _load(tmp_path)
    write_manifests(tmp_path, "a.yaml", "kind: Service\nmetadata: [broken\n")
    assert _summary(source.update([tmp_path / "a.yaml"])) == []
    assert list(source.errors) == [tmp_path / "a.yaml"]
    assert _summary(source.rescan()) == [], "an unchanged malformed file is not reported again"
    (tmp_path / "a.yaml").unlink()
    assert _summary(source.update([tmp_path / "a.yaml"])) == [("DELETED", "Service", "a1")]
    assert not source.errors


def test_symlink_swap_is_noticed(tmp_path: Path) -> None:
    """A ConfigMap volume: files are links through `data`, a link to a directory that an update
    swaps atomically. inotify names only `data`; that is enough."""
    for version, port in (("v1", 80), ("v2", 81)):
        (tmp_path / version).mkdir()
        write_manifests(tmp_path / version, "svc.yaml", [service("svc", port=port)])
    folder = tmp_path / "volume"
    folder.mkdir()
    (folder / "data").symlink_to(tmp_path / "v1")
    (folder / "svc.yaml").symlink_to("data/svc.yaml")
    source, objects = _load(folder)
    assert objects[("Service", "svc")]["spec"]["ports"][0]["port"] == 80
    (folder / "data-new").symlink_to(tmp_path / "v2")
    os.replace(folder / "data-new", folder / "data")
    (event,) = source.update([folder / "data-new", folder / "data"])
    assert event.obj is not None and event.obj["spec"]["ports"][0]["port"] == 81


def test_json_documents_read_like_yaml(tmp_path: Path) -> None:
    docs = [service("svc"), ingress("web", rules=[rule("a.example.com")])]
    write_manifests(tmp_path, "m.yaml", docs)
    _, from_yaml = _load(tmp_path)
    write_manifests(tmp_path, "m.yaml", "".join(f"---\n{json.dumps(d)}\n" for d in docs))
    _, from_json = _load(tmp_path)

    def unstamped(objects: dict[tuple[str, str], Mapping[str, Any]]) -> dict[tuple[str, str], Any]:
        return {k: {**v, "metadata": {**v["metadata"], "creationTimestamp": ""}} for k, v in objects.items()}

    assert unstamped(from_json) == unstamped(from_yaml)
    # A file mixing JSON and YAML documents is read as YAML, as a whole.
    write_manifests(tmp_path, "m.yaml", f"---\n{json.dumps(docs[0])}\n---\n# YAML\n" + yaml.safe_dump(docs[1]))
    _, mixed = _load(tmp_path)
    assert unstamped(mixed) == unstamped(from_yaml)


# --- change detection: inotify, and polling when inotify is not there -----------------------------


@pytest.mark.parametrize("notify", [True, False], ids=["inotify", "poll"])
async def test_changes_are_noticed(tmp_path: Path, notify: bool) -> None:
    write_manifests(tmp_path, "a.yaml", [service("a")])
    source = ManifestsSource(tmp_path, interval=0.01, notify=notify)
    events = source.events()
    await _next(events, 8)
    for port in (81, 82, 83):
        write_manifests(tmp_path, "a.yaml", [service("a", port=port)])
        (event,) = await _next(events, 1)
        assert event.obj is not None and event.obj["spec"]["ports"][0]["port"] == port
    (tmp_path / "sub").mkdir()
    write_manifests(tmp_path / "sub", "b.yaml", [service("b")])
    (event,) = await _next(events, 1)
    assert (event.type, event.obj and event.obj["metadata"]["name"]) == (EventType.ADDED, "b")
    await events.aclose()


async def test_a_failing_watcher_falls_back_to_polling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import watchfiles

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("inotify watch limit reached")

    monkeypatch.setattr(watchfiles, "watch", broken)
    write_manifests(tmp_path, "a.yaml", [service("a")])
    events = ManifestsSource(tmp_path, interval=0.01).events()
    await _next(events, 8)
    write_manifests(tmp_path, "a.yaml", [service("a", port=81)])
    (event,) = await _next(events, 1)
    assert event.obj is not None and event.obj["spec"]["ports"][0]["port"] == 81
    await events.aclose()


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_equal_small_mappings_are_shared_and_never_edited_through(tmp_path: Path, form: str) -> None:
    paths = (("/a", "Prefix", backend("same")), ("/b", "Prefix", backend("same")))
    docs = [service("same"), ingress("same", rules=[rule("a.example.com", *paths)])]
    text = "".join(f"---\n{json.dumps(d)}\n" for d in docs) if form == "json" else yaml.safe_dump_all(docs)
    write_manifests(tmp_path, "m.yaml", text)
    _, objects = _load(tmp_path)
    svc, ing = objects[("Service", "same")], objects[("Ingress", "same")]
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    assert paths[0]["backend"] is paths[1]["backend"], "one backend mapping for both paths"
    assert svc["metadata"] is not ing["metadata"], "metadata is the object's own (it gets stamped)"
    assert svc["metadata"] == {"name": "same", "namespace": "default", "creationTimestamp": ANY}
