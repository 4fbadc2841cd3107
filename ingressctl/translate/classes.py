"""IngressClass selection: which Ingresses this controller serves."""

from __future__ import annotations

from collections.abc import Mapping

from ingressctl.cache import Key
from ingressctl.sources.base import Obj

LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


def our_classes(classes: Mapping[Key, Obj], controller: str) -> dict[str, Obj]:
    """IngressClasses (by name) whose spec.controller is ours."""
    return {key[1]: obj for key, obj in classes.items() if (obj.get("spec") or {}).get("controller") == controller}


def is_ours(ingress: Obj, *, classes: Mapping[str, Obj], ingress_class: str, watch_without_class: bool) -> bool:
    spec = ingress.get("spec") or {}
    class_name = spec.get("ingressClassName")
    if class_name:
        return class_name in classes
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    legacy = annotations.get(LEGACY_CLASS_ANNOTATION)
    if legacy is not None:
        return bool(legacy == ingress_class)
    if watch_without_class:
        return True
    return any(
        ((c.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
        for c in classes.values()
    )
