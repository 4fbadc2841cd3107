"""Translate: the pure function from a cache snapshot and settings to a Configuration.

No I/O, no asyncio, deterministic output. All Kubernetes semantics live in this package.
"""

from ingressctl.translate.build import Settings, Translator, translate, update_endpoints

__all__ = ["Settings", "Translator", "translate", "update_endpoints"]
