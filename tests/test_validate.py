"""Safety from day one (issue 2): the anchored allowlists, injection attempts through every tenant
field (each rejects its Ingress alone, with the field named, while a valid neighbour still translates),
malformed object shapes that must never stop translate(), and the render side: `quote` refuses unsafe
values, tenant values reach nginx.conf only inside double quotes, never in a comment or in Lua source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from ingressctl.cache import Cache
from ingressctl.config import (
    EXACT,
    PREFIX,
    Backend,
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
from ingressctl.dataplane.paths import Paths, templates_dir
from ingressctl.dataplane.render import Renderer, UnsafeValue, quote
from ingressctl.model import Event, EventType
from ingressctl.translate import Settings, translate, validate
from ingressctl.translate.validate import Invalid
from tests.harness import backend, endpoint_slice, ingress, ingress_class, rule, service
from tests.test_translate import FALLBACK, WILD_PEM, Matching, tls_secret, without_routes

Obj = dict[str, Any]

# Characters that are syntax to nginx.conf, a regex, a shell or a log line, plus encodings of them.
HOSTILE = {
    "semicolon": ";",
    "open-brace": "{",
    "close-brace": "}",
    "double-quote": '"',
    "single-quote": "'",
    "backtick": "`",
    "dollar": "$",
    "hash": "#",
    "space": " ",
    "tab": "\t",
    "newline": "\n",
    "carriage-return": "\r",
    "nul": "\x00",
    "escape": "\x1b",
    "delete": "\x7f",
    "backslash": "\\",
    "percent": "%",
    "line-separator": "\u2028",
    "non-ascii": "\u00e9",
}


def hostile(template: str) -> list[Any]:
    """One pytest.param per hostile character, put where `{}` is in the template."""
    return [pytest.param(template.format(c), id=name) for name, c in HOSTILE.items()]


# --- the allowlists themselves ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("a.example.com", "a.example.com"),
        ("A.Example.COM", "a.example.com"),
        ("*.example.com", "*.example.com"),
        ("*.EXAMPLE.com", "*.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        (".".join(["a" * 63] * 3) + "." + "b" * 61, ".".join(["a" * 63] * 3) + "." + "b" * 61),  # 253
    ],
)
def test_host_accepts(value: str, want: str) -> None:
    assert validate.host(value) == want


BAD_HOSTS = [
    *hostile("a{}b.example.com"),
    pytest.param("a.example.com\n", id="trailing-newline"),
    pytest.param("\na.example.com", id="leading-newline"),
    pytest.param("a.example.com.", id="trailing-dot"),
    pytest.param("a..example.com", id="empty-label"),
    pytest.param("-a.example.com", id="leading-hyphen"),
    pytest.param("a-.example.com", id="trailing-hyphen"),
    pytest.param("a_b.example.com", id="underscore"),
    pytest.param("a/b.example.com", id="slash"),
    pytest.param("a.example.com:80", id="port"),
    pytest.param("*", id="bare-star"),
    pytest.param("*.", id="star-dot"),
    pytest.param("*.*.example.com", id="two-stars"),
    pytest.param("a.*.example.com", id="inner-star"),
    pytest.param("*a.example.com", id="star-in-label"),
    pytest.param("~^.*$", id="regex"),
    pytest.param("a" * 64 + ".com", id="label-over-63"),
    pytest.param(".".join(["a" * 63] * 4) + ".b", id="over-253"),
    pytest.param("\u212aa.example.com", id="kelvin-sign-lowercases-to-ascii-k"),
    pytest.param("", id="empty"),
    pytest.param(None, id="none"),
    pytest.param(80, id="number"),
    pytest.param(["a.example.com"], id="list"),
]


@pytest.mark.parametrize("value", BAD_HOSTS)
def test_host_rejects(value: object) -> None:
    with pytest.raises(Invalid):
        validate.host(value)


@pytest.mark.parametrize(
    "value",
    [
        "/",
        "/foo",
        "/foo/",
        "/foo/bar",
        "/a-b_c.d~e",
        "/(.*)!&+,=:@*",
        "/.well-known/acme-challenge",
        "/..foo/bar..",
        "/" + "a" * 253,
    ],
)
def test_path_accepts(value: str) -> None:
    assert validate.path(value) == value


BAD_PATHS = [
    *hostile("/a{}b"),
    pytest.param("/foo\n", id="trailing-newline"),
    pytest.param("foo", id="relative"),
    pytest.param("", id="empty"),
    pytest.param("//", id="double-slash-root"),
    pytest.param("/a//b", id="double-slash"),
    pytest.param("/a/../b", id="dot-dot-segment"),
    pytest.param("/..", id="trailing-dot-dot"),
    pytest.param("/a/./b", id="dot-segment"),
    pytest.param("/a?b", id="query"),
    pytest.param("/a%2e%2e/b", id="percent-encoding"),
    pytest.param("/a<b>", id="angle-brackets"),
    pytest.param("/a|b", id="pipe"),
    pytest.param("/a^b", id="caret"),
    pytest.param("/a[b]", id="brackets"),
    pytest.param("/" + "a" * 254, id="over-254"),
    pytest.param(None, id="none"),
    pytest.param(1, id="number"),
]


@pytest.mark.parametrize("value", BAD_PATHS)
def test_path_rejects(value: object) -> None:
    with pytest.raises(Invalid):
        validate.path(value)


@pytest.mark.parametrize("value", ["app", "a-b", "a1", "1a", "a" * 63])
def test_service_name_accepts(value: str) -> None:
    assert validate.service_name(value) == value


BAD_SERVICE_NAMES = [
    *hostile("a{}b"),
    pytest.param("app\n", id="trailing-newline"),
    pytest.param("App", id="upper-case"),
    pytest.param("a.b", id="dot"),
    pytest.param("-a", id="leading-hyphen"),
    pytest.param("a-", id="trailing-hyphen"),
    pytest.param("a/b", id="slash"),
    pytest.param("a:80", id="colon"),
    pytest.param("a" * 64, id="over-63"),
    pytest.param("", id="empty"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize("value", BAD_SERVICE_NAMES)
def test_service_name_rejects(value: object) -> None:
    with pytest.raises(Invalid):
        validate.service_name(value)


@pytest.mark.parametrize("value", ["http", "h2c", "a-b", "a" * 15])
def test_port_name_accepts(value: str) -> None:
    assert validate.port_name(value) == value


BAD_PORT_NAMES = [
    *hostile("h{}p"),
    pytest.param("http\n", id="trailing-newline"),
    pytest.param("HTTP", id="upper-case"),
    pytest.param("a--b", id="double-hyphen"),
    pytest.param("-a", id="leading-hyphen"),
    pytest.param("a.b", id="dot"),
    pytest.param("a" * 16, id="over-15"),
    pytest.param("", id="empty"),
    pytest.param(80, id="number"),
]


@pytest.mark.parametrize("value", BAD_PORT_NAMES)
def test_port_name_rejects(value: object) -> None:
    with pytest.raises(Invalid):
        validate.port_name(value)


@pytest.mark.parametrize("value", [1, 80, 65535])
def test_port_number_accepts(value: int) -> None:
    assert validate.port_number(value) == value


@pytest.mark.parametrize("value", [0, -1, 65536, True, "80", 80.0, None])
def test_port_number_rejects(value: object) -> None:
    with pytest.raises(Invalid):
        validate.port_number(value)


@pytest.mark.parametrize("value", ["tls", "a.b-c", ".".join(["a" * 63] * 3) + "." + "b" * 61])
def test_object_name_accepts(value: str) -> None:
    assert validate.name(value) == value


@pytest.mark.parametrize("value", [*hostile("a{}b"), "A", "a\n", "a" * 64, ".".join(["a" * 63] * 4) + ".b", "", None])
def test_object_name_rejects(value: object) -> None:
    with pytest.raises(Invalid):
        validate.name(value)


@pytest.mark.parametrize("value", ["10.0.0.1", "255.255.255.255", "::1", "fe80::1", "2001:db8::a:b"])
def test_ip_address_accepts(value: str) -> None:
    assert validate.ip_address(value) == value


@pytest.mark.parametrize(
    "value", ["10.0.0.256", "10.0.0.1\n", "10.0.0", "host.example.com", "10.0.0.1;", "::1\n", "", None, 167772161]
)
def test_ip_address_rejects(value: object) -> None:
    with pytest.raises(Invalid):
        validate.ip_address(value)


@pytest.mark.parametrize("value", ["0", "1m", "512k", "1G", "123456789"])
def test_size_accepts(value: str) -> None:
    assert validate.size(value) == value


@pytest.mark.parametrize("value", ["1m;", "1 m", "1t", "-1", "1m\n", "", "1234567890", "\u0661m"])
def test_size_rejects(value: object) -> None:
    with pytest.raises(Invalid):
        validate.size(value)


CHECKS: dict[str, tuple[Callable[[object], object], str]] = {
    "host": (validate.host, "a.example.com"),
    "wildcard-host": (validate.host, "*.example.com"),
    "path": (validate.path, "/foo"),
    "service-name": (validate.service_name, "app"),
    "port-name": (validate.port_name, "http"),
    "object-name": (validate.name, "tls"),
    "ip-address": (validate.ip_address, "10.0.0.1"),
    "size": (validate.size, "1m"),
}


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", " "], ids=["newline", "crlf", "nul", "space"])
@pytest.mark.parametrize("check", list(CHECKS), ids=list(CHECKS))
def test_a_trailing_newline_never_passes(check: str, suffix: str) -> None:
    """`$` matches before a final newline; every check must be anchored with fullmatch."""
    fn, good = CHECKS[check]
    assert fn(good) is not None
    with pytest.raises(Invalid):
        fn(good + suffix)


# --- through translate: the bad Ingress alone is rejected, its neighbour still served -----------


def run(objects: Iterable[Obj], **settings: Any) -> Configuration:
    cache = Cache()
    for obj in objects:
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    return without_routes(translate(cache.snapshot(), Settings(fallback_certificate=FALLBACK, **settings)))


APP = [service("app"), endpoint_slice("app", ["10.0.0.1"])]
APP_BACKEND = Backend("default/app:80", (Endpoint("10.0.0.1", 8080),))
GOOD = ingress("good", rules=[rule("good.example.com", ("/", "Prefix", backend("app")))])
GOOD_SERVER = Server("good.example.com", "good.example.com", (Location("/", PREFIX, "default/app:80"),))
NO_ROUTES = Server("", "_", (Location("/", PREFIX, None),))


def served_alone(*problems: Problem) -> Configuration:
    """What GOOD alone translates to, with the given problems."""
    return Configuration(
        static=StaticConfig(
            servers=(GOOD_SERVER,),
            default_server=NO_ROUTES,
            certificates=(FALLBACK,),
            default_certificate=FALLBACK.name,
            options=GlobalOptions(),
            context_certificate=FALLBACK.name,
        ),
        backends=(APP_BACKEND,),
        ingresses=(ObjectRef("Ingress", "default", "good"),),
        problems=problems,
    )


def rejected(field: str, reason: str = r".+") -> Problem:
    return Problem(ObjectRef("Ingress", "default", "bad"), field, Matching(reason + r"; Ingress rejected"))  # type: ignore[arg-type]


def bad(rules: list[Obj] | None = None, **kwargs: Any) -> Obj:
    """The Ingress under attack: a valid rule for bad.example.com unless rules are given."""
    return ingress("bad", rules=rules or [rule("bad.example.com", ("/", "Prefix", backend("app")))], **kwargs)


def with_host(host: object) -> Obj:
    return bad([{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend("app")}]}}])


def with_path(path: object, path_type: str = "Prefix") -> Obj:
    return bad(
        [
            {
                "host": "bad.example.com",
                "http": {"paths": [{"path": path, "pathType": path_type, "backend": backend("app")}]},
            }
        ]
    )


def with_backend(spec: object) -> Obj:
    return bad([{"host": "bad.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": spec}]}}])


def with_service(name: object) -> Obj:
    return with_backend({"service": {"name": name, "port": {"number": 80}}})


def with_port(port: Obj) -> Obj:
    return with_backend({"service": {"name": "app", "port": port}})


PATH_FIELD = "spec.rules[0].http.paths[0]"
INJECTIONS: list[Any] = [
    *(pytest.param(with_host(p.values[0]), "spec.rules[0].host", id=f"host-{p.id}") for p in BAD_HOSTS if p.values[0]),
    *(
        pytest.param(with_path(p.values[0], t), f"{PATH_FIELD}.path", id=f"path-{t}-{p.id}")
        for p in BAD_PATHS
        for t in ("Exact", "Prefix", "ImplementationSpecific")
        if p.values[0] is not None
    ),
    *(
        pytest.param(with_service(p.values[0]), f"{PATH_FIELD}.backend.service.name", id=f"service-{p.id}")
        for p in BAD_SERVICE_NAMES
    ),
    *(
        pytest.param(
            with_port({"name": p.values[0]}), f"{PATH_FIELD}.backend.service.port.name", id=f"port-name-{p.id}"
        )
        for p in BAD_PORT_NAMES
    ),
    *(
        pytest.param(with_port({"number": n}), f"{PATH_FIELD}.backend.service.port.number", id=f"port-number-{n!r}")
        for n in (0, -1, 65536, True, "80", "80; return 200")
    ),
    pytest.param(with_path("/", "Regex"), f"{PATH_FIELD}.pathType", id="path-type-regex"),
    pytest.param(with_path("/(.*)", "Regex"), f"{PATH_FIELD}.pathType", id="path-type-regex-with-group"),
    pytest.param(
        with_backend({"resource": {"kind": "StorageBucket", "name": "b"}}),
        f"{PATH_FIELD}.backend.resource",
        id="resource-backend",
    ),
    pytest.param(with_port({}), f"{PATH_FIELD}.backend.service.port", id="port-without-number-or-name"),
    pytest.param(
        bad(
            [
                rule("bad.example.com", ("/ok", "Prefix", backend("app"))),
                rule("x;y.example.com", ("/", "Prefix", backend("app"))),
            ]
        ),
        "spec.rules[1].host",
        id="second-rule-bad-rejects-the-whole-ingress",
    ),
    pytest.param(
        bad(default_backend=backend("a;b")), "spec.defaultBackend.service.name", id="default-backend-service-name"
    ),
    pytest.param(
        bad(tls=[{"hosts": ["bad.example.com\n"], "secretName": "tls"}]), "spec.tls[0].hosts[0]", id="tls-host-newline"
    ),
    pytest.param(
        bad(tls=[{"hosts": ["b{.example.com"], "secretName": "tls"}]), "spec.tls[0].hosts[0]", id="tls-host-brace"
    ),
    pytest.param(
        bad(tls=[{"hosts": ["bad.example.com"], "secretName": "../../etc/x"}]),
        "spec.tls[0].secretName",
        id="secret-path",
    ),
    pytest.param(
        bad(tls=[{"hosts": ["bad.example.com"], "secretName": "tls\n"}]), "spec.tls[0].secretName", id="secret-newline"
    ),
    pytest.param(
        bad(tls=[{"hosts": ["bad.example.com"], "secretName": 'a"b'}]), "spec.tls[0].secretName", id="secret-quote"
    ),
]


@pytest.mark.parametrize(("bad_ingress", "field"), INJECTIONS)
def test_an_injection_rejects_its_ingress_alone(bad_ingress: Obj, field: str) -> None:
    got = run([ingress_class(), *APP, GOOD, bad_ingress])
    assert got == served_alone(rejected(field))


def test_the_problem_names_the_value_and_why() -> None:
    got = run([ingress_class(), *APP, GOOD, with_path("/a;b")])
    assert [str(p) for p in got.problems] == [
        "Ingress default/bad: spec.rules[0].http.paths[0].path: '/a;b' is not a plain path: it must start with '/' "
        "and contain only letters, digits and ._~!&()*+,=:@/- (no whitespace, quotes, braces, ';', '$', '#', '%' "
        "or '\\'); Ingress rejected"
    ]


def test_the_neighbour_keeps_updating_while_a_bad_ingress_stays() -> None:
    evil = with_host("evil.example.com;}")
    before = run([ingress_class(), *APP, GOOD, evil])
    moved = ingress("good", rules=[rule("good.example.com", ("/v2", "Exact", backend("app")))])
    after = run([ingress_class(), *APP, moved, evil])
    assert before == served_alone(rejected("spec.rules[0].host"))
    assert after.static.servers == (
        Server(
            "good.example.com",
            "good.example.com",
            (Location("/", PREFIX, None), Location("/v2", EXACT, "default/app:80")),
        ),
    )
    assert after.problems == before.problems


def test_an_ingress_of_another_class_is_not_even_validated() -> None:
    theirs = with_path("/a;b")
    theirs["spec"]["ingressClassName"] = "other"
    assert run([ingress_class(), *APP, GOOD, theirs]) == served_alone()


# --- malformed shapes (a manifests folder is not schema-checked): never an exception ----------


def victim(service_name: str = "victim") -> Obj:
    """An Ingress using a Service whose objects are malformed."""
    return ingress("v", rules=[rule("v.example.com", ("/", "Prefix", backend(service_name)))])


def victim_problem(reason: str) -> Problem:
    return Problem(
        ObjectRef("Ingress", "default", "v"), "spec.rules[0].http.paths[0].backend", f"{reason} (answers 503)"
    )


def raw(kind: str, name: str, **fields: Any) -> Obj:
    return {"kind": kind, "metadata": {"name": name, "namespace": "default"}, **fields}


SLICE_META = {"name": "victim-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "victim"}}
VICTIM_SERVICE = service("victim")


def malformed_ingress(spec: object) -> Obj:
    return {"kind": "Ingress", "metadata": {"name": "bad", "namespace": "default"}, "spec": spec}


MALFORMED: list[Any] = [
    pytest.param([malformed_ingress(["x"])], [rejected("spec", "must be an object")], id="ingress-spec-list"),
    pytest.param(
        [malformed_ingress({"ingressClassName": "ingressctl", "rules": "oops"})],
        [rejected("spec.rules", "must be a list")],
        id="ingress-rules-string",
    ),
    pytest.param(
        [malformed_ingress({"ingressClassName": "ingressctl", "rules": [{"host": "b.example.com", "http": "x"}]})],
        [rejected("spec.rules[0].http", "must be an object")],
        id="ingress-http-string",
    ),
    pytest.param(
        [malformed_ingress({"ingressClassName": "ingressctl", "rules": [{"http": {"paths": 5}}]})],
        [rejected("spec.rules[0].http.paths", "must be a list")],
        id="ingress-paths-number",
    ),
    pytest.param(
        [malformed_ingress({"ingressClassName": "ingressctl", "rules": [{"http": {"paths": ["/"]}}]})],
        [rejected("spec.rules[0].http.paths[0]", "must be an object")],
        id="ingress-path-string",
    ),
    pytest.param(
        [malformed_ingress({"ingressClassName": "ingressctl", "rules": ["b.example.com"]})],
        [rejected("spec.rules[0]", "must be an object")],
        id="ingress-rule-string",
    ),
    pytest.param(
        [malformed_ingress({"ingressClassName": "ingressctl", "tls": {"hosts": []}})],
        [rejected("spec.tls", "must be a list")],
        id="ingress-tls-object",
    ),
    pytest.param(
        [malformed_ingress({"ingressClassName": "ingressctl", "tls": [{"hosts": "abc"}]})],
        [rejected("spec.tls[0].hosts", "must be a list")],
        id="ingress-tls-hosts-string",
    ),
    pytest.param(
        [malformed_ingress({"ingressClassName": "ingressctl", "defaultBackend": "app"})],
        [rejected("spec.defaultBackend", "must be an object")],
        id="ingress-default-backend-string",
    ),
    pytest.param(
        [malformed_ingress({"ingressClassName": ["ingressctl"]})], [], id="ingress-class-name-list-is-not-ours"
    ),
    pytest.param(
        [{"kind": "Ingress", "metadata": {"name": "bad", "namespace": "default", "annotations": ["x"]}, "spec": {}}],
        [],
        id="ingress-annotations-list-no-class-is-not-ours",
    ),
    pytest.param(
        [{"kind": "IngressClass", "metadata": {"name": "x"}, "spec": ["x"]}], [], id="ingress-class-spec-list"
    ),
    pytest.param(
        [raw("Service", "victim", spec=["x"]), victim()],
        [victim_problem("Service has no port 80: default/victim")],
        id="service-spec-list",
    ),
    pytest.param(
        [raw("Service", "victim", spec={"ports": 80}), victim()],
        [victim_problem("Service has no port 80: default/victim")],
        id="service-ports-number",
    ),
    pytest.param(
        [raw("Service", "victim", spec={"ports": [{"name": "http", "port": '80"; return 200 "x'}]}), victim()],
        [victim_problem("Service has no port 80: default/victim")],
        id="service-port-string-by-number",
    ),
    pytest.param(
        [
            raw("Service", "victim", spec={"ports": [{"name": "http", "port": '80"; return 200 "x'}]}),
            ingress("v", rules=[rule("v.example.com", ("/", "Prefix", backend("victim", "http")))]),
        ],
        [victim_problem("Service port 'http': '80\"; return 200 \"x' is not a port number (1-65535): default/victim")],
        id="service-port-string-by-name-never-reaches-nginx-conf",
    ),
    pytest.param(
        [VICTIM_SERVICE, {"kind": "EndpointSlice", "metadata": {**SLICE_META, "labels": ["x"]}}, victim()],
        [],
        id="slice-labels-list",
    ),
    pytest.param(
        [
            VICTIM_SERVICE,
            {"kind": "EndpointSlice", "metadata": SLICE_META, "ports": 5, "endpoints": ["10.0.0.9", 7]},
            victim(),
        ],
        [],
        id="slice-ports-and-endpoints-malformed",
    ),
    pytest.param(
        [
            VICTIM_SERVICE,
            {
                "kind": "EndpointSlice",
                "metadata": SLICE_META,
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": "10.0.0.9", "conditions": ["ready"]}],
            },
            victim(),
        ],
        [],
        id="slice-addresses-string-conditions-list",
    ),
    pytest.param(
        [VICTIM_SERVICE, raw("Endpoints", "victim", subsets="x"), victim()], [], id="endpoints-subsets-string"
    ),
    pytest.param(
        [VICTIM_SERVICE, raw("Endpoints", "victim", subsets=["x", {"addresses": ["10.0.0.9"]}]), victim()],
        [],
        id="endpoints-subset-items-malformed",
    ),
]


@pytest.mark.parametrize(("objects", "problems"), MALFORMED)
def test_malformed_objects_never_stop_translate(objects: list[Obj], problems: list[Problem]) -> None:
    got = run([ingress_class(default=True), *APP, GOOD, *objects])
    assert GOOD_SERVER in got.static.servers
    assert APP_BACKEND in got.backends
    assert list(got.problems) == problems
    victims = [b for b in got.backends if b.name.startswith("default/victim")]
    assert all(b.endpoints == () for b in victims)


def test_malformed_tls_secret_and_configmap_are_reported() -> None:
    secret = tls_secret("s", WILD_PEM)
    secret["data"] = ["x"]
    number_secret = tls_secret("n", WILD_PEM)
    number_secret["data"] = {"tls.crt": 1, "tls.key": 2}
    tls_ingress = ingress(
        "t",
        rules=[
            rule("t.example.com", ("/", "Prefix", backend("app"))),
            rule("n.example.com", ("/", "Prefix", backend("app"))),
        ],
        tls=[{"hosts": ["t.example.com"], "secretName": "s"}, {"hosts": ["n.example.com"], "secretName": "n"}],
    )
    cm = {"kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"}, "data": [{"a": 1}, {"b": 2}]}
    got = run([ingress_class(), *APP, GOOD, secret, number_secret, tls_ingress, cm], configmap=("ns", "cm"))
    assert [str(p) for p in got.problems] == [
        "Ingress default/t: spec.tls[0].secretName: TLS Secret default/s: Secret data is not an object; "
        "serving the default certificate",
        "Ingress default/t: spec.tls[1].secretName: TLS Secret default/n: tls.crt or tls.key is not valid base64; "
        "serving the default certificate",
        "ConfigMap ns/cm: data: is not an object (ignored)",
    ]
    assert got.static.options == GlobalOptions()
    assert {s.host: s.certificate for s in got.static.servers} == {
        "good.example.com": None,
        "n.example.com": FALLBACK.name,
        "t.example.com": FALLBACK.name,
    }


# --- render: quote, and where tenant values may appear in nginx.conf ---------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("a.example.com", '"a.example.com"'),
        ("default/app:80", '"default/app:80"'),
        (r"~^[^.]+\.example\.com$", r'"~^[^.]+\.example\.com$"'),
        ("/(.*)!&+,=:@~'*", '"/(.*)!&+,=:@~\'*"'),
        (8080, '"8080"'),
        ("", '""'),
    ],
)
def test_quote_emits_safe_values_double_quoted(value: object, want: str) -> None:
    assert quote(value) == want


QUOTE_UNSAFE = [
    *(pytest.param(f"a{c}b", id=name) for name, c in HOSTILE.items() if c not in ("'", "`", "%", "\u00e9")),
    pytest.param("a.example.com\n", id="trailing-newline"),
    pytest.param("a\\", id="trailing-backslash"),
    pytest.param("a\\nb", id="backslash-n"),
    pytest.param('\\"', id="escaped-quote"),
    pytest.param("$host", id="variable"),
    pytest.param("${host}", id="braced-variable"),
    pytest.param("a$", id="dollar-at-the-end-of-a-non-regex"),
    pytest.param("~^$host\\.example\\.com$", id="variable-inside-a-regex"),
    pytest.param("a\u00a0b", id="no-break-space"),
    pytest.param("a\u0085b", id="next-line"),
]


@pytest.mark.parametrize("value", QUOTE_UNSAFE)
def test_quote_refuses_unsafe_values(value: str) -> None:
    with pytest.raises(UnsafeValue):
        quote(value)


def test_quote_semicolons_only_when_asked() -> None:
    assert quote("/lua/?.lua;;", semicolons=True) == '"/lua/?.lua;;"'
    with pytest.raises(UnsafeValue):
        quote("/lua/?.lua;;")
    with pytest.raises(UnsafeValue):
        quote("/lua/?.lua;; x", semicolons=True)


MARK = "zz"  # in every tenant value below, and nowhere in the template
RENDER_PATHS = Paths(work="/run/ingressctl", lua="/usr/share/ingressctl/lua")
TEMPLATE = Renderer(paths=RENDER_PATHS)


def tenant_objects() -> list[Obj]:
    """Valid objects whose values look as hostile as the allowlists allow."""
    ns = "zz-ns"
    return [
        ingress_class(),
        service("zz-svc", namespace=ns, port=8080, port_name="zz-port"),
        endpoint_slice("zz-svc", ["10.0.0.1"], namespace=ns, port_name="zz-port"),
        tls_secret("zz-secret", WILD_PEM, namespace=ns),
        ingress(
            "zz-ingress",
            namespace=ns,
            rules=[
                rule(
                    "*.zz-wild.example",
                    ("/zz(.*)!&+,=:@~", "ImplementationSpecific", backend("zz-svc", "zz-port")),
                    ("/zz-exact*", "Exact", backend("zz-svc", 8080)),
                ),
                rule("ZZ-exact.example", ("/zz-prefix/", "Prefix", backend("zz-svc", "zz-port"))),
            ],
            default_backend=backend("zz-missing"),
            tls=[{"hosts": ["*.zz-wild.example"], "secretName": "zz-secret"}],
        ),
        ingress("zz-catch", namespace=ns, default_backend=backend("zz-svc", 8080)),
    ]


def comment_of(line: str) -> str:
    """The part of an nginx.conf line after a '#' that is outside quotes."""
    quote_char = ""
    for i, c in enumerate(line):
        if quote_char:
            quote_char = "" if c == quote_char else quote_char
        elif c in "\"'":
            quote_char = c
        elif c == "#":
            return line[i:]
    return ""


@pytest.fixture(scope="module")
def rendered() -> tuple[Configuration, str]:
    # zz-ns's catch-all is honoured (the policy lists it) so that its hostile values are rendered too.
    config = run(tenant_objects(), tenancy=TenancyPolicy(catch_all_namespaces=("zz-ns",)))
    return config, TEMPLATE.render(config.static).text


def test_hostile_looking_values_translate_as_expected(rendered: tuple[Configuration, str]) -> None:
    config, _ = rendered
    assert [
        (s.server_name, [(loc.match, loc.path, loc.backend) for loc in s.locations]) for s in config.static.servers
    ] == [
        (
            r"~^[^.]+\.zz-wild\.example$",
            [
                ("", "/", "zz-ns/zz-missing:80"),
                ("", "/zz(.*)!&+,=:@~", "zz-ns/zz-svc:8080"),
                ("=", "/zz-exact*", "zz-ns/zz-svc:8080"),
            ],
        ),
        (
            "zz-exact.example",
            [
                ("", "/", "zz-ns/zz-missing:80"),
                ("=", "/zz-prefix", "zz-ns/zz-svc:8080"),
                ("", "/zz-prefix/", "zz-ns/zz-svc:8080"),
            ],
        ),
    ]
    assert config.static.default_server.locations == (Location("/", PREFIX, "zz-ns/zz-svc:8080"),)
    assert [str(p) for p in config.problems] == [
        "Ingress zz-ns/zz-ingress: spec.defaultBackend: Service not found: zz-ns/zz-missing (answers 503)",
        "Ingress zz-ns/zz-ingress: spec.tls[0].secretName: TLS Secret zz-ns/zz-secret: certificate names "
        "(*.example.com) do not cover *.zz-wild.example (served)",
    ]


def test_tenant_values_appear_only_inside_double_quotes(rendered: tuple[Configuration, str]) -> None:
    config, text = rendered
    assert MARK not in RENDER_PATHS.work + RENDER_PATHS.lua
    assert MARK not in (templates_dir() / "nginx.conf.j2").read_text()
    values = {s.server_name for s in config.static.servers}
    values |= {loc.path for s in config.static.servers for loc in s.locations if MARK in loc.path}
    values |= {loc.backend for s in config.static.servers for loc in s.locations if loc.backend}
    for value in values:
        assert f'"{value}"' in text, value
    outside_quotes = re.sub(r'"[^"\n]*"', '""', text)
    assert MARK not in outside_quotes
    # Names of objects and key material never reach nginx.conf at all.
    for absent in ("zz-ingress", "zz-catch", "zz-secret", "BEGIN", "PRIVATE KEY"):
        assert absent not in text


def test_no_tenant_value_in_a_comment_or_in_lua(rendered: tuple[Configuration, str]) -> None:
    _, text = rendered
    comments = [comment_of(line) for line in text.splitlines() if comment_of(line)]
    assert comments  # the template does have comments, e.g. its header
    assert not [c for c in comments if MARK in c]
    lua_blocks = re.findall(r"_by_lua_block \{(.*?)\n\s*\}", text, re.S)
    assert len(lua_blocks) >= 3
    assert not [b for b in lua_blocks if MARK in b]


def hand_built(server: Server, default_certificate: str = "a" * 32) -> StaticConfig:
    return StaticConfig(
        servers=(server,),
        default_server=NO_ROUTES,
        certificates=(),
        default_certificate=default_certificate,
        options=GlobalOptions(),
    )


def hand_server(
    server_name: str = "a.example.com", path: str = "/", backend_name: str | None = "default/app:80"
) -> Server:
    return Server("a.example.com", server_name, (Location(path, PREFIX, backend_name),))


@pytest.mark.parametrize(
    "static",
    [
        pytest.param(
            hand_built(hand_server(server_name='a.example.com"; include /etc/passwd; "')), id="server-name-quote"
        ),
        pytest.param(hand_built(hand_server(server_name="a.example.com\n")), id="server-name-newline"),
        pytest.param(hand_built(hand_server(server_name="a.example.com }")), id="server-name-brace"),
        pytest.param(hand_built(hand_server(path="/a b")), id="path-space"),
        pytest.param(hand_built(hand_server(path="/a;b")), id="path-semicolon"),
        pytest.param(hand_built(hand_server(path="/a#b")), id="path-hash"),
        pytest.param(hand_built(hand_server(path="/$uri")), id="path-variable"),
        pytest.param(hand_built(hand_server(backend_name='x"; return 200 "y')), id="backend-quote"),
        pytest.param(hand_built(hand_server(backend_name="$http_x_backend")), id="backend-variable"),
        pytest.param(hand_built(hand_server(), default_certificate="../x y"), id="certificate-name-space"),
    ],
)
def test_render_refuses_an_unsafe_configuration(static: StaticConfig) -> None:
    with pytest.raises(UnsafeValue):
        TEMPLATE.render(static)


def test_render_accepts_the_hand_built_safe_configuration() -> None:
    text = TEMPLATE.render(hand_built(hand_server())).text
    assert 'server_name "a.example.com";' in text
    assert 'set $ingressctl_backend "default/app:80";' in text
