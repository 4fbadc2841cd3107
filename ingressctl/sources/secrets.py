"""Which Secrets the API source passes on: only those an Ingress references (TLS, and Opaque ones for
basic auth).

A cluster can hold thousands of kubernetes.io/tls Secrets (cert-manager makes one per certificate)
that no Ingress of ours uses; holding them all would cost memory for nothing. The Secret informer
still lists and watches them (the field selector can only filter by type), but KubeSource hands on
only Secrets named by some Ingress's spec.tls[].secretName (same namespace) or by
--default-ssl-certificate, and reports a Secret as DELETED once nothing references it any more.

A Secret that becomes referenced after it was seen and dropped cannot be fetched without `get` on
Secrets (not granted), so `on_ingress` says when a relist of the Secret collection is needed: only
when a reference is *added*, so an Ingress naming a missing Secret costs one relist, not one per
update.
"""

from __future__ import annotations

from collections.abc import Iterable

from ingressctl.model import INGRESS, SECRET, Event, EventType, Key, Obj, object_key
from ingressctl.translate.annotations.registry import PREFIXES


def tls_references(ingress: Obj) -> set[Key]:
    """The (namespace, name) of every Secret an Ingress's spec.tls (or proxy-ssl-secret, auth-tls-secret,
    basic auth's auth-secret) names."""
    namespace = str((ingress.get("metadata") or {}).get("namespace") or "")
    out: set[Key] = set()
    tls = (ingress.get("spec") or {}).get("tls")
    for entry in tls if isinstance(tls, list) else []:
        name = entry.get("secretName") if isinstance(entry, dict) else None
        if isinstance(name, str) and name:
            out.add((namespace, name))
    annotations = (ingress.get("metadata") or {}).get("annotations")
    # proxy-ssl-secret, auth-tls-secret, auth-secret: `name` or `namespace/name` (the Ingress's namespace only)
    for prefix in PREFIXES:
        for annotation in ("proxy-ssl-secret", "auth-tls-secret", "auth-secret"):
            ref = annotations.get(prefix + annotation) if isinstance(annotations, dict) else None
            if isinstance(ref, str) and ref:
                ns, _, name = ref.rpartition("/")
                if ns in ("", namespace):
                    out.add((namespace, name))
    return out


def _tombstone(key: Key) -> Obj:
    return {"apiVersion": "v1", "kind": SECRET, "metadata": {"namespace": key[0], "name": key[1]}}


class ReferencedSecrets:
    def __init__(self, static: Iterable[Key] = ()) -> None:
        self._static = set(static)
        self._by_ingress: dict[Key, set[Key]] = {}
        self._counts: dict[Key, int] = {k: 1 for k in self._static}
        self.forwarded: set[Key] = set()  # Secrets the consumer holds
        self._origin: dict[Key, object] = {}  # the collection each held Secret came from

    def referenced(self, key: Key) -> bool:
        return self._counts.get(key, 0) > 0

    def _set(self, ingress: Key, refs: set[Key]) -> set[Key]:
        """Records an Ingress's references; returns the Secrets that became referenced."""
        old = self._by_ingress.pop(ingress, set())
        if refs:
            self._by_ingress[ingress] = refs
        added = set()
        for key in refs - old:
            self._counts[key] = self._counts.get(key, 0) + 1
            if self._counts[key] == 1:
                added.add(key)
        for key in old - refs:
            self._counts[key] -= 1
            if not self._counts[key]:
                del self._counts[key]
        return added

    def on_ingress(self, event: Event) -> tuple[set[Key], list[Event]]:
        """Follows the Ingress references: returns the Secrets newly referenced and not held (a relist
        of Secrets is needed to get them) and DELETED events for held Secrets nobody references."""
        if event.kind != INGRESS or event.type is EventType.SYNCED:
            return set(), []
        added: set[Key] = set()
        if event.type is EventType.REPLACED:
            current = {object_key(o): tls_references(o) for o in event.objects}
            for ingress in set(self._by_ingress) - set(current):
                self._set(ingress, set())
            for ingress, refs in current.items():
                added |= self._set(ingress, refs)
        elif event.obj is not None:
            refs = set() if event.type is EventType.DELETED else tls_references(event.obj)
            added = self._set(object_key(event.obj), refs)
        dropped = sorted(k for k in self.forwarded if not self.referenced(k))
        self.forwarded.difference_update(dropped)
        deletes = [Event(EventType.DELETED, SECRET, obj=_tombstone(k)) for k in dropped]
        return {k for k in added if k not in self.forwarded}, deletes

    def on_secret(self, event: Event, collection: object) -> Event | None:
        """The Secret event to pass on, if any; `collection` names the informer's collection (its
        namespace and type: a relist replaces what that collection passed on, not the others')."""
        if event.type is EventType.REPLACED:
            objects = tuple(o for o in event.objects if self.referenced(object_key(o)))
            self.forwarded = {k for k in self.forwarded if self._origin.get(k) != collection}
            for o in objects:
                self.forwarded.add(object_key(o))
                self._origin[object_key(o)] = collection
            return Event(EventType.REPLACED, SECRET, objects=objects)
        if event.obj is None:
            return event
        key = object_key(event.obj)
        if event.type is EventType.DELETED or not self.referenced(key):
            if key in self.forwarded:
                self.forwarded.discard(key)
                return Event(EventType.DELETED, SECRET, obj=event.obj)
            return None
        if key not in self.forwarded:  # new to the consumer, whatever the API said
            self.forwarded.add(key)
            self._origin[key] = collection
            return Event(EventType.ADDED, SECRET, obj=event.obj)
        return event
