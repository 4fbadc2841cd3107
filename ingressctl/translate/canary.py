"""Canary Ingresses (ingress-nginx's `canary` annotations): merging them into the main Ingresses' routes.

A canary Ingress adds no route and owns no host. Each of its paths finds the route of the same host
and path that a main Ingress serves; that route's backend becomes a canary backend named
`<main>~<canary>~<canary Ingress namespace/name>` (one per canary Ingress and pair of Services), with
no endpoints of its own and a Canary policy that the balancer (lua/ingressctl/canary.lua) reads per
request: header, then cookie, then weight choose the canary or the main backend. Changing the policy
(weight, header, cookie) changes only that backend's data: a Lua update, never a reload. Adding or
removing a canary renames the route's backend in nginx.conf (one reload).

A canary path with no main route is reported and not served (ingress-nginx drops it with a log line);
a second canary for the same route is reported (the older wins, as ingress-nginx allows one per rule).
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ingressctl.config import Backend, Balancing, Canary, ObjectRef, Policy
from ingressctl.translate import ingress as ing
from ingressctl.translate.annotations import balancing as lb
from ingressctl.translate.annotations import field_of

SEPARATOR = "~"  # between the parts of a canary backend's name
MIN_TOTAL = 100  # ingress-nginx counts a canary-weight-total below 100 as 100

# What a route asks for (build.Target): a backend name, or (name, location policy).
Target = str | None | tuple[str | None, Policy | None]


class Builder(Protocol):
    """What merging needs of translate's builder."""

    backends: dict[str, Backend]

    def problem(self, ref: ObjectRef, *, where: str, reason: str) -> None: ...

    def use(
        self,
        ref: ing.ServiceRef,
        *,
        owner: ObjectRef,
        where: str,
        suffix: str = "",
        balancing: Balancing | None = None,
    ) -> str: ...


def is_canary(p: ing.ParsedIngress) -> bool:
    return p.annotations.values.get("canary") is True


def settings(values: Mapping[str, Any], keys: Mapping[str, str]) -> tuple[Canary | None, tuple[str, str] | None]:
    """The policy of a canary Ingress's annotations (its backends left empty: each route fills them in),
    or None and (field, reason) that rejects it."""
    total = max(values.get("canary-weight-total", 100), MIN_TOTAL)
    weight = values.get("canary-weight", 0)
    if weight > total:
        return None, (field_of(keys["canary-weight"]), f"{weight} is more than canary-weight-total ({total})")
    return (
        Canary(
            main="",
            backend="",
            header=values.get("canary-by-header"),
            header_value=values.get("canary-by-header-value"),
            header_pattern=None if "canary-by-header-value" in values else values.get("canary-by-header-pattern"),
            cookie=values.get("canary-by-cookie"),
            weight=weight,
            weight_total=total,
        ),
        None,
    )


def merge(
    b: Builder,
    canaries: list[ing.ParsedIngress],
    *,
    routes: Mapping[str, dict[tuple[str, str], Target]],
    touch: Callable[[str, ObjectRef], None],
) -> list[ObjectRef]:
    """Gives the main routes (`routes`: host -> (path, type) -> target, changed in place) their canary
    backends, canary Ingresses oldest first; returns the canaries that serve at least one route."""
    taken: dict[tuple[str, tuple[str, str]], ObjectRef] = {}
    serving: list[ObjectRef] = []
    for p in canaries:
        policy, rejected = settings(p.annotations.values, p.annotations.keys)
        if policy is None:
            assert rejected is not None
            b.problem(p.ref, where=rejected[0], reason=f"{rejected[1]}; Ingress rejected")
            continue
        unused = _unused(p)
        if unused:
            b.problem(p.ref, where=unused, reason="not used on a canary Ingress (the main Ingress's apply)")
        served = False
        for route in p.routes:
            host_routes = routes.get(route.host, {})
            keys = [key for key, target in host_routes.items() if key[0] == route.path and _name(target)]
            if not keys:
                b.problem(
                    p.ref,
                    where=route.field,
                    reason=f"canary: no main Ingress serves host {route.host or '*'} path {route.path}; not served",
                )
                continue
            # The canary's own balancing annotations apply to its Service (ingress-nginx keeps them too).
            canary = b.use(
                route.backend, owner=p.ref, where=route.field, suffix=".backend", balancing=p.annotations.balancing
            )
            for key in keys:
                if _attach(b, p, route, key, canary=canary, policy=policy, host_routes=host_routes, taken=taken):
                    touch(route.host, p.ref)
                    served = True
        if served:
            serving.append(p.ref)
    return serving


def _attach(
    b: Builder,
    p: ing.ParsedIngress,
    route: ing.Route,
    key: tuple[str, str],
    *,
    canary: str,
    policy: Canary,
    host_routes: dict[tuple[str, str], Target],
    taken: dict[tuple[str, tuple[str, str]], ObjectRef],
) -> bool:
    winner = taken.get((route.host, key))
    if winner is not None:
        b.problem(
            p.ref,
            where=route.field,
            reason=f"canary: host {route.host or '*'} path {route.path} already has the canary Ingress "
            f"{winner.namespace}/{winner.name}, the older one wins",
        )
        return False
    target = host_routes[key]
    main, location = target if isinstance(target, tuple) else (target, None)
    assert main is not None  # merge() keeps only routes with a backend
    name = f"{main}{SEPARATOR}{canary}{SEPARATOR}{p.ref.namespace}/{p.ref.name}"
    backend = Backend(name, (), canary=dataclasses.replace(policy, main=main, backend=canary))
    b.backends[name] = backend
    host_routes[key] = name if location is None else (name, location)
    taken[(route.host, key)] = p.ref
    return True


def _unused(p: ing.ParsedIngress) -> str:
    """The fields of a canary Ingress that do nothing (ingress-nginx ignores them the same way)."""
    fields = [
        field_of(key)
        for name, key in sorted(p.annotations.keys.items())
        if not name.startswith("canary") and name not in lb.NAMES
    ]
    if p.tls:
        fields.append("spec.tls")
    if p.default_backend is not None:
        fields.append("spec.defaultBackend")
    return ", ".join(fields)


def _name(target: Target) -> str | None:
    return target[0] if isinstance(target, tuple) else target
