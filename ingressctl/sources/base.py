"""The source interface: what every producer of Kubernetes objects hands to the cache.

A source only produces events. Objects are plain JSON-shaped dicts exactly as the Kubernetes API
serialises them (camelCase keys, ``metadata``, ``spec``...), whatever the source.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Obj = Mapping[str, Any]

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


class Source(Protocol):
    """Produces events until cancelled. It must emit REPLACED for each kind it serves and then
    one SYNCED once the first full listing is done."""

    def events(self) -> AsyncGenerator[Event, None]: ...
