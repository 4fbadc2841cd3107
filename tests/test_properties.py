"""Property tests (hypothesis) for everything that guards nginx.conf, checked with a real nginx
config parser (crossplane): a value from an object or the ConfigMap is either rejected or emitted
as exactly one token; and the whole rendered file parses to exactly the structure the
Configuration says (servers, their names, certificates, HSTS, redirects, locations, directives)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import crossplane
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ingressctl.cache import Cache
from ingressctl.certs import self_signed
from ingressctl.config import GlobalOptions, Server, StaticConfig, TenancyPolicy
from ingressctl.dataplane.paths import Paths
from ingressctl.dataplane.render import Renderer, UnsafeValue, quote
from ingressctl.model import Event, EventType, Obj
from ingressctl.translate import Settings, translate
from ingressctl.translate import validate as v
from ingressctl.translate.build import server_name
from ingressctl.translate.options import OPTIONS, apply_configmap
from ingressctl.translate.sni import served
from tests.certs import make_cert, tls_secret
from tests.harness import backend, endpoint_slice, ingress, ingress_class, rule, service

RENDERER = Renderer(paths=Paths(work="/run/ingressctl", lua="/usr/share/ingressctl/lua"))
FALLBACK = self_signed()
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that tries to end a token or a block, plus what the validators must accept.
HOSTILE = st.text(
    alphabet=st.sampled_from([*"abcz09.-*/_~:;{}\"'\\$# \t\n\r\x00é%@!&()+,=[]^?|<>`", "K", "ß", "\u2028"]),
    max_size=40,
)
VALID_HOST = st.from_regex(
    r"(\*\.)?[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){1,3}", fullmatch=True
)
VALID_PATH = st.from_regex(r"(/[A-Za-z0-9._~!&()*+,=:@-]{1,8}){1,4}/?", fullmatch=True)
HOSTS = st.one_of(VALID_HOST, HOSTILE)
PATHS = st.one_of(VALID_PATH, HOSTILE)
# For whole Ingresses: one value in ten hostile (one bad value rejects the whole Ingress).
MOSTLY_VALID_HOSTS = st.integers(0, 9).flatmap(lambda i: HOSTILE if i == 0 else VALID_HOST)
PATH_TYPES = st.sampled_from(["Prefix", "Exact", "ImplementationSpecific"])
MOSTLY_VALID_PATHS = st.integers(0, 9).flatmap(lambda i: HOSTILE if i == 0 else VALID_PATH)


def parse(text: str) -> list[dict[str, Any]]:
    """crossplane's parse of a whole nginx.conf text: the top-level directives."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nginx.conf"
        path.write_text(text)
        result = crossplane.parse(str(path), single=True, comments=False)
    assert result["status"] == "ok", result["errors"]
    parsed: list[dict[str, Any]] = result["config"][0]["parsed"]
    return parsed


def one_token(emitted: str) -> list[str]:
    """The arguments nginx reads from `server_name <emitted>;`."""
    (_events, http) = parse(f"events {{}}\nhttp {{ server {{ server_name {emitted}; }} }}\n")
    (server,) = http["block"]
    (directive,) = server["block"]
    args: list[str] = directive["args"]
    return args


# Each validator guarding nginx.conf, and how translate emits what it accepts.
VALIDATORS: dict[str, tuple[Callable[[object], object], Callable[[Any], str], st.SearchStrategy[str]]] = {
    "host": (v.host, lambda h: server_name(h), HOSTS),
    "rule_host": (v.rule_host, lambda h: server_name(h), HOSTS),
    "path": (v.path, lambda p: p, PATHS),
    "service_name": (v.service_name, lambda s: f"ns/{s}:80", HOSTS),
    "port_name": (v.port_name, lambda p: f"ns/svc:{p}", HOSTS),
    "name": (v.name, lambda n: n, HOSTS),
    "ip_address": (v.ip_address, lambda a: a, st.one_of(st.ip_addresses().map(str), HOSTILE)),
}


@SETTINGS
@given(data=st.data())
def test_every_validator_rejects_or_yields_one_quoted_token(data: st.DataObject) -> None:
    for name, (check, emitted, strategy) in VALIDATORS.items():
        value = data.draw(strategy, label=name)
        try:
            accepted = check(value)
        except v.Invalid:
            continue
        token = emitted(accepted)
        assert one_token(quote(token)) == [token], (name, value)


@SETTINGS
@given(value=HOSTILE)
def test_quote_refuses_or_yields_one_token(value: str) -> None:
    try:
        emitted = quote(value)
    except UnsafeValue:
        return
    assert one_token(emitted) == [value]


def _http(text: str) -> list[dict[str, Any]]:
    (http,) = [d for d in parse(text) if d["directive"] == "http"]
    block: list[dict[str, Any]] = http["block"]
    return block


def _static(options: GlobalOptions) -> StaticConfig:
    default = Server(host="", server_name="_", locations=())
    return StaticConfig((), default, (FALLBACK,), FALLBACK.name, options)


