"""Parsing one Ingress (networking.k8s.io/v1 shape) into validated, normalised routing data.

Every string that could reach nginx.conf is checked here; an Ingress with any invalid field is
rejected whole, with the field named, and the caller reports it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from ingressctl.config import ObjectRef
from ingressctl.model import INGRESS, Obj
from ingressctl.translate import validate
from ingressctl.translate.annotations import EMPTY, Read
from ingressctl.translate.annotations.values import regex_path
from ingressctl.translate.validate import Invalid

EXACT = "Exact"
PREFIX = "Prefix"
IMPLEMENTATION_SPECIFIC = "ImplementationSpecific"
PATH_TYPES = (EXACT, PREFIX, IMPLEMENTATION_SPECIFIC)


class InvalidField(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ServiceRef:
    namespace: str
    name: str
    port: int | str  # number or port name
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.namespace, self.name, self.port)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True)
class PathRule:
    path: str
    path_type: str
    backend: ServiceRef


@dataclass(frozen=True, slots=True)
class Rule:
    host: str  # "" matches any host
    paths: tuple[PathRule, ...]


@dataclass(frozen=True, slots=True)
class TLS:
    hosts: tuple[str, ...]
    secret: str  # "" = the default certificate


@dataclass(frozen=True, slots=True)
class Route:
    """One path of one rule, with the field that names it in problems."""

    host: str
    path: str
    path_type: str
    backend: ServiceRef
    field: str  # spec.rules[i].http.paths[j]


@dataclass(frozen=True, slots=True)
class ParsedIngress:
    ref: ObjectRef
    # creationTimestamp, UID, namespace, name: older sorts first (the manifests source has no UID).
    order: tuple[str, str, str, str]
    rules: tuple[Rule, ...]
    default_backend: ServiceRef | None
    tls: tuple[TLS, ...]
    annotations: Read = field(default=EMPTY, compare=False)  # what its annotations say, typed
    # Derived from rules: every path in order, and the named hosts (sorted, once each).
    routes: tuple[Route, ...] = field(init=False, repr=False, compare=False)
    hosts: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        routes = tuple(
            Route(rule.host, p.path, p.path_type, p.backend, sys.intern(f"spec.rules[{i}].http.paths[{j}]"))
            for i, rule in enumerate(self.rules)
            for j, p in enumerate(rule.paths)
        )
        object.__setattr__(self, "routes", routes)
        object.__setattr__(self, "hosts", tuple(sorted({r.host for r in self.rules if r.host})))


def ingress_ref(obj: Obj) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(INGRESS, str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


def _check(field: str, check: Any, value: object) -> Any:
    try:
        return check(value)
    except Invalid as exc:
        raise InvalidField(field, str(exc)) from None


def _list(value: Any, field: str) -> list[Any]:
    """An optional list: absent is empty; any other shape (a string, a number) is invalid."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidField(field, "must be a list")
    return value


def _backend(namespace: str, spec: Any, field: str) -> ServiceRef:
    if not isinstance(spec, dict):
        raise InvalidField(field, "must be an object")
    if spec.get("resource") is not None:
        raise InvalidField(f"{field}.resource", "resource backends are not supported")
    service = spec.get("service")
    if not isinstance(service, dict):
        raise InvalidField(f"{field}.service", "is required")
    name = _check(f"{field}.service.name", validate.service_name, service.get("name"))
    port = service.get("port")
    if not isinstance(port, dict):
        raise InvalidField(f"{field}.service.port", "is required")
    if port.get("number") is not None:
        value: int | str = _check(f"{field}.service.port.number", validate.port_number, port["number"])
    elif port.get("name") is not None:
        value = _check(f"{field}.service.port.name", validate.port_name, port["name"])
    else:
        raise InvalidField(f"{field}.service.port", "needs a number or a name")
    return ServiceRef(namespace, name, value)


def _path(namespace: str, spec: Any, field: str, *, regex: bool = False) -> PathRule:
    if not isinstance(spec, dict):
        raise InvalidField(field, "must be an object")
    path_type = spec.get("pathType")
    if path_type is None:
        # The API server requires it on networking.k8s.io/v1 (the v1beta1 conversion sets it).
        raise InvalidField(f"{field}.pathType", f"is required: one of {', '.join(PATH_TYPES)}")
    if path_type not in PATH_TYPES:
        raise InvalidField(f"{field}.pathType", f"{path_type!r} is not one of {', '.join(PATH_TYPES)}")
    raw = spec.get("path")
    if raw is None and path_type == IMPLEMENTATION_SPECIFIC:
        raw = "/"
    if regex and path_type != EXACT:  # use-regex: Prefix and ImplementationSpecific paths are regexes
        return PathRule(
            _check(f"{field}.path", regex_path, raw),
            path_type,
            _backend(namespace, spec.get("backend"), f"{field}.backend"),
        )
    path = _check(f"{field}.path", validate.path, raw)
    if path_type == PREFIX and len(path) > 1:
        path = path.rstrip("/")
    return PathRule(path, path_type, _backend(namespace, spec.get("backend"), f"{field}.backend"))


def parse(obj: Obj, annotations: Read = EMPTY) -> ParsedIngress:
    """Validates and normalises one Ingress; raises InvalidField naming the first bad field.
    `annotations` (read first) say whether its paths are regexes, and go with the result."""
    ref = ingress_ref(obj)
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        raise InvalidField("spec", "must be an object")
    rules: list[Rule] = []
    for i, rule in enumerate(_list(spec.get("rules"), "spec.rules")):
        field = f"spec.rules[{i}]"
        if not isinstance(rule, dict):
            raise InvalidField(field, "must be an object")
        host = "" if rule.get("host") in (None, "") else _check(f"{field}.host", validate.rule_host, rule["host"])
        http = rule.get("http") or {}
        if not isinstance(http, dict):
            raise InvalidField(f"{field}.http", "must be an object")
        paths = tuple(
            _path(ref.namespace, p, f"{field}.http.paths[{j}]", regex=annotations.regex)
            for j, p in enumerate(_list(http.get("paths"), f"{field}.http.paths"))
        )
        rules.append(Rule(host, paths))
    default = spec.get("defaultBackend")
    default_backend = None if default is None else _backend(ref.namespace, default, "spec.defaultBackend")
    tls: list[TLS] = []
    for i, entry in enumerate(_list(spec.get("tls"), "spec.tls")):
        field = f"spec.tls[{i}]"
        if not isinstance(entry, dict):
            raise InvalidField(field, "must be an object")
        hosts = tuple(
            _check(f"{field}.hosts[{j}]", validate.host, h)
            for j, h in enumerate(_list(entry.get("hosts"), f"{field}.hosts"))
        )
        secret = entry.get("secretName") or ""
        if secret:
            _check(f"{field}.secretName", lambda v: validate.name(v, "Secret name"), secret)
        tls.append(TLS(hosts, secret))
    order = (str(meta.get("creationTimestamp") or ""), str(meta.get("uid") or ""), ref.namespace, ref.name)
    return ParsedIngress(ref, order, tuple(rules), default_backend, tuple(tls), annotations)
