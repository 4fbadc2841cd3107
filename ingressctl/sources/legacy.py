"""Conversion of extensions/v1beta1 and networking.k8s.io/v1beta1 Ingresses to the v1 shape."""

from __future__ import annotations

import copy
from typing import Any

from ingressctl.model import Obj

LEGACY_INGRESS_VERSIONS = ("extensions/v1beta1", "networking.k8s.io/v1beta1")


def _backend(old: Any) -> Any:
    if not isinstance(old, dict) or "serviceName" not in old:
        return old
    port = old.get("servicePort")
    port_ref = {"number": port} if isinstance(port, int) else {"name": port}
    if isinstance(port, str) and port.isdigit():
        port_ref = {"number": int(port)}
    return {"service": {"name": old["serviceName"], "port": port_ref}}


def convert_ingress(obj: Obj) -> dict[str, Any]:
    """Returns a networking.k8s.io/v1 Ingress equivalent to a v1beta1 one."""
    new: dict[str, Any] = copy.deepcopy(dict(obj))
    new["apiVersion"] = "networking.k8s.io/v1"
    spec = new.get("spec") or {}
    if "backend" in spec:
        spec["defaultBackend"] = _backend(spec.pop("backend"))
    for rule in spec.get("rules") or []:
        for path in ((rule or {}).get("http") or {}).get("paths") or []:
            if isinstance(path, dict):
                path["backend"] = _backend(path.get("backend"))
                path.setdefault("pathType", "ImplementationSpecific")
    return new
