"""Translate: the pure function from a cache snapshot and settings to a Configuration.

No I/O, no asyncio, deterministic output. All Kubernetes semantics live in this package.
"""

from ingressctl.translate.build import Settings, translate

__all__ = ["Settings", "translate"]
