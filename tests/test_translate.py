"""Table tests for translate(): each named case inserts objects into a Cache and compares the whole
resulting Configuration (static servers, default server, certificates, options, backends, accepted
Ingresses and problems) with one built from the config dataclasses, in the style of Contour's
internal/dag builder tests. The spec is issue 2, "Ingress semantics".
"""

from __future__ import annotations

import base64
import dataclasses
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from ingressctl.cache import Cache
from ingressctl.config import (
    EXACT,
    PREFIX,
    Backend,
    Certificate,
    Configuration,
    Endpoint,
    GlobalOptions,
    Location,
    ObjectRef,
    Problem,
    Server,
    StaticConfig,
    TenancyPolicy,
)
from ingressctl.dataplane.paths import Paths
from ingressctl.dataplane.render import Renderer
from ingressctl.model import Event, EventType
from ingressctl.sources.externalname import endpoint_slice as resolver_slice
from ingressctl.sources.legacy import convert_ingress
from ingressctl.translate import Settings, translate
from ingressctl.translate.memo import Memo
from tests.certs import make_cert
from tests.harness import backend, endpoint_slice, ingress, ingress_class, rule, service

Obj = dict[str, Any]

# --- certificates, generated here (self-signed, small EC keys) ----------------------------------

FALLBACK = Certificate.from_pem(*make_cert("fallback"))
A_PEM = make_cert("a.example.com")
B_PEM = make_cert("b.example.com")
WILD_PEM = make_cert("*.example.com")
DEFAULT_PEM = make_cert("default.example.com")
A_CERT = Certificate.from_pem(*A_PEM)
B_CERT = Certificate.from_pem(*B_PEM)
WILD_CERT = Certificate.from_pem(*WILD_PEM)
DEFAULT_CERT = Certificate.from_pem(*DEFAULT_PEM)


def tls_secret(
    name: str,
    pem: tuple[bytes, bytes],
    *,
    namespace: str = "default",
    secret_type: str = "kubernetes.io/tls",
    crt: str | None = None,
    key: str | None = None,
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": secret_type,
        "data": {
            "tls.crt": crt if crt is not None else base64.b64encode(pem[0]).decode(),
            "tls.key": key if key is not None else base64.b64encode(pem[1]).decode(),
        },
    }


# --- object builders beyond tests.harness -------------------------------------------------------


def ts(day: int) -> str:
    return f"2024-01-{day:02d}T00:00:00Z"


def configmap(data: dict[str, str], *, name: str = "ingressctl", namespace: str = "ingressctl") -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def other_class(name: str = "other", *, default: bool = False) -> Obj:
    obj = ingress_class(name, default=default)
    obj["spec"] = {"controller": "example.com/other"}
    return obj


def service_ports(name: str, ports: list[Obj], *, namespace: str = "default", **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": ports, **spec},
    }


def raw_slice(service_name: str, name: str, ports: list[Obj], endpoints: list[Obj], **extra: Any) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
        **extra,
    }


def host_rule(host: str, *paths: tuple[str, str, Obj]) -> Obj:
    out = rule(None, *paths)
    out["host"] = host
    return out


def simple(name: str, host: str | None, path: str = "/", svc: str = "app", **kwargs: Any) -> Obj:
    """An Ingress with one Prefix rule."""
    return ingress(name, rules=[rule(host, (path, "Prefix", backend(svc)))], **kwargs)


# The usual application: Service app (port 80 "http" -> 8080) with one ready endpoint.
APP = (service("app"), endpoint_slice("app", ["10.0.0.1"]))
APP_BE = "default/app:80"
APP_BACKEND = Backend(APP_BE, (Endpoint("10.0.0.1", 8080),))
OTHER = (service("other"), endpoint_slice("other", ["10.0.1.1"]))
OTHER_BE = "default/other:80"
OTHER_BACKEND = Backend(OTHER_BE, (Endpoint("10.0.1.1", 8080),))
CLASS = ingress_class()

# --- expected values ----------------------------------------------------------------------------


def loc(path: str, backend_name: str | None, match: str = PREFIX) -> Location:
    return Location(path, match, backend_name)


def exact(path: str, backend_name: str | None) -> Location:
    return Location(path, EXACT, backend_name)


def prefix(path: str, backend_name: str | None) -> tuple[Location, Location]:
    """What a Prefix rule becomes: `= /foo` and `/foo/`."""
    return (Location(path, EXACT, backend_name), Location(path + "/", PREFIX, backend_name))


def fallback(backend_name: str | None = None) -> Location:
    return Location("/", PREFIX, backend_name)


def server(
    host: str,
    *locations: Location | tuple[Location, ...],
    name: str | None = None,
    certificate: Certificate | None = None,
    redirect: bool | None = None,
) -> Server:
    flat: list[Location] = []
    for item in locations:
        flat.extend(item if isinstance(item, tuple) else (item,))
    return Server(
        host=host,
        server_name=name or host,
        locations=tuple(flat),
        certificate=certificate.name if certificate else None,
        redirect_https=(certificate is not None) if redirect is None else redirect,
    )


def default_server(*locations: Location | tuple[Location, ...]) -> Server:
    return server("", *(locations or (fallback(),)), name="_", redirect=False)


def problem(
    name: str, where: str, reason: str | Matching, *, namespace: str = "default", kind: str = "Ingress"
) -> Problem:
    return Problem(ObjectRef(kind, namespace, name), where, reason)  # type: ignore[arg-type]


def ing(name: str, namespace: str = "default") -> ObjectRef:
    return ObjectRef("Ingress", namespace, name)


