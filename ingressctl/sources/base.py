"""The source interface: what every producer of Kubernetes objects hands to the cache.

A source only produces events (ingressctl.model.Event); it never writes to the API: leader
election, Ingress status and Events are the write-back side (ingressctl.writeback).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from ingressctl.model import Event


class Source(Protocol):
    """Produces events until cancelled. It must emit REPLACED for each kind it serves and then
    one SYNCED once the first full listing is done."""

    def events(self) -> AsyncGenerator[Event, None]: ...
