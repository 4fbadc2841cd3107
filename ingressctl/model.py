"""The model every layer shares: object kinds, objects, their keys, and the events sources emit.

Objects are plain JSON-shaped dicts exactly as the Kubernetes API serialises them (camelCase keys,
``metadata``, ``spec``...), whatever the source. Nothing here imports another ingressctl module.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = Mapping[str, Any]
Key = tuple[str, str]  # (namespace, name)


def object_key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


# The kinds the controller reads, by the name the cache uses.
INGRESS = "Ingress"
INGRESS_CLASS = "IngressClass"
SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"
ENDPOINTS = "Endpoints"
SECRET = "Secret"
CONFIG_MAP = "ConfigMap"
KINDS = (INGRESS, INGRESS_CLASS, SERVICE, ENDPOINT_SLICE, ENDPOINTS, SECRET, CONFIG_MAP)


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    # The full current set of one kind (a list or relist): replaces everything the cache holds
    # of that kind atomically; objects absent from it are deleted.
    REPLACED = "REPLACED"
    # Every kind of this source has been listed once: the controller may apply its first config.
    SYNCED = "SYNCED"


@dataclass(frozen=True)
class Event:
    type: EventType
    kind: str = ""
    obj: Obj | None = None
    objects: tuple[Obj, ...] = field(default=())