class Matching:
    """Equal to any string that fully matches a regex: for reasons that quote a library's error text."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and re.fullmatch(self.pattern, other, re.S) is not None

    def __hash__(self) -> int:
        return hash(self.pattern)

    def __repr__(self) -> str:
        return f"Matching({self.pattern!r})"


def config(
    *servers: Server,
    default: Server | None = None,
    backends: Iterable[Backend] = (),
    ingresses: Iterable[ObjectRef] = (),
    problems: Sequence[Problem] = (),
    certificates: Iterable[Certificate] = (),
    default_certificate: Certificate = FALLBACK,
    options: GlobalOptions | None = None,
) -> Configuration:
    certs = {default_certificate.name: default_certificate, FALLBACK.name: FALLBACK}  # FALLBACK: the SSL context's
    certs.update({c.name: c for c in certificates})
    return Configuration(
        static=StaticConfig(
            servers=servers,
            default_server=default or default_server(),
            certificates=tuple(sorted(certs.values(), key=lambda c: c.name)),
            default_certificate=default_certificate.name,
            options=options or GlobalOptions(),
            context_certificate=FALLBACK.name,
        ),
        backends=tuple(sorted(backends, key=lambda b: b.name)),
        ingresses=tuple(sorted(ingresses, key=lambda r: (r.namespace, r.name))),
        problems=tuple(problems),
    )


EMPTY = config()

# --- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    objects: Sequence[Obj]
    want: Configuration
    settings: dict[str, Any] = field(default_factory=dict)


def run(objects: Iterable[Obj], **settings: Any) -> Configuration:
    cache = Cache()
    for obj in objects:
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    return translate(cache.snapshot(), Settings(fallback_certificate=FALLBACK, **settings))


def without_routes(c: Configuration) -> Configuration:
    """The tables here write locations without their route ids (tests/test_metrics_routes.py checks those)."""

    def strip(server: Server) -> Server:
        return dataclasses.replace(server, locations=tuple(dataclasses.replace(x, route="") for x in server.locations))

    static = dataclasses.replace(
        c.static, servers=tuple(strip(s) for s in c.static.servers), default_server=strip(c.static.default_server)
    )
    return dataclasses.replace(c, static=static)


def assert_config(got: Configuration, want: Configuration) -> None:
    got = without_routes(got)
    # Field by field first, for a readable failure; then the whole value.
    assert got.problems == want.problems
    assert got.static.servers == want.static.servers
    assert got.static.default_server == want.static.default_server
    assert got.backends == want.backends
    assert got.ingresses == want.ingresses
    assert got.static.options == want.static.options
    assert [c.name for c in got.static.certificates] == [c.name for c in want.static.certificates]
    assert got.static.default_certificate == want.static.default_certificate
    assert got == want


SERVED_A = config(server("a.example.com", loc("/", APP_BE)), backends=[APP_BACKEND], ingresses=[ing("a")])
LEGACY_CLASS = "kubernetes.io/ingress.class"
WILDCARD_NAME = r"~^[^.]+\.example\.com$"

CLASS_CASES: dict[str, Case] = {
    "class/ingressClassName-names-our-class": Case([CLASS, *APP, simple("a", "a.example.com")], SERVED_A),
    "class/ingressClassName-of-another-controller-ignored": Case(
        [CLASS, other_class(), *APP, simple("a", "a.example.com", class_name="other")], EMPTY
    ),
    "class/unknown-class-name-ignored": Case([CLASS, *APP, simple("a", "a.example.com", class_name="missing")], EMPTY),
    "class/class-name-without-the-ingressclass-object-ignored": Case([*APP, simple("a", "a.example.com")], EMPTY),
    "class/no-class-and-our-default-class": Case(
        [ingress_class(default=True), *APP, simple("a", "a.example.com", class_name=None)], SERVED_A
    ),
    "class/no-class-and-another-controllers-default-class-ignored": Case(
        [CLASS, other_class(default=True), *APP, simple("a", "a.example.com", class_name=None)], EMPTY
    ),
    "class/no-class-and-no-default-class-ignored": Case(
        [CLASS, *APP, simple("a", "a.example.com", class_name=None)], EMPTY
    ),
    "class/legacy-annotation-ours": Case(
        [*APP, simple("a", "a.example.com", class_name=None, annotations={LEGACY_CLASS: "ingressctl"})], SERVED_A
    ),
    "class/legacy-annotation-of-another-class-ignored-even-with-default-and-watch": Case(
        [
            ingress_class(default=True),
            *APP,
            simple("a", "a.example.com", class_name=None, annotations={LEGACY_CLASS: "nginx"}),
        ],
        EMPTY,
        {"watch_without_class": True},
    ),
    "class/watch-without-class": Case(
        [*APP, simple("a", "a.example.com", class_name=None)], SERVED_A, {"watch_without_class": True}
    ),
    "class/watch-without-class-still-ignores-other-classes": Case(
        [other_class(), *APP, simple("a", "a.example.com", class_name="other")], EMPTY, {"watch_without_class": True}
    ),
    "class/controller-class-and-ingress-class-flags": Case(
        [
            CLASS,  # controller ingressctl.io/controller: not ours with these flags
            other_class("theirs"),  # controller example.com/other: ours
            *APP,
            *OTHER,
            simple("a", "a.example.com"),
            simple("b", "b.example.com", class_name="theirs"),
            simple("c", "c.example.com", svc="other", class_name=None, annotations={LEGACY_CLASS: "mine"}),
        ],
        config(
            server("b.example.com", loc("/", APP_BE)),
            server("c.example.com", loc("/", OTHER_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("b"), ing("c")],
        ),
        {"controller_class": "example.com/other", "ingress_class": "mine"},
    ),
}

HOST_CASES: dict[str, Case] = {
    "hosts/exact": Case([CLASS, *APP, simple("a", "a.example.com")], SERVED_A),
    "hosts/wildcard-is-a-one-label-regex": Case(
        [CLASS, *APP, simple("a", "*.example.com")],
        config(
            server("*.example.com", loc("/", APP_BE), name=WILDCARD_NAME),
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "hosts/exact-and-wildcard-are-separate-servers": Case(
        [CLASS, *APP, *OTHER, simple("w", "*.example.com"), simple("e", "foo.example.com", svc="other")],
        config(
            server("*.example.com", loc("/", APP_BE), name=WILDCARD_NAME),
            server("foo.example.com", loc("/", OTHER_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("e"), ing("w")],
        ),
    ),
    "hosts/case-insensitive-lower-cased-and-merged": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress("a", rules=[rule("A.Example.COM", ("/a", "Prefix", backend("app")))]),
            ingress("b", rules=[rule("a.example.com", ("/b", "Exact", backend("other")))]),
            simple("w", "*.EXAMPLE.org"),
        ],
        config(
            server("*.example.org", loc("/", APP_BE), name=r"~^[^.]+\.example\.org$"),
            server("a.example.com", fallback(), prefix("/a", APP_BE), exact("/b", OTHER_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a"), ing("b"), ing("w")],
        ),
    ),
    "hosts/no-host-goes-to-the-default-server-only": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress("a", rules=[rule(None, ("/foo", "Prefix", backend("app")))]),
            ingress("b", rules=[host_rule("", ("/bar", "Exact", backend("other")))]),
            simple("c", "a.example.com", path="/x"),
        ],
        config(
            server("a.example.com", fallback(), prefix("/x", APP_BE)),
            default=default_server(fallback(), exact("/bar", OTHER_BE), prefix("/foo", APP_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a"), ing("b"), ing("c")],
        ),
    ),
}

PATH_CASES: dict[str, Case] = {
    "paths/exact-keeps-its-trailing-slash": Case(
        [
            CLASS,
            *APP,
            ingress(
                "a",
                rules=[rule("a.example.com", ("/foo", "Exact", backend("app")), ("/bar/", "Exact", backend("app")))],
            ),
        ],
        config(
            # `/bar` gets what the other rules give it (here the 404 fallback), not nginx's 301 to `/bar/`.
            server("a.example.com", fallback(), exact("/bar", None), exact("/bar/", APP_BE), exact("/foo", APP_BE)),
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "paths/exact-with-trailing-slash-leaves-its-bare-form-to-a-prefix": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress(
                "a",
                rules=[
                    rule(
                        "a.example.com",
                        ("/api/v1/", "Exact", backend("app")),
                        ("/api", "Prefix", backend("other")),
                        ("/docs/", "ImplementationSpecific", backend("app")),
                    )
                ],
            ),
        ],
        config(
            server(
                "a.example.com",
                fallback(),
                prefix("/api", OTHER_BE),
                exact("/api/v1", OTHER_BE),  # what `/api/` (the longest prefix) gives it
                exact("/api/v1/", APP_BE),
                exact("/docs", None),
                Location("/docs/", PREFIX, APP_BE),
            ),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "paths/are-case-sensitive": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress(
                "a",
                rules=[rule("a.example.com", ("/Foo", "Exact", backend("app")), ("/foo", "Prefix", backend("other")))],
            ),
        ],
        config(
            server("a.example.com", fallback(), exact("/Foo", APP_BE), prefix("/foo", OTHER_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "paths/prefix-is-element-wise": Case(
        [CLASS, *APP, simple("a", "a.example.com", path="/foo")],
        config(
            server("a.example.com", fallback(), prefix("/foo", APP_BE)), backends=[APP_BACKEND], ingresses=[ing("a")]
        ),
    ),
    "paths/prefix-trailing-slash-ignored": Case(
        [
            CLASS,
            *APP,
            ingress(
                "a",
                rules=[
                    rule("a.example.com", ("/foo/", "Prefix", backend("app")), ("/foo/bar/", "Prefix", backend("app")))
                ],
            ),
        ],
        config(
            server("a.example.com", fallback(), prefix("/foo", APP_BE), prefix("/foo/bar", APP_BE)),
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "paths/prefix-root-replaces-the-fallback": Case(
        [CLASS, *APP, *OTHER, simple("a", "a.example.com", default_backend=backend("other"))],
        config(
            server("a.example.com", loc("/", APP_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "paths/implementation-specific-is-a-plain-prefix": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress(
                "a",
                rules=[
                    {
                        "host": "a.example.com",
                        "http": {
                            "paths": [
                                {"path": "/foo", "pathType": "ImplementationSpecific", "backend": backend("app")},
                                {"pathType": "ImplementationSpecific", "backend": backend("other")},
                                {"path": "/bar/", "pathType": "ImplementationSpecific", "backend": backend("app")},
                            ]
                        },
                    }
                ],
            ),
        ],
        config(
            # `/bar` is not under the plain prefix `/bar/`: it gets what `/` gives it, not a 301.
            server(
                "a.example.com", loc("/", OTHER_BE), exact("/bar", OTHER_BE), loc("/bar/", APP_BE), loc("/foo", APP_BE)
            ),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "paths/nested-prefixes-longest-match": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress(
                "a",
                rules=[
                    rule("a.example.com", ("/foo", "Prefix", backend("app")), ("/foo/bar", "Prefix", backend("other")))
                ],
            ),
        ],
        config(
            server("a.example.com", fallback(), prefix("/foo", APP_BE), prefix("/foo/bar", OTHER_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "paths/exact-beats-prefix-on-the-same-path-even-from-a-newer-ingress": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            simple("old", "a.example.com", path="/foo", svc="other", created=ts(1)),
            ingress("new", rules=[rule("a.example.com", ("/foo", "Exact", backend("app")))], created=ts(2)),
        ],
        config(
            server("a.example.com", fallback(), exact("/foo", APP_BE), loc("/foo/", OTHER_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("new"), ing("old")],
        ),
    ),
    "paths/prefix-and-implementation-specific-on-one-path-coexist": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress(
                "a",
                rules=[
                    rule(
                        "a.example.com",
                        ("/foo", "Prefix", backend("app")),
                        ("/foo", "ImplementationSpecific", backend("other")),
                    )
                ],
            ),
        ],
        config(
            server("a.example.com", fallback(), loc("/foo", OTHER_BE), prefix("/foo", APP_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "paths/rules-for-one-host-from-several-ingresses-merge": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            simple("a", "a.example.com", path="/a"),
            simple("b", "a.example.com", path="/b", svc="other"),
            simple("c", "b.example.com"),
        ],
        config(
            server("a.example.com", fallback(), prefix("/a", APP_BE), prefix("/b", OTHER_BE)),
            server("b.example.com", loc("/", APP_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a"), ing("b"), ing("c")],
        ),
    ),
    "paths/conflict-oldest-by-creation-timestamp-wins-and-the-other-is-reported": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress(
                "aaa",
                rules=[rule("a.example.com", ("/", "Prefix", backend("app")), ("/mine", "Prefix", backend("app")))],
                created=ts(2),
            ),
            simple("zzz", "a.example.com", svc="other", created=ts(1)),
        ],
        config(
            server("a.example.com", loc("/", OTHER_BE), prefix("/mine", APP_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("aaa"), ing("zzz")],
            problems=[
                problem(
                    "aaa",
                    "spec.rules[0].http.paths[0]",
                    "host a.example.com path / (Prefix) is already served by Ingress default/zzz, the older one wins",
                )
            ],
        ),
    ),
    "paths/conflict-same-timestamp-lowest-namespace-wins": Case(
        [
            CLASS,
            service("app", namespace="team-a"),
            service("app", namespace="team-b"),
            simple("z", "a.example.com", namespace="team-a", created=ts(1)),
            simple("a", "a.example.com", namespace="team-b", created=ts(1)),
        ],
        config(
            server("a.example.com", loc("/", "team-a/app:80")),
            backends=[Backend("team-a/app:80", ())],
            ingresses=[ing("z", "team-a"), ing("a", "team-b")],
            problems=[
                problem(
                    "a",
                    "spec.rules[0].http.paths[0]",
                    "host a.example.com path / (Prefix) is already served by Ingress team-a/z, the older one wins",
                    namespace="team-b",
                )
            ],
        ),
        # Namespaces share hosts only where the policy allows it (tests/test_tenants.py: the default).
        settings={"tenancy": TenancyPolicy(allow_cross_namespace_hosts=True)},
    ),
    "paths/conflict-same-timestamp-and-namespace-lowest-name-wins": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            simple("b", "a.example.com", svc="other", created=ts(1)),
            simple("a", "a.example.com", created=ts(1)),
        ],
        config(
            server("a.example.com", loc("/", APP_BE)),
            backends=[APP_BACKEND],
            ingresses=[ing("a"), ing("b")],
            problems=[
                problem(
                    "b",
                    "spec.rules[0].http.paths[0]",
                    "host a.example.com path / (Prefix) is already served by Ingress default/a, the older one wins",
                )
            ],
        ),
    ),
    "paths/conflict-prefix-with-and-without-trailing-slash-is-one-rule": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            simple("old", "a.example.com", path="/foo", created=ts(1)),
            simple("new", "a.example.com", path="/foo/", svc="other", created=ts(2)),
        ],
        config(
            server("a.example.com", fallback(), prefix("/foo", APP_BE)),
            backends=[APP_BACKEND],
            ingresses=[ing("new"), ing("old")],
            problems=[
                problem(
                    "new",
                    "spec.rules[0].http.paths[0]",
                    "host a.example.com path /foo (Prefix) is already served by Ingress default/old, "
                    "the older one wins",
                )
            ],
        ),
    ),
    "paths/conflict-without-host": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress("old", rules=[rule(None, ("/x", "Exact", backend("app")))], created=ts(1)),
            ingress("new", rules=[rule(None, ("/x", "Exact", backend("other")))], created=ts(2)),
        ],
        config(
            default=default_server(fallback(), exact("/x", APP_BE)),
            backends=[APP_BACKEND],
            ingresses=[ing("new"), ing("old")],
            problems=[
                problem(
                    "new",
                    "spec.rules[0].http.paths[0]",
                    "host * path /x (Exact) is already served by Ingress default/old, the older one wins",
                )
            ],
        ),
    ),
}

TWO_PORTS = service_ports(
    "app",
    [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "admin", "port": 9000, "targetPort": "admin-port"}],
    selector={"app": "app"},
    clusterIP="10.96.0.10",
)
TWO_PORTS_SLICE = raw_slice(
    "app",
    "app-x1",
    [{"name": "http", "port": 8080}, {"name": "admin", "port": 9001}],
    [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
)


def paths_ingress(name: str, *paths: tuple[str, str, Obj], host: str = "a.example.com", **kwargs: Any) -> Obj:
    return ingress(name, rules=[rule(host, *paths)], **kwargs)


def endpoints_v1(name: str, ready: list[str], not_ready: list[str], port: int = 8080) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": "default"},
        "subsets": [
            {
                "addresses": [{"ip": a} for a in ready],
                "notReadyAddresses": [{"ip": a} for a in not_ready],
                "ports": [{"name": "http", "port": port}],
            }
        ],
    }


def eps(*addresses: str, port: int = 8080) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(a, port) for a in addresses)


BACKEND_CASES: dict[str, Case] = {
    "backends/port-by-number-and-by-name-target-port-name-via-slice-port-name": Case(
        [
            CLASS,
            TWO_PORTS,
            TWO_PORTS_SLICE,
            paths_ingress(
                "a",
                ("/http", "Prefix", backend("app", "http")),
                ("/name", "Prefix", backend("app", "admin")),
                ("/num", "Prefix", backend("app", 9000)),
            ),
        ],
        config(
            server(
                "a.example.com",
                fallback(),
                prefix("/http", APP_BE),
                prefix("/name", "default/app:9000"),
                prefix("/num", "default/app:9000"),
            ),
            # Straight to the pod IPs with the EndpointSlice port, never the cluster IP.
            backends=[Backend(APP_BE, eps("10.0.0.1")), Backend("default/app:9000", eps("10.0.0.1", port=9001))],
            ingresses=[ing("a")],
        ),
    ),
    "backends/unnamed-service-port-numeric-target-port": Case(
        [
            CLASS,
            service("app", target=9376, port_name=None),
            endpoint_slice("app", ["10.0.0.1"], port=9376, port_name=None),
            simple("a", "a.example.com"),
        ],
        config(
            server("a.example.com", loc("/", APP_BE)),
            backends=[Backend(APP_BE, eps("10.0.0.1", port=9376))],
            ingresses=[ing("a")],
        ),
    ),
    "backends/several-slices-of-one-service-merge-by-label": Case(
        [
            CLASS,
            service("app"),
            endpoint_slice("app", ["10.0.0.2", "10.0.0.1"], name="app-1"),
            endpoint_slice("app", ["10.0.0.3", "10.0.0.1"], name="app-2"),
            endpoint_slice("app", ["10.9.9.9"], name="app-3", namespace="elsewhere"),
            endpoint_slice("other", ["10.0.1.1"], name="app-4"),
            simple("a", "a.example.com"),
        ],
        config(
            server("a.example.com", loc("/", APP_BE)),
            backends=[Backend(APP_BE, eps("10.0.0.1", "10.0.0.2", "10.0.0.3"))],
            ingresses=[ing("a")],
        ),
    ),
    "backends/only-ready-non-terminating-endpoints-nil-ready-is-ready": Case(
        [
            CLASS,
            service("app"),
            raw_slice(
                "app",
                "app-x1",
                [{"name": "http", "port": 8080}],
                [
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                    {"addresses": ["10.0.0.3"], "conditions": {"ready": True, "terminating": True}},
                    {"addresses": ["10.0.0.4"], "conditions": {"serving": True}},
                    {"addresses": ["10.0.0.5"]},
                    {"addresses": ["10.0.0.6"], "conditions": {"ready": False, "serving": True, "terminating": True}},
                ],
            ),
            simple("a", "a.example.com"),
        ],
        config(
            server("a.example.com", loc("/", APP_BE)),
            backends=[Backend(APP_BE, eps("10.0.0.1", "10.0.0.4", "10.0.0.5"))],
            ingresses=[ing("a")],
        ),
    ),
    "backends/no-ready-endpoint-is-an-empty-backend-without-problem": Case(
        [
            CLASS,
            service("app"),
            endpoint_slice("app", ["10.0.0.1"], not_ready=("10.0.0.1",)),
            *OTHER,
            paths_ingress("a", ("/down", "Prefix", backend("app")), ("/up", "Prefix", backend("other"))),
        ],
        config(
            server("a.example.com", fallback(), prefix("/down", APP_BE), prefix("/up", OTHER_BE)),
            backends=[Backend(APP_BE, ()), OTHER_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "backends/ipv6-slices-merge-after-ipv4-fqdn-slices-and-bad-addresses-skipped": Case(
        [
            CLASS,
            service("app"),
            endpoint_slice("app", ["10.0.0.2"], name="app-v4"),
            raw_slice(
                "app",
                "app-v6",
                [{"name": "http", "port": 8080}],
                [{"addresses": ["fd00::1"]}, {"addresses": ["10.0.0.3; drop", "not-an-ip"]}],
                addressType="IPv6",
            ),
            raw_slice(
                "app",
                "app-fqdn",
                [{"name": "http", "port": 8080}],
                [{"addresses": ["pod.example.com"]}],
                addressType="FQDN",
            ),
            simple("a", "a.example.com"),
        ],
        config(
            server("a.example.com", loc("/", APP_BE)),
            backends=[Backend(APP_BE, eps("10.0.0.2", "fd00::1"))],
            ingresses=[ing("a")],
        ),
    ),
    "backends/selector-less-service-with-hand-written-slice": Case(
        [
            CLASS,
            service_ports("db", [{"name": "web", "port": 80, "targetPort": 5000}]),
            raw_slice("db", "db-manual", [{"name": "web", "port": 5000}], [{"addresses": ["192.0.2.10"]}]),
            simple("a", "a.example.com", svc="db"),
        ],
        config(
            server("a.example.com", loc("/", "default/db:80")),
            backends=[Backend("default/db:80", eps("192.0.2.10", port=5000))],
            ingresses=[ing("a")],
        ),
    ),
    "backends/legacy-v1-endpoints-ready-addresses-only": Case(
        [
            CLASS,
            service("app"),
            endpoints_v1("app", ["10.0.0.2", "10.0.0.1"], ["10.0.0.3"]),
            simple("a", "a.example.com"),
        ],
        config(
            server("a.example.com", loc("/", APP_BE)),
            backends=[Backend(APP_BE, eps("10.0.0.1", "10.0.0.2"))],
            ingresses=[ing("a")],
        ),
    ),
    "backends/endpointslices-win-over-legacy-endpoints": Case(
        [CLASS, *APP, endpoints_v1("app", ["10.0.0.7"], []), simple("a", "a.example.com")], SERVED_A
    ),
    "backends/missing-service-is-an-empty-backend-and-a-problem": Case(
        [CLASS, paths_ingress("a", ("/n", "Prefix", backend("nope")), ("/s", "Prefix", backend("nope", "http")))],
        config(
            server("a.example.com", fallback(), prefix("/n", "default/nope:80"), prefix("/s", "default/nope:http")),
            backends=[Backend("default/nope:80", ()), Backend("default/nope:http", ())],
            ingresses=[ing("a")],
            problems=[
                problem("a", "spec.rules[0].http.paths[0].backend", "Service not found: default/nope (answers 503)"),
                problem("a", "spec.rules[0].http.paths[1].backend", "Service not found: default/nope (answers 503)"),
            ],
        ),
    ),
    "backends/service-is-looked-up-in-the-ingress-namespace": Case(
        [CLASS, *APP, simple("a", "a.example.com", namespace="team")],
        config(
            server("a.example.com", loc("/", "team/app:80")),
            backends=[Backend("team/app:80", ())],
            ingresses=[ing("a", "team")],
            problems=[
                problem(
                    "a",
                    "spec.rules[0].http.paths[0].backend",
                    "Service not found: team/app (answers 503)",
                    namespace="team",
                )
            ],
        ),
    ),
    "backends/unknown-port-number-or-name": Case(
        [
            CLASS,
            *APP,
            paths_ingress("a", ("/n", "Prefix", backend("app", 81)), ("/s", "Prefix", backend("app", "grpc"))),
        ],
        config(
            server("a.example.com", fallback(), prefix("/n", "default/app:81"), prefix("/s", "default/app:grpc")),
            backends=[Backend("default/app:81", ()), Backend("default/app:grpc", ())],
            ingresses=[ing("a")],
            problems=[
                problem(
                    "a", "spec.rules[0].http.paths[0].backend", "Service has no port 81: default/app (answers 503)"
                ),
                problem(
                    "a", "spec.rules[0].http.paths[1].backend", "Service has no port 'grpc': default/app (answers 503)"
                ),
            ],
        ),
    ),
    "backends/external-name-service-reads-the-resolvers-slice": Case(
        [
            CLASS,
            service_ports("ext", [{"port": 80, "targetPort": 9999}], type="ExternalName", externalName="example.org"),
            resolver_slice(("default", "ext"), ["203.0.113.5", "2001:db8::5"]),
            service_ports("bare", [], type="ExternalName", externalName="example.net"),
            service_ports("bad", [], type="ExternalName", externalName="example.net;evil"),
            paths_ingress(
                "a",
                ("/bare", "Prefix", backend("bare")),
                ("/ext", "Prefix", backend("ext")),
                ("/bad", "Prefix", backend("bad")),
            ),
        ],
        config(
            server(
                "a.example.com",
                fallback(),
                prefix("/bad", "default/bad:80"),
                prefix("/bare", "default/bare:80"),
                prefix("/ext", "default/ext:80"),
            ),
            backends=[
                Backend("default/bad:80", ()),
                Backend("default/bare:80", ()),  # not resolved (yet): 503
                Backend("default/ext:80", (Endpoint("203.0.113.5", 80), Endpoint("2001:db8::5", 80))),
            ],
            ingresses=[ing("a")],
            problems=[
                problem(
                    "a",
                    "spec.rules[0].http.paths[2].backend",
                    "ExternalName Service: externalName 'example.net;evil' is not a DNS-1123 host name "
                    "(optionally with a '*.' first label): default/bad (answers 503)",
                ),
            ],
        ),
    ),
}


FLAG_SERVICE = ("kube-system", "fallback")
FLAG_OBJECTS = (
    service("fallback", namespace="kube-system"),
    endpoint_slice("fallback", ["10.0.9.1"], namespace="kube-system"),
)
FLAG_BE = "kube-system/fallback:80"
FLAG_BACKEND = Backend(FLAG_BE, eps("10.0.9.1"))

DEFAULT_BACKEND_CASES: dict[str, Case] = {
    "default-backend/nothing-is-a-built-in-404": Case([CLASS, *APP], EMPTY),
    "default-backend/serves-unmatched-paths-of-its-own-hosts-only": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress(
                "a",
                default_backend=backend("other"),
                rules=[rule("a.example.com", ("/api", "Prefix", backend("app"))), {"host": "b.example.com"}],
            ),
            simple("c", "c.example.com", path="/api"),
        ],
        config(
            server("a.example.com", fallback(OTHER_BE), prefix("/api", APP_BE)),
            server("b.example.com", fallback(OTHER_BE)),
            server("c.example.com", fallback(), prefix("/api", APP_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a"), ing("c")],
        ),
    ),
    "default-backend/ingress-with-only-a-default-backend-is-the-catch-all": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress("fb", default_backend=backend("other")),
            simple("a", "a.example.com", path="/api"),
        ],
        config(
            server("a.example.com", fallback(), prefix("/api", APP_BE)),
            default=default_server(fallback(OTHER_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("a"), ing("fb")],
        ),
    ),
    "default-backend/catch-all-oldest-wins": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress("aaa-new", default_backend=backend("other"), created=ts(2)),
            ingress("zzz-old", default_backend=backend("app"), created=ts(1)),
        ],
        config(
            default=default_server(fallback(APP_BE)),
            # The loser's backend is still resolved (and sent to the balancer), though no route uses it.
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("aaa-new"), ing("zzz-old")],
            problems=[
                problem(
                    "aaa-new",
                    "spec.defaultBackend",
                    "the catch-all default backend is already set by Ingress default/zzz-old, the older one wins",
                )
            ],
        ),
    ),
    "default-backend/two-ingresses-on-one-host-the-oldest-default-backend-wins": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            ingress(
                "aaa-new",
                default_backend=backend("other"),
                rules=[rule("a.example.com", ("/new", "Prefix", backend("app")))],
                created=ts(2),
            ),
            ingress(
                "zzz-old",
                default_backend=backend("app"),
                rules=[rule("a.example.com", ("/old", "Prefix", backend("app")))],
                created=ts(1),
            ),
        ],
        config(
            # Not reported: only a true conflict of host, path and type is.
            server("a.example.com", fallback(APP_BE), prefix("/new", APP_BE), prefix("/old", APP_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("aaa-new"), ing("zzz-old")],
        ),
    ),
    "default-backend/flag-serves-every-server-without-its-own": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            *FLAG_OBJECTS,
            simple("a", "a.example.com", path="/api"),
            ingress(
                "b", default_backend=backend("other"), rules=[rule("b.example.com", ("/api", "Prefix", backend("app")))]
            ),
        ],
        config(
            server("a.example.com", fallback(FLAG_BE), prefix("/api", APP_BE)),
            server("b.example.com", fallback(OTHER_BE), prefix("/api", APP_BE)),
            default=default_server(fallback(FLAG_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND, FLAG_BACKEND],
            ingresses=[ing("a"), ing("b")],
        ),
        {"default_backend_service": FLAG_SERVICE},
    ),
    "default-backend/catch-all-ingress-beats-the-flag-on-the-default-server": Case(
        [
            CLASS,
            *APP,
            *OTHER,
            *FLAG_OBJECTS,
            ingress("fb", default_backend=backend("other")),
            simple("a", "a.example.com", path="/x"),
        ],
        config(
            server("a.example.com", fallback(FLAG_BE), prefix("/x", APP_BE)),
            default=default_server(fallback(OTHER_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND, FLAG_BACKEND],
            ingresses=[ing("a"), ing("fb")],
        ),
        {"default_backend_service": FLAG_SERVICE},
    ),
    "default-backend/flag-service-missing-answers-503-and-is-reported": Case(
        [CLASS],
        config(
            default=default_server(fallback("kube-system/gone:80")),
            backends=[Backend("kube-system/gone:80", ())],
            problems=[
                problem(
                    "gone",
                    "--default-backend-service",
                    "Service not found: kube-system/gone (answers 503)",
                    namespace="kube-system",
                    kind="Service",
                )
            ],
        ),
        {"default_backend_service": ("kube-system", "gone")},
    ),
}


def tls_ingress(name: str, hosts: Sequence[str], tls: list[Obj], svc: str = "app", **kwargs: Any) -> Obj:
    return ingress(name, rules=[rule(h, ("/", "Prefix", backend(svc))) for h in hosts], tls=tls, **kwargs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tls_problem(name: str, reason: str | Matching, where: str = "spec.tls[0].secretName") -> Problem:
    return problem(name, where, reason)


A_SERVED_DEFAULT_CERT = server("a.example.com", loc("/", APP_BE), certificate=FALLBACK)
CONFIGMAP = ("ingressctl", "ingressctl")

TLS_CASES: dict[str, Case] = {
    "tls/a-secret-per-host-picked-by-sni": Case(
        [
            CLASS,
            *APP,
            tls_secret("a-tls", A_PEM),
            tls_secret("b-tls", B_PEM),
            tls_ingress(
                "a",
                ["a.example.com", "b.example.com", "plain.example.com"],
                [
                    {"hosts": ["a.example.com"], "secretName": "a-tls"},
                    {"hosts": ["B.example.com"], "secretName": "b-tls"},
                ],
            ),
        ],
        config(
            server("a.example.com", loc("/", APP_BE), certificate=A_CERT),
            server("b.example.com", loc("/", APP_BE), certificate=B_CERT),
            server("plain.example.com", loc("/", APP_BE)),
            certificates=[A_CERT, B_CERT],
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "tls/wildcard-tls-host-covers-exactly-one-label": Case(
        [
            CLASS,
            *APP,
            tls_secret("wild", WILD_PEM),
            tls_ingress(
                "a",
                ["*.example.com", "a.example.com", "example.com", "x.a.example.com"],
                [{"hosts": ["*.example.com"], "secretName": "wild"}],
            ),
        ],
        config(
            server("*.example.com", loc("/", APP_BE), name=WILDCARD_NAME, certificate=WILD_CERT),
            server("a.example.com", loc("/", APP_BE), certificate=WILD_CERT),
            server("example.com", loc("/", APP_BE)),
            server("x.a.example.com", loc("/", APP_BE)),
            certificates=[WILD_CERT],
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
        ),
    ),
    "tls/no-secret-name-serves-the-default-certificate": Case(
        [CLASS, *APP, tls_ingress("a", ["a.example.com"], [{"hosts": ["a.example.com"]}])],
        config(A_SERVED_DEFAULT_CERT, backends=[APP_BACKEND], ingresses=[ing("a")]),
    ),
    "tls/missing-secret-default-certificate-and-a-problem": Case(
        [CLASS, *APP, tls_ingress("a", ["a.example.com"], [{"hosts": ["a.example.com"], "secretName": "nope"}])],
        config(
            A_SERVED_DEFAULT_CERT,
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
            problems=[tls_problem("a", "TLS Secret default/nope not found; serving the default certificate")],
        ),
    ),
    "tls/secret-in-another-namespace-is-not-used": Case(
        [
            CLASS,
            *APP,
            tls_secret("a-tls", A_PEM, namespace="other"),
            tls_ingress("a", ["a.example.com"], [{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
        ],
        config(
            A_SERVED_DEFAULT_CERT,
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
            problems=[tls_problem("a", "TLS Secret default/a-tls not found; serving the default certificate")],
        ),
    ),
    "tls/opaque-secret-is-not-a-tls-secret": Case(
        [
            CLASS,
            *APP,
            tls_secret("a-tls", A_PEM, secret_type="Opaque"),
            tls_ingress("a", ["a.example.com"], [{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
        ],
        config(
            A_SERVED_DEFAULT_CERT,
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
            problems=[tls_problem("a", "TLS Secret default/a-tls not found; serving the default certificate")],
        ),
    ),
    "tls/invalid-certificate-pem": Case(
        [
            CLASS,
            *APP,
            tls_secret(
                "bad", A_PEM, crt=b64(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
            ),
            tls_ingress("a", ["a.example.com"], [{"hosts": ["a.example.com"], "secretName": "bad"}]),
        ],
        config(
            A_SERVED_DEFAULT_CERT,
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
            problems=[
                tls_problem(
                    "a",
                    Matching(
                        r"TLS Secret default/bad: tls\.crt is not a valid PEM certificate: .+; "
                        r"serving the default certificate"
                    ),
                )
            ],
        ),
    ),
    "tls/invalid-key-pem": Case(
        [
            CLASS,
            *APP,
            tls_secret("bad", A_PEM, key=b64(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")),
            tls_ingress("a", ["a.example.com"], [{"hosts": ["a.example.com"], "secretName": "bad"}]),
        ],
        config(
            A_SERVED_DEFAULT_CERT,
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
            problems=[
                tls_problem(
                    "a",
                    Matching(
                        r"TLS Secret default/bad: tls\.key is not a valid unencrypted PEM private key: .+; "
                        r"serving the default certificate"
                    ),
                )
            ],
        ),
    ),
    "tls/key-not-matching-the-certificate": Case(
        [
            CLASS,
            *APP,
            tls_secret("mixed", (A_PEM[0], B_PEM[1])),
            tls_ingress("a", ["a.example.com"], [{"hosts": ["a.example.com"], "secretName": "mixed"}]),
        ],
        config(
            A_SERVED_DEFAULT_CERT,
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
            problems=[
                tls_problem(
                    "a",
                    "TLS Secret default/mixed: tls.key does not match the certificate in tls.crt; "
                    "serving the default certificate",
                )
            ],
        ),
    ),
    "tls/not-base64-and-empty-data": Case(
        [
            CLASS,
            *APP,
            tls_secret("garbled", A_PEM, crt="%%% not base64 %%%"),
            tls_secret("empty", A_PEM, crt=""),
            tls_ingress(
                "a",
                ["a.example.com", "b.example.com"],
                [
                    {"hosts": ["a.example.com"], "secretName": "garbled"},
                    {"hosts": ["b.example.com"], "secretName": "empty"},
                ],
            ),
        ],
        config(
            A_SERVED_DEFAULT_CERT,
            server("b.example.com", loc("/", APP_BE), certificate=FALLBACK),
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
            problems=[
                tls_problem(
                    "a",
                    "TLS Secret default/garbled: tls.crt or tls.key is not valid base64; "
                    "serving the default certificate",
                ),
                tls_problem(
                    "a",
                    "TLS Secret default/empty: Secret lacks tls.crt or tls.key; serving the default certificate",
                    "spec.tls[1].secretName",
                ),
            ],
        ),
    ),
    "tls/ssl-redirect-false-in-the-configmap": Case(
        [
            CLASS,
            *APP,
            configmap({"ssl-redirect": "false"}),
            tls_secret("a-tls", A_PEM),
            tls_ingress("a", ["a.example.com"], [{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
        ],
        config(
            server("a.example.com", loc("/", APP_BE), certificate=A_CERT, redirect=False),
            certificates=[A_CERT],
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
            options=GlobalOptions(ssl_redirect=False),
        ),
        {"configmap": CONFIGMAP},
    ),
    "tls/the-oldest-ingress-tls-wins-for-a-host": Case(
        [
            CLASS,
            *APP,
            tls_secret("a-tls", A_PEM),
            tls_secret("b-tls", B_PEM),
            ingress(
                "new",
                rules=[rule("a.example.com", ("/new", "Prefix", backend("app")))],
                tls=[{"hosts": ["a.example.com"], "secretName": "b-tls"}],
                created=ts(2),
            ),
            ingress(
                "old",
                rules=[rule("a.example.com", ("/old", "Prefix", backend("app")))],
                tls=[{"hosts": ["a.example.com"], "secretName": "a-tls"}],
                created=ts(1),
            ),
        ],
        config(
            server("a.example.com", fallback(), prefix("/new", APP_BE), prefix("/old", APP_BE), certificate=A_CERT),
            certificates=[A_CERT],
            backends=[APP_BACKEND],
            ingresses=[ing("new"), ing("old")],
        ),
    ),
    "tls/tls-host-without-a-rule-makes-no-server": Case(
        [
            CLASS,
            *APP,
            tls_secret("b-tls", B_PEM),
            tls_ingress("a", ["a.example.com"], [{"hosts": ["b.example.com"], "secretName": "b-tls"}]),
        ],
        SERVED_A,
    ),
    "tls/default-ssl-certificate-flag": Case(
        [
            CLASS,
            *APP,
            tls_secret("default-cert", DEFAULT_PEM, namespace="ingressctl"),
            tls_ingress("a", ["a.example.com"], [{"hosts": ["a.example.com"], "secretName": "nope"}]),
        ],
        config(
            server("a.example.com", loc("/", APP_BE), certificate=DEFAULT_CERT),
            default_certificate=DEFAULT_CERT,
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
            problems=[tls_problem("a", "TLS Secret default/nope not found; serving the default certificate")],
        ),
        {"default_ssl_certificate": ("ingressctl", "default-cert")},
    ),
    "tls/default-ssl-certificate-flag-missing-falls-back-to-self-signed": Case(
        [CLASS],
        config(
            problems=[
                problem(
                    "default-cert",
                    "--default-ssl-certificate",
                    "TLS Secret ingressctl/default-cert not found; serving the default certificate",
                    namespace="ingressctl",
                    kind="Secret",
                )
            ]
        ),
        {"default_ssl_certificate": ("ingressctl", "default-cert")},
    ),
}

ALL_OPTIONS = {
    "proxy-connect-timeout": "10",
    "proxy-read-timeout": "120",
    "proxy-send-timeout": "30",
    "proxy-body-size": "8m",
    "proxy-next-upstream-tries": "5",
    "upstream-keepalive-connections": "64",
    "enable-access-log": "false",
    "ssl-redirect": "False",
    "worker-processes": "4",
    "worker-shutdown-timeout": "30",
}


def cm_problem(key: str, reason: str) -> Problem:
    return problem("ingressctl", f"data.{key}", reason, namespace="ingressctl", kind="ConfigMap")


OPTION_CASES: dict[str, Case] = {
    "options/every-valid-key": Case(
        [CLASS, configmap(ALL_OPTIONS)],
        config(
            options=GlobalOptions(
                http_port=8080,
                proxy_connect_timeout=10,
                proxy_read_timeout=120,
                proxy_send_timeout=30,
                proxy_body_size="8m",
                proxy_next_upstream_tries=5,
                upstream_keepalive=64,
                access_log=False,
                ssl_redirect=False,
                worker_processes="4",
                worker_shutdown_timeout=30,
            )
        ),
        # The ConfigMap changes the options given by flags, key by key.
        {"configmap": CONFIGMAP, "options": GlobalOptions(http_port=8080)},
    ),
    "options/invalid-keys-are-reported-and-ignored-valid-ones-apply": Case(
        [
            CLASS,
            configmap(
                {
                    "enable-access-log": "yes",
                    "proxy-body-size": "1m; return 200",
                    "proxy-connect-timeout": "0",
                    "proxy-next-upstream-tries": "11",
                    "proxy-read-timeout": "60s",
                    "proxy-send-timeout": "\u00b2",  # a digit to str.isdigit(), not to int()
                    "server-snippet": "return 200;",
                    "ssl-redirect": "false",
                    "upstream-keepalive-connections": "-1",
                    "worker-processes": "\u0664",  # ARABIC-INDIC DIGIT FOUR
                    "worker-shutdown-timeout": "\u0661\u0662",
                }
            ),
        ],
        config(
            options=GlobalOptions(ssl_redirect=False),
            problems=[
                cm_problem("enable-access-log", "'yes' is not true or false (ignored)"),
                cm_problem(
                    "proxy-body-size", "'1m; return 200' is not a size (digits with an optional k, m or g) (ignored)"
                ),
                cm_problem("proxy-connect-timeout", "'0' is not a number of seconds (1-3600) (ignored)"),
                cm_problem("proxy-next-upstream-tries", "'11' is not a number from 0 to 10 (ignored)"),
                cm_problem("proxy-read-timeout", "'60s' is not a number of seconds (1-3600) (ignored)"),
                cm_problem("proxy-send-timeout", "'\u00b2' is not a number of seconds (1-3600) (ignored)"),
                cm_problem("server-snippet", "unknown option (ignored)"),
                cm_problem("upstream-keepalive-connections", "'-1' is not a number from 0 to 10000 (ignored)"),
                cm_problem("worker-processes", "'\u0664' is not 'auto' or a number from 1 to 64 (ignored)"),
                cm_problem("worker-shutdown-timeout", "'\u0661\u0662' is not a number of seconds (1-3600) (ignored)"),
            ],
        ),
        {"configmap": CONFIGMAP},
    ),
    "options/configmap-not-named-by-settings-is-ignored": Case([CLASS, configmap({"ssl-redirect": "false"})], EMPTY),
    "options/named-configmap-missing-means-defaults": Case([CLASS], EMPTY, {"configmap": CONFIGMAP}),
}

LEGACY_EXTENSIONS = {
    "apiVersion": "extensions/v1beta1",
    "kind": "Ingress",
    "metadata": {"name": "old", "namespace": "default", "annotations": {LEGACY_CLASS: "ingressctl"}},
    "spec": {
        "backend": {"serviceName": "other", "servicePort": 80},
        "rules": [
            {
                "host": "a.example.com",
                "http": {
                    "paths": [
                        {"path": "/foo", "backend": {"serviceName": "app", "servicePort": "http"}},
                        {"path": "/bar", "backend": {"serviceName": "app", "servicePort": "80"}},
                    ]
                },
            }
        ],
    },
}
LEGACY_NETWORKING = {
    "apiVersion": "networking.k8s.io/v1beta1",
    "kind": "Ingress",
    "metadata": {"name": "older", "namespace": "default"},
    "spec": {
        "ingressClassName": "ingressctl",
        "rules": [
            {
                "host": "b.example.com",
                "http": {
                    "paths": [{"path": "/x", "pathType": "Exact", "backend": {"serviceName": "app", "servicePort": 80}}]
                },
            }
        ],
    },
}

LEGACY_CASES: dict[str, Case] = {
    "legacy/extensions-v1beta1-backend-service-name-and-port": Case(
        [CLASS, *APP, *OTHER, convert_ingress(LEGACY_EXTENSIONS)],
        config(
            server("a.example.com", fallback(OTHER_BE), loc("/bar", APP_BE), loc("/foo", APP_BE)),
            backends=[APP_BACKEND, OTHER_BACKEND],
            ingresses=[ing("old")],
        ),
    ),
    "legacy/networking-v1beta1-keeps-class-name-and-path-type": Case(
        [CLASS, *APP, convert_ingress(LEGACY_NETWORKING)],
        config(
            server("b.example.com", fallback(), exact("/x", APP_BE)),
            backends=[APP_BACKEND],
            ingresses=[ing("older")],
        ),
    ),
}

REJECT_CASES: dict[str, Case] = {
    "reject/an-invalid-ingress-alone-the-others-still-served": Case(
        [
            CLASS,
            *APP,
            simple("a", "a.example.com"),
            simple("bad", "b.example.com", path="/x;y"),
            simple("ignored", "c.example.com", path="/x;y", class_name="other"),
        ],
        config(
            server("a.example.com", loc("/", APP_BE)),
            backends=[APP_BACKEND],
            ingresses=[ing("a")],
            problems=[
                problem(
                    "bad",
                    "spec.rules[0].http.paths[0].path",
                    "'/x;y' is not a plain path: it must start with '/' and contain only letters, digits "
                    "and ._~!&()*+,=:@/- (no whitespace, quotes, braces, ';', '$', '#', '%' or '\\'); Ingress rejected",
                )
            ],
        ),
    ),
}

CASES: dict[str, Case] = {
    **CLASS_CASES,
    **HOST_CASES,
    **PATH_CASES,
    **BACKEND_CASES,
    **DEFAULT_BACKEND_CASES,
    **TLS_CASES,
    **OPTION_CASES,
    **LEGACY_CASES,
    **REJECT_CASES,
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_translate(case: Case) -> None:
    assert_config(run(case.objects, **case.settings), case.want)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_translate_is_independent_of_insertion_order(case: Case) -> None:
    rng = random.Random(len(case.objects))
    orders = [list(reversed(case.objects))]
    for _ in range(3):
        shuffled = list(case.objects)
        rng.shuffle(shuffled)
        orders.append(shuffled)
    first = run(case.objects, **case.settings)
    for order in orders:
        got = run(order, **case.settings)
        assert got == first
        assert _render(got) == _render(first)
        assert got.backends_document() == first.backends_document()


RENDERER = Renderer(paths=Paths(work="/var/run/ingressctl", lua="/app/lua"))


def _render(config: Configuration) -> str:
    return RENDERER.render(config.static).text


def test_memo_never_changes_the_result() -> None:
    """One Memo carried through every case in turn (as the controller carries it from sync to
    sync) gives exactly what a fresh translation gives, and drops what a sync no longer uses."""
    memo = Memo()
    for case in [*CASES.values(), *reversed(CASES.values())]:
        cache = Cache()
        for obj in case.objects:
            cache.apply(Event(EventType.ADDED, obj["kind"], obj))
        settings = Settings(fallback_certificate=FALLBACK, **case.settings)
        assert translate(cache.snapshot(), settings, memo=memo) == translate(cache.snapshot(), settings)
        assert len(memo) <= 2 * (len(case.objects) + 4)


def test_memo_sees_a_changed_object() -> None:
    memo = Memo()
    cache = Cache()
    objects = [
        ingress_class(),
        service("svc", target=8080),
        endpoint_slice("svc", ["10.0.0.1"], port=8080),
        ingress("web", rules=[rule("a.example.com", ("/", "Prefix", backend("svc")))]),
    ]
    for obj in objects:
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    settings = Settings(fallback_certificate=FALLBACK)
    before = translate(cache.snapshot(), settings, memo=memo)
    cache.apply(Event(EventType.MODIFIED, "EndpointSlice", endpoint_slice("svc", ["10.0.0.2"], port=8080)))
    cache.apply(
        Event(
            EventType.MODIFIED,
            "Ingress",
            ingress("web", rules=[rule("b.example.com", ("/", "Prefix", backend("svc")))]),
        )
    )
    after = translate(cache.snapshot(), settings, memo=memo)
    assert after == translate(cache.snapshot(), settings)
    assert [s.host for s in after.static.servers] == ["b.example.com"]
    assert after.backends[0].endpoints[0].address == "10.0.0.2"
    assert before.backends[0].endpoints[0].address == "10.0.0.1"


def test_translate_twice_is_equal_and_hashable() -> None:
    objects = [obj for case in PATH_CASES.values() for obj in case.objects]
    first, second = run(objects), run(objects)
    assert first == second
    assert hash(first) == hash(second)


def test_cases_exercise_every_kind() -> None:
    kinds = {obj["kind"] for case in CASES.values() for obj in case.objects}
    assert kinds == {"Ingress", "IngressClass", "Service", "EndpointSlice", "Endpoints", "Secret", "ConfigMap"}
