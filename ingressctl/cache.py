"""The object cache: the latest version of every object a source reported.

It keys objects by (kind, namespace, name), decides whether an event matters (a change that only
touches resourceVersion, managedFields or status of an object we do not read is dropped), and hands
out immutable snapshots for translate, and says what changed since the last one was taken (everything,
or only the endpoints of some Services). Secrets other than kubernetes.io/tls and Opaque (basic auth's
users: `kubectl create secret generic` makes Opaque ones) are never stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ingressctl.model import ENDPOINT_SLICE, ENDPOINTS, INGRESS, KINDS, SECRET, Event, EventType, Key, Obj, object_key

# Metadata fields whose change never changes what we serve.
_IGNORED_METADATA = ("resourceVersion", "managedFields", "generation", "uid", "selfLink")


def relevant(kind: str, obj: Obj) -> Mapping[str, Any]:
    """The part of an object translate reads: used to tell whether an update matters."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _IGNORED_METADATA}
    out = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    out["metadata"] = meta
    if kind != INGRESS and "status" in obj:
        # Ingress status is written by us; other kinds' status (Service loadBalancer) may matter.
        out["status"] = obj["status"]
    return out


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def slice_owner(obj: Obj | None) -> Key | None:
    """The Service (namespace, name) an EndpointSlice belongs to, by its service-name label."""
    if obj is None:
        return None
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    owner = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, dict) else None
    return (object_key(obj)[0], owner) if isinstance(owner, str) and owner else None


def _service_of(kind: str, obj: Obj | None) -> Key | None:
    """The Service whose endpoints an EndpointSlice or Endpoints object holds."""
    if obj is None:
        return None
    return object_key(obj) if kind == ENDPOINTS else slice_owner(obj)


_SECRET_TYPES = ("kubernetes.io/tls", "Opaque", None)  # None: no type is Opaque


def _stored(kind: str, obj: Obj) -> bool:
    return not (kind == SECRET and obj.get("type") not in _SECRET_TYPES)


@dataclass(frozen=True)
class Changes:
    """What changed since the last snapshot: everything (`full`), or only the endpoints of these
    Services (an endpoint-only change re-resolves just their backends: no render, no reload)."""

    full: bool
    services: frozenset[Key] = frozenset()

    @property
    def any(self) -> bool:
        return self.full or bool(self.services)


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of the cache: kind -> {(namespace, name): object}. Objects, and the
    per-Service mappings of slices_by_service, are replaced when they change, never edited, so
    translate may recognise them by identity."""

    objects: Mapping[str, Mapping[Key, Obj]]
    # EndpointSlices by the Service they belong to: {(namespace, service): {slice key: slice}}.
    slices_by_service: Mapping[Key, Mapping[Key, Obj]] = field(default_factory=lambda: MappingProxyType({}))

    def of(self, kind: str) -> Mapping[Key, Obj]:
        return self.objects.get(kind, MappingProxyType({}))


class Cache:
    def __init__(self) -> None:
        self._objects: dict[str, dict[Key, Obj]] = {kind: {} for kind in KINDS}
        # Kept up to date on every change; inner dicts are replaced, never edited, so a snapshot
        # needs only a shallow copy of the outer one.
        self._slices_by_service: dict[Key, dict[Key, Obj]] = {}
        self._full = True  # what changed since the last take_changes()
        self._services: set[Key] = set()

    def _index_slice(self, key: Key, old: Obj | None, new: Obj | None) -> None:
        for owner in {slice_owner(old), slice_owner(new)} - {None}:
            assert owner is not None
            members = dict(self._slices_by_service.get(owner, {}))
            members.pop(key, None)
            if new is not None and slice_owner(new) == owner:
                members[key] = new
            if members:
                self._slices_by_service[owner] = members
            else:
                self._slices_by_service.pop(owner, None)

    def _reindex_slices(self) -> None:
        index: dict[Key, dict[Key, Obj]] = {}
        for key, obj in self._objects.get(ENDPOINT_SLICE, {}).items():
            owner = slice_owner(obj)
            if owner is not None:
                index.setdefault(owner, {})[key] = obj
        self._slices_by_service = index

    def apply(self, event: Event) -> bool:
        """Records an event; returns whether it changed anything translate reads."""
        old = self.get(event.kind, object_key(event.obj)) if event.obj is not None else None
        changed = self._apply(event)
        if changed:
            if event.kind in (ENDPOINT_SLICE, ENDPOINTS) and event.obj is not None:
                self._services |= {s for s in (_service_of(event.kind, old), _service_of(event.kind, event.obj)) if s}
            else:
                self._full = True
        return changed

    @property
    def endpoints_only(self) -> bool:
        """The changes not taken yet are endpoint changes only."""
        return not self._full

    def take_changes(self) -> Changes:
        """What changed since the last call (the first call: everything), and starts afresh."""
        changes = Changes(self._full, frozenset(self._services))
        self._full, self._services = False, set()
        return changes

    def changed_all(self) -> None:
        """The next take_changes() says everything changed (a sync to be retried in full)."""
        self._full = True

    def _apply(self, event: Event) -> bool:
        if event.type is EventType.SYNCED:
            return False
        store = self._objects.setdefault(event.kind, {})
        if event.type is EventType.REPLACED:
            new = {object_key(o): o for o in event.objects if _stored(event.kind, o)}
            changed = set(new) != set(store) or any(
                relevant(event.kind, o) != relevant(event.kind, store[k]) for k, o in new.items()
            )
            self._objects[event.kind] = new
            if event.kind == ENDPOINT_SLICE:
                self._reindex_slices()
            return changed
        assert event.obj is not None
        key = object_key(event.obj)
        if event.type is EventType.DELETED or not _stored(event.kind, event.obj):
            removed = store.pop(key, None)
            if removed is not None and event.kind == ENDPOINT_SLICE:
                self._index_slice(key, removed, None)
            return removed is not None
        old = store.get(key)
        store[key] = event.obj
        if event.kind == ENDPOINT_SLICE:
            self._index_slice(key, old, event.obj)
        return old is None or relevant(event.kind, old) != relevant(event.kind, event.obj)

    def get(self, kind: str, key: Key) -> Obj | None:
        return self._objects.get(kind, {}).get(key)

    def load(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            objects=MappingProxyType({kind: MappingProxyType(dict(store)) for kind, store in self._objects.items()}),
            slices_by_service=MappingProxyType(dict(self._slices_by_service)),
        )