@SETTINGS
@given(key=st.sampled_from([o.key for o in OPTIONS]), value=st.one_of(HOSTILE, st.integers(0, 10**9).map(str)))
def test_configmap_options_are_rejected_or_render_as_the_expected_tokens(key: str, value: str) -> None:
    options, errors = apply_configmap(GlobalOptions(), {key: value})
    if errors:
        assert options == GlobalOptions()  # a bad value changes nothing
        return
    text = RENDERER.render(_static(options)).text
    top = {d["directive"]: d["args"] for d in parse(text)}
    http = {d["directive"]: d["args"] for d in _http(text)}
    assert http["ssl_ciphers"] == [options.ssl_ciphers]
    assert http["ssl_protocols"] == options.ssl_protocols.split()
    assert http["client_max_body_size"] == [options.proxy_body_size]
    assert http["proxy_read_timeout"] == [f"{options.proxy_read_timeout}s"]
    assert top["worker_processes"] == [options.worker_processes]
    want_files = options.max_worker_open_files or options.worker_connections * 2 + 1024
    assert top["worker_rlimit_nofile"] == [str(want_files)]


# --- the whole file -------------------------------------------------------------------------------


@st.composite
def tenants(draw: st.DrawFn) -> list[Obj]:
    """Ingresses of two namespaces with generated hosts, paths, path types and TLS."""
    objects: list[Obj] = [
        ingress_class(),
        tls_secret("tls", *CERT, namespace="a"),
        tls_secret("tls", *CERT, namespace="b"),
    ]
    for ns in ("a", "b"):
        objects += [service("app", namespace=ns), endpoint_slice("app", ["10.0.0.1"], namespace=ns)]
    for i in range(draw(st.integers(1, 4))):
        ns = draw(st.sampled_from(["a", "b"]))
        rules = [
            rule(
                draw(st.one_of(st.none(), MOSTLY_VALID_HOSTS)),
                *[(draw(MOSTLY_VALID_PATHS), draw(PATH_TYPES), backend("app")) for _ in range(draw(st.integers(1, 3)))],
            )
            for _ in range(draw(st.integers(1, 3)))
        ]
        tls_hosts = [r["host"] for r in rules if "host" in r and draw(st.booleans())]
        tls = [{"hosts": tls_hosts, "secretName": "tls"}] if tls_hosts else None
        default = backend("app") if draw(st.booleans()) else None
        objects.append(
            ingress(
                f"i{i}",
                namespace=ns,
                rules=rules,
                tls=tls,
                default_backend=default,
                created=f"2024-01-0{i + 1}T00:00:00Z",
            )
        )
    return objects


CERT = make_cert("tenant.example.com")


def _expected_server(server: Server, static: StaticConfig) -> dict[str, Any]:
    """What the template must print for one Server, as (directive, args) structure."""
    # One SSL context, the default server's; each host's certificate comes from the Lua store by SNI.
    cert = static.tls_context_certificate if server.host == "" else None
    locations = []
    for loc in server.locations:
        if loc.backend:
            body = [("set", ["$ingressctl_backend", loc.backend]), ("proxy_pass", ["http://ingressctl_upstream"])]
        else:
            body = [("set", ["$ingressctl_backend", ""]), ("return", ["404"])]
        if static.options.metrics:  # the rule's route id comes first (per-route metrics)
            body.insert(0, ("set", ["$ingressctl_route", loc.route]))
        locations.append(([loc.match, loc.path] if loc.match else [loc.path], body))
    return {
        "server_name": [server.server_name],
        "certificate": cert,
        "hsts": bool(server.certificate and static.options.hsts),
        "redirect": server.redirect_https,
        "locations": locations,
    }


def _actual_server(block: list[dict[str, Any]]) -> dict[str, Any]:
    directives = [d["directive"] for d in block]
    certs = [d["args"][0] for d in block if d["directive"] == "ssl_certificate"]
    return {
        "server_name": next(d["args"] for d in block if d["directive"] == "server_name"),
        "certificate": Path(certs[0]).stem if certs else None,
        "hsts": any(d["directive"] == "add_header" and d["args"][0] == "Strict-Transport-Security" for d in block),
        "redirect": "if" in directives,
        "locations": [
            (d["args"], [(x["directive"], x["args"]) for x in d["block"]])
            for d in block
            if d["directive"] == "location"
        ],
    }


@SETTINGS
@given(objects=tenants())
def test_the_rendered_file_has_exactly_the_configuration_structure(objects: list[Obj]) -> None:
    cache = Cache()
    for obj in objects:
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    policy = TenancyPolicy(catch_all_namespaces=("a",))  # namespace a's catch-alls are served, b's ignored
    config = translate(cache.snapshot(), Settings(fallback_certificate=FALLBACK, tenancy=policy))
    static = config.static
    event(f"{min(len(static.servers), 3)}+ servers, problems: {bool(config.problems)}")
    text = RENDERER.render(static).text
    servers = [d["block"] for d in _http(text) if d["directive"] == "server"]
    # The internal servers (no-endpoints, the configuration API) have no server_name and listen on
    # unix sockets only; then come the default server and one per host, in order.
    internal = [b for b in servers if not any(d["directive"] == "server_name" for d in b)]
    assert internal and all(d["args"][0].startswith("unix:") for b in internal for d in b if d["directive"] == "listen")
    named = servers[len(internal) :]
    assert len(named) == 1 + len(static.servers)
    want = [_expected_server(s, static) for s in (static.default_server, *static.servers)]
    assert [_actual_server(block) for block in named] == want
    sni = served(static)
    assert {s.host: s.certificate for s in static.servers if s.certificate} == dict(sni.hosts)
    assert sni.default == static.default_certificate and set(sni.certificates) == {sni.default, *sni.hosts.values()}
