"""Service references to backends: port resolution and ready endpoints, straight to pod IPs.

A Service port is found by number or name; its endpoint port comes from the EndpointSlice port of
the same name (or the numeric targetPort). EndpointSlices of one Service merge (label
kubernetes.io/service-name); legacy v1 Endpoints are used when a Service has no EndpointSlice.
Only ready, non-terminating endpoints serve. An ExternalName Service's endpoints are the slice the
controller's resolver publishes for it (sources/externalname.py), at the Service port.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ingressctl.cache import Snapshot
from ingressctl.config import DEFAULT_BALANCING, Backend, Balancing, Endpoint
from ingressctl.model import ENDPOINTS, SERVICE, Key, Obj
from ingressctl.translate import validate
from ingressctl.translate.ingress import ServiceRef
from ingressctl.translate.memo import Memo
from ingressctl.translate.validate import Invalid


@dataclass(frozen=True, slots=True)
class Resolved:
    backend: Backend
    problem: str = ""  # why it cannot serve (missing Service, unknown port...), "" if fine


class BackendResolver:
    """Resolves ServiceRefs against one snapshot; indexes EndpointSlices by Service once."""

    def __init__(self, snapshot: Snapshot, memo: Memo) -> None:
        self._services = snapshot.of(SERVICE)
        self._endpoints = snapshot.of(ENDPOINTS)
        self._slices = snapshot.slices_by_service
        self._memo = memo

    def resolve(self, ref: ServiceRef, *, balancing: Balancing = DEFAULT_BALANCING) -> Resolved:
        key = (ref.namespace, ref.name)
        service = self._services.get(key)
        # The Service's slices as one mapping, which the cache replaces whenever one of them changes.
        slices = self._slices.get(key)
        endpoints = self._endpoints.get(key)
        # One slot per reference: an endpoint change replaces its entry, which kept the old slices.
        return self._memo.latest(
            ("backend", ref, balancing),
            (id(service), id(slices), id(endpoints)),
            (service, slices, endpoints),
            lambda: self._resolve(ref, service, slices, endpoints, balancing),
        )

    def _resolve(
        self,
        ref: ServiceRef,
        service: Obj | None,
        by_key: Mapping[Key, Obj] | None,
        endpoints_obj: Obj | None,
        balancing: Balancing,
    ) -> Resolved:
        slices = tuple(v for _, v in sorted((by_key or {}).items()))
        if service is None:
            return Resolved(Backend(f"{ref.namespace}/{ref.name}:{ref.port}", ()), "Service not found")
        spec = _mapping(service.get("spec"))
        unresolved = Backend(f"{ref.namespace}/{ref.name}:{ref.port}", ())
        external = spec.get("type") == "ExternalName"
        if external:
            problem = _external_name_problem(spec.get("externalName"))
            if problem:
                return Resolved(unresolved, problem)
        port = _find_port(_objects(spec.get("ports")), ref.port)
        if port is None and external and isinstance(ref.port, int):
            port = {"port": ref.port}  # an ExternalName Service needs no ports: the Ingress names the number
        if port is None:
            return Resolved(unresolved, f"Service has no port {ref.port!r}")
        try:
            # The number names the backend, which nginx.conf carries: a Service read from a manifest is
            # not schema-checked, and one bad port must not make render refuse everyone's configuration.
            number = validate.port_number(port.get("port"))
        except Invalid as exc:
            return Resolved(unresolved, f"Service port {ref.port!r}: {exc}")
        name = f"{ref.namespace}/{ref.name}:{number}"
        if external:
            # The controller's resolver (sources/externalname.py) publishes the addresses as a slice;
            # the connection goes to the Service port (there is no targetPort behind a name).
            endpoints = _from_slices(slices, {"port": number})
        elif slices:
            endpoints = _from_slices(slices, port)
        else:
            endpoints = _from_endpoints(endpoints_obj, port)
        settings = balancing if balancing.document() else None
        ordered = tuple(sorted(endpoints, key=_endpoint_order))
        return Resolved(Backend(name, ordered, balancing.algorithm, balancing=settings))


def _external_name_problem(name: object) -> str:
    try:
        if validate.host(name).startswith("*"):
            raise Invalid("a wildcard is not a name to resolve")
    except Invalid as exc:
        return f"ExternalName Service: externalName {exc}"
    return ""


def _endpoint_order(e: Endpoint) -> tuple[int, str, int]:
    return (":" in e.address, e.address, e.port)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _objects(value: object) -> list[Mapping[str, Any]]:
    """The objects of a list field; any other shape reads as absent (manifests are not schema-checked)."""
    return [item for item in _list(value) if isinstance(item, Mapping)]


def _find_port(ports: list[Mapping[str, Any]], want: int | str) -> Mapping[str, Any] | None:
    for port in ports:
        if port.get("port") == want if isinstance(want, int) else port.get("name") == want:
            return port
    return None


def _target_number(service_port: Mapping[str, Any]) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    return target if isinstance(target, int) and not isinstance(target, bool) else None


def _endpoint_port(ports: list[Mapping[str, Any]], service_port: Mapping[str, Any]) -> int | None:
    want = service_port.get("name") or ""
    for port in ports:
        if (port.get("name") or "") == want and port.get("port") is not None:
            value = port["port"]
            return value if isinstance(value, int) else None
    return _target_number(service_port)


def _add(out: set[Endpoint], address: object, port: int | None) -> None:
    if port is None:
        return
    with contextlib.suppress(Invalid):  # malformed addresses never reach the balancer
        out.add(Endpoint(validate.ip_address(address), validate.port_number(port)))


def _from_slices(slices: tuple[Obj, ...], service_port: Mapping[str, Any]) -> set[Endpoint]:
    out: set[Endpoint] = set()
    for obj in slices:
        if obj.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        port = _endpoint_port(_objects(obj.get("ports")), service_port)
        for endpoint in _objects(obj.get("endpoints")):
            conditions = _mapping(endpoint.get("conditions"))
            # A nil `ready` means unknown and is treated as ready, as kube-proxy does.
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            for address in _list(endpoint.get("addresses")):
                _add(out, address, port)
    return out


def _from_endpoints(obj: Obj | None, service_port: Mapping[str, Any]) -> set[Endpoint]:
    out: set[Endpoint] = set()
    for subset in _objects(_mapping(obj).get("subsets")):
        port = _endpoint_port(_objects(subset.get("ports")), service_port)
        for address in _objects(subset.get("addresses")):
            _add(out, address.get("ip"), port)
    return out
