"""The fake API server's storage: objects, one global resourceVersion counter, the change history
that watches replay, compaction, and the label/field selectors lists and watches filter by.

It plays etcd plus the API server's storage layer: every write bumps the global resourceVersion,
is appended to the history and pushed to the open watchers. Nothing here does HTTP.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool = False  # has a status subresource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = (
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", namespaced=True, status=True),
    Resource("networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False),
    Resource("", "v1", "services", "Service", namespaced=True, status=True),
    Resource("", "v1", "endpoints", "Endpoints", namespaced=True),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", namespaced=True),
    Resource("", "v1", "secrets", "Secret", namespaced=True),
    Resource("", "v1", "configmaps", "ConfigMap", namespaced=True),
    Resource("", "v1", "events", "Event", namespaced=True),
    Resource("events.k8s.io", "v1", "events", "Event", namespaced=True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, status=True),
)
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
# Where test code names a kind, the first resource of that kind wins (core v1 Event).
BY_KIND: dict[str, Resource] = {}
for _r in RESOURCES:
    BY_KIND.setdefault(_r.kind, _r)


class ApiError(Exception):
    """Becomes a metav1.Status response."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


# ---------------------------------------------------------------------------------------------
# Selectors


_LABEL_TERM = re.compile(
    r"\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?\s*"
)


def _split_terms(selector: str) -> list[str]:
    """Splits on commas outside parentheses."""
    terms, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        terms.append(cur)
    return terms


def label_matcher(selector: str) -> Callable[[Obj], bool]:
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector):
        m = _LABEL_TERM.fullmatch(term)
        if not m:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        key, op, value, setop = m["key"], m["op"], m["value"] or "", m["setop"]
        if m["neg"]:
            checks.append(lambda labels, k=key: k not in labels)
        elif op in ("=", "=="):
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif op == "!=":
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif setop:
            values = {v.strip() for v in m["set"].split(",")}
            if setop == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        else:
            checks.append(lambda labels, k=key: k in labels)

    def match(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return match


# The fields the real API server supports selecting on, per kind (beyond metadata.name/namespace).
_FIELDS = {
    "Secret": {"type"},
    "Event": {
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.uid",
        "reason",
        "type",
    },
}


def field_matcher(kind: str, selector: str) -> Callable[[Obj], bool]:
    checks: list[tuple[list[str], bool, str]] = []
    for term in _split_terms(selector):
        m = re.fullmatch(r"\s*([A-Za-z.]+)\s*(==|=|!=)\s*([^,]*?)\s*", term)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term!r}")
        path, op, value = m.groups()
        if path not in ("metadata.name", "metadata.namespace") and path not in _FIELDS.get(kind, set()):
            raise ApiError(400, "BadRequest", f'"{path}" is not a known field selector: only "metadata.name", ...')
        checks.append((path.split("."), op != "!=", value))

    def match(obj: Obj) -> bool:
        for path, equal, value in checks:
            cur: Any = obj
            for part in path:
                cur = cur.get(part) if isinstance(cur, dict) else None
            if ((cur or "") == value) != equal:
                return False
        return True

    return match


# ---------------------------------------------------------------------------------------------
# Storage


@dataclass(frozen=True)
class Change:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: Resource
    old: Obj | None
    new: Obj  # for DELETED: the object as deleted (with the deletion's resourceVersion)


