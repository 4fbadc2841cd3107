"""Service references to backends: port resolution and ready endpoints, straight to pod IPs.

A Service port is found by number or name; its endpoint port comes from the EndpointSlice port of
the same name (or the numeric targetPort). EndpointSlices of one Service merge (label
kubernetes.io/service-name); legacy v1 Endpoints are used when a Service has no EndpointSlice.
Only ready, non-terminating endpoints serve.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ingressctl.cache import Key, Snapshot
from ingressctl.config import Backend, Endpoint
from ingressctl.sources.base import ENDPOINT_SLICE, ENDPOINTS, SERVICE, Obj
from ingressctl.translate import validate
from ingressctl.translate.ingress import ServiceRef
from ingressctl.translate.validate import Invalid

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Resolved:
    backend: Backend
    problem: str = ""  # why it cannot serve (missing Service, unknown port...), "" if fine


class BackendResolver:
    """Resolves ServiceRefs against one snapshot; indexes EndpointSlices by Service once."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._services = snapshot.of(SERVICE)
        self._endpoints = snapshot.of(ENDPOINTS)
        self._slices: dict[Key, list[Obj]] = defaultdict(list)
        for (namespace, _), obj in sorted(snapshot.of(ENDPOINT_SLICE).items()):
            owner = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
            if owner:
                self._slices[(namespace, owner)].append(obj)
        self._memo: dict[ServiceRef, Resolved] = {}

    def resolve(self, ref: ServiceRef) -> Resolved:
        if ref not in self._memo:
            self._memo[ref] = self._resolve(ref)
        return self._memo[ref]

    def _resolve(self, ref: ServiceRef) -> Resolved:
        service = self._services.get((ref.namespace, ref.name))
        if service is None:
            return Resolved(Backend(f"{ref.namespace}/{ref.name}:{ref.port}", ()), "Service not found")
        spec = service.get("spec") or {}
        port = _find_port(spec.get("ports") or [], ref.port)
        if port is None:
            return Resolved(Backend(f"{ref.namespace}/{ref.name}:{ref.port}", ()), f"Service has no port {ref.port!r}")
        name = f"{ref.namespace}/{ref.name}:{port.get('port')}"
        if spec.get("type") == "ExternalName":
            return Resolved(Backend(name, ()), "ExternalName Services are not supported")
        slices = self._slices.get((ref.namespace, ref.name))
        if slices:
            endpoints = _from_slices(slices, port)
        else:
            endpoints = _from_endpoints(self._endpoints.get((ref.namespace, ref.name)), port)
        return Resolved(Backend(name, tuple(sorted(endpoints, key=_endpoint_order))))


def _endpoint_order(e: Endpoint) -> tuple[int, str, int]:
    return (":" in e.address, e.address, e.port)


def _find_port(ports: list[Any], want: int | str) -> Mapping[str, Any] | None:
    for port in ports:
        if isinstance(port, dict) and (port.get("port") == want if isinstance(want, int) else port.get("name") == want):
            return port
    return None


def _target_number(service_port: Mapping[str, Any]) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    return target if isinstance(target, int) and not isinstance(target, bool) else None


def _endpoint_port(ports: list[Any], service_port: Mapping[str, Any]) -> int | None:
    want = service_port.get("name") or ""
    for port in ports or []:
        if isinstance(port, dict) and (port.get("name") or "") == want and port.get("port") is not None:
            value = port["port"]
            return value if isinstance(value, int) else None
    return _target_number(service_port)


def _add(out: set[Endpoint], address: object, port: int | None) -> None:
    if port is None:
        return
    with contextlib.suppress(Invalid):  # malformed addresses never reach the balancer
        out.add(Endpoint(validate.ip_address(address), validate.port_number(port)))


def _from_slices(slices: list[Obj], service_port: Mapping[str, Any]) -> set[Endpoint]:
    out: set[Endpoint] = set()
    for obj in slices:
        if obj.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        port = _endpoint_port(obj.get("ports") or [], service_port)
        for endpoint in obj.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            # A nil `ready` means unknown and is treated as ready, as kube-proxy does.
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            for address in endpoint.get("addresses") or []:
                _add(out, address, port)
    return out


def _from_endpoints(obj: Obj | None, service_port: Mapping[str, Any]) -> set[Endpoint]:
    out: set[Endpoint] = set()
    for subset in (obj or {}).get("subsets") or []:
        port = _endpoint_port(subset.get("ports") or [], service_port)
        for address in subset.get("addresses") or []:
            _add(out, (address or {}).get("ip"), port)
    return out
