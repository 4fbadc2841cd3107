"""IngressClass selection: which Ingresses this controller serves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingressctl.model import Key, Obj

LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


def _field(obj: Any, key: str) -> Mapping[str, Any]:
    """obj[key] if both are objects, else empty: a malformed object is nobody's, it never raises."""
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def our_classes(classes: Mapping[Key, Obj], controller: str) -> dict[str, Obj]:
    """IngressClasses (by name) whose spec.controller is ours."""
    return {key[1]: obj for key, obj in classes.items() if _field(obj, "spec").get("controller") == controller}


def is_ours(ingress: Obj, *, classes: Mapping[str, Obj], ingress_class: str, watch_without_class: bool) -> bool:
    class_name = _field(ingress, "spec").get("ingressClassName")
    if class_name:
        return isinstance(class_name, str) and class_name in classes
    legacy = _field(_field(ingress, "metadata"), "annotations").get(LEGACY_CLASS_ANNOTATION)
    if legacy is not None:
        return bool(legacy == ingress_class)
    if watch_without_class:
        return True
    return any(
        _field(_field(c, "metadata"), "annotations").get(DEFAULT_CLASS_ANNOTATION) == "true" for c in classes.values()
    )