@dataclass(eq=False)
class Watcher:
    resource: Resource
    namespace: str | None
    queue: collections.deque[Change] = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class Store:
    def __init__(self) -> None:
        self.rv = 1
        self.objects: dict[tuple[Resource, str, str], Obj] = {}
        self.history: list[Change] = []
        # Watches from a resourceVersion older than this get 410 Gone.
        self.compacted = 0
        self.watchers: set[Watcher] = set()

    def get(self, resource: Resource, namespace: str, name: str) -> Obj:
        try:
            return copy.deepcopy(self.objects[(resource, namespace, name)])
        except KeyError:
            raise ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found') from None

    def items(self, resource: Resource, namespace: str | None) -> list[Obj]:
        """Current objects of a resource, sorted by (namespace, name) like etcd keys."""
        keys = sorted(k for k in self.objects if k[0] == resource and (namespace is None or k[1] == namespace))
        return [copy.deepcopy(self.objects[k]) for k in keys]

    def _record(self, change: Change) -> None:
        self.history.append(change)
        for watcher in list(self.watchers):
            if watcher.resource == change.resource and (
                watcher.namespace is None or watcher.namespace == _ns(change.new)
            ):
                watcher.queue.append(change)
                watcher.wake.set()

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def create(self, resource: Resource, namespace: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        if resource.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(400, "BadRequest", "the namespace of the object does not match the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if resource.kind == "Event" and not resource.group and not obj.get("involvedObject"):
            raise ApiError(422, "Invalid", "involvedObject: Required value")
        key = (resource, namespace if resource.namespaced else "", name)
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{resource.qualified} "{name}" already exists')
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        meta["resourceVersion"] = str(self._next_rv())
        self.objects[key] = obj
        self._record(Change(self.rv, "ADDED", resource, None, copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def update(self, resource: Resource, namespace: str, name: str, obj: Obj, *, status: bool) -> Obj:
        """PUT of the object (spec and metadata) or of its status subresource (status only).
        A resourceVersion in the body is a precondition: 409 Conflict when it is not current."""
        key = (resource, namespace if resource.namespaced else "", name)
        old = self.objects.get(key)
        if old is None:
            raise ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found')
        given = (obj.get("metadata") or {}).get("resourceVersion")
        if given and given != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        new = copy.deepcopy(old)
        if status:
            if "status" in obj:
                new["status"] = copy.deepcopy(obj["status"])
            else:
                new.pop("status", None)
        else:
            keep = {k: old["metadata"][k] for k in ("uid", "creationTimestamp", "generation") if k in old["metadata"]}
            new = {k: copy.deepcopy(v) for k, v in obj.items() if not (resource.status and k == "status")}
            if resource.status and "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            new["metadata"] = {**copy.deepcopy(obj.get("metadata") or {}), **keep, "name": name}
            if resource.namespaced:
                new["metadata"]["namespace"] = namespace
            new["apiVersion"], new["kind"] = resource.api_version, resource.kind
            body_old = {k: v for k, v in old.items() if k not in ("metadata", "status")}
            body_new = {k: v for k, v in new.items() if k not in ("metadata", "status")}
            if body_old != body_new:
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return copy.deepcopy(old)  # a no-op write does not bump resourceVersion
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        self.objects[key] = new
        self._record(Change(self.rv, "MODIFIED", resource, copy.deepcopy(old), copy.deepcopy(new)))
        return copy.deepcopy(new)

    def patch(self, resource: Resource, namespace: str, name: str, patch: Obj, *, status: bool) -> Obj:
        current = self.get(resource, namespace if resource.namespaced else "", name)
        merged = merge_patch(current, patch)
        if "resourceVersion" not in ((patch.get("metadata") or {}) if isinstance(patch, dict) else {}):
            merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.update(resource, namespace, name, merged, status=status)

    def delete(self, resource: Resource, namespace: str, name: str) -> Obj:
        key = (resource, namespace if resource.namespaced else "", name)
        old = self.objects.pop(key, None)
        if old is None:
            raise ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found')
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record(Change(self.rv, "DELETED", resource, old, gone))
        return copy.deepcopy(gone)

    def compact(self) -> None:
        """Forgets the history: a watch from any resourceVersion older than the current one gets 410."""
        self.compacted = self.rv
        self.history.clear()

    def since(self, resource: Resource, namespace: str | None, rv: int) -> list[Change]:
        if rv < self.compacted:
            raise ApiError(410, "Expired", f"too old resource version: {rv} ({self.compacted})")
        return [
            c
            for c in self.history
            if c.rv > rv and c.resource == resource and (namespace is None or namespace == _ns(c.new))
        ]


def _ns(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")
