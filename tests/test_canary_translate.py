"""Canary Ingresses in translate (pure): merged into the main Ingress's route as a `<main>~<canary>`
backend carrying the policy, precedence of settings, a canary without a main reported, a second canary
reported, host ownership (a canary never owns a host), invalid values rejecting that Ingress alone,
and (hypothesis) the canary parsers: what they accept is what the balancer reads."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingressctl.cache import Cache
from ingressctl.config import EXACT, PREFIX, REGEX, Canary, Certificate, Configuration
from ingressctl.model import Event, EventType
from ingressctl.translate import Settings, translate
from ingressctl.translate.annotations import values as v
from ingressctl.translate.annotations.registry import NGINX, OURS
from ingressctl.translate.validate import Invalid
from tests.certs import make_cert
from tests.harness import backend, endpoint_slice, ingress, ingress_class, rule, service

SETTINGS = Settings(fallback_certificate=Certificate.from_pem(*make_cert("fallback")))
BASE = [
    ingress_class(),
    service("app"),
    endpoint_slice("app", ["10.0.0.1"]),
    service("next"),
    endpoint_slice("next", ["10.0.0.2"]),
]
APP, NEXT = "default/app:80", "default/next:80"


def run(*objs: dict[str, Any]) -> Configuration:
    cache = Cache()
    cache.load(Event(EventType.ADDED, o["kind"], o) for o in (*BASE, *objs))
    return translate(cache.snapshot(), SETTINGS)


def main(name: str = "main", host: str = "a.test", path: str = "/", **kw: Any) -> dict[str, Any]:
    return ingress(name, rules=[rule(host, (path, "Prefix", backend("app")))], created="2026-01-01T00:00:00Z", **kw)


def canary(name: str = "canary", host: str = "a.test", path: str = "/", **annotations: str) -> dict[str, Any]:
    notes = {NGINX + "canary": "true", **{NGINX + k.replace("_", "-"): v for k, v in annotations.items()}}
    return ingress(
        name,
        rules=[rule(host, (path, "Prefix", backend("next")))],
        annotations=notes,
        created="2026-01-02T00:00:00Z",
    )


def location_backends(config: Configuration, host: str) -> dict[str, str | None]:
    server = next(s for s in config.static.servers if s.host == host)
    kinds = {EXACT: "exact", PREFIX: "prefix", REGEX: "regex"}
    return {f"{kinds[loc.match]} {loc.path}": loc.backend for loc in server.locations}


def backend_named(config: Configuration, name: str) -> Any:
    return next(b for b in config.backends if b.name == name)


def test_the_main_route_gets_a_canary_backend_with_the_policy() -> None:
    config = run(main(), canary(canary_weight="30", canary_by_header="X-Canary", canary_by_cookie="beta"))
    alias = f"{APP}~{NEXT}~default/canary"
    assert location_backends(config, "a.test") == {"prefix /": alias}
    assert backend_named(config, alias).endpoints == ()
    assert backend_named(config, alias).canary == Canary(
        main=APP, backend=NEXT, header="X-Canary", cookie="beta", weight=30, weight_total=100
    )
    assert [b.name for b in config.backends] == sorted([APP, NEXT, alias])
    assert {r.name for r in config.ingresses} == {"main", "canary"}
    assert not config.problems


def test_header_value_wins_over_pattern_and_weight_total_below_100_counts_as_100() -> None:
    config = run(
        main(),
        canary(
            canary_by_header="X-Canary",
            canary_by_header_value="v2",
            canary_by_header_pattern="^v[0-9]+$",
            canary_weight="50",
            canary_weight_total="10",
        ),
    )
    policy = backend_named(config, f"{APP}~{NEXT}~default/canary").canary
    assert (policy.header_value, policy.header_pattern, policy.weight, policy.weight_total) == ("v2", None, 50, 100)


def test_only_the_route_of_the_same_host_and_path_is_affected() -> None:
    other = ingress("other", rules=[rule("b.test", ("/", "Prefix", backend("app")))], created="2026-01-01T00:00:00Z")
    two_paths = ingress(
        "main",
        rules=[rule("a.test", ("/api", "Prefix", backend("app")), ("/web", "Prefix", backend("app")))],
        created="2026-01-01T00:00:00Z",
    )
    config = run(two_paths, other, canary(path="/api", canary_weight="100"))
    assert location_backends(config, "a.test")["prefix /api/"] == f"{APP}~{NEXT}~default/canary"
    assert location_backends(config, "a.test")["exact /api"] == f"{APP}~{NEXT}~default/canary"
    assert location_backends(config, "a.test")["prefix /web/"] == APP
    assert location_backends(config, "b.test") == {"prefix /": APP}


def test_a_canary_without_a_main_ingress_is_reported_and_serves_nothing() -> None:
    config = run(main(), canary(name="lost", host="nowhere.test", canary_weight="10"))
    assert "nowhere.test" not in {s.host for s in config.static.servers}
    (problem,) = [p for p in config.problems if p.ref.name == "lost"]
    assert problem.field == "spec.rules[0].http.paths[0]"
    assert "no main Ingress serves host nowhere.test path /; not served" in problem.reason
    assert "lost" not in {r.name for r in config.ingresses}
    # A canary on a path the main Ingress does not have is reported too.
    config = run(main(path="/a"), canary(name="lost", path="/b", canary_weight="10"))
    assert any("path /b; not served" in p.reason for p in config.problems if p.ref.name == "lost")
    assert set(location_backends(config, "a.test").values()) == {APP, None}


def test_a_second_canary_on_the_same_route_is_reported_the_older_wins() -> None:
    older = canary(name="c1", canary_weight="10")
    newer = canary(name="c2", canary_weight="90")
    newer["metadata"]["creationTimestamp"] = "2026-01-03T00:00:00Z"
    config = run(main(), older, newer)
    assert backend_named(config, f"{APP}~{NEXT}~default/c1").canary.weight == 10
    assert any("already has the canary Ingress default/c1" in p.reason for p in config.problems if p.ref.name == "c2")


def test_a_canary_never_owns_a_host_and_cannot_reach_another_namespace() -> None:
    # The canary is older than the main Ingress: the host still belongs to the main one's namespace.
    early = canary(name="early", canary_weight="10")
    early["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    config = run(main(), early)
    assert backend_named(config, f"{APP}~{NEXT}~default/early").canary.weight == 10
    # A canary of another namespace is rejected as any Ingress naming a host it does not own.
    foreign = canary(name="foreign", canary_weight="100")
    foreign["metadata"]["namespace"] = "evil"
    config = run(main(), foreign, service("next", namespace="evil"))
    assert location_backends(config, "a.test") == {"prefix /": APP}
    (problem,) = [p for p in config.problems if p.ref.name == "foreign"]
    assert "belongs to namespace default" in problem.reason and problem.reason.endswith("Ingress rejected")


@pytest.mark.parametrize(
    ("annotations", "field", "reason"),
    [
        ({"canary_weight": "ten"}, "canary-weight", "is not a whole number"),
        ({"canary_weight": "150"}, "canary-weight", "more than canary-weight-total (100)"),
        ({"canary_by_header": "X_Canary"}, "canary-by-header", "is not a header name"),
        ({"canary_by_header": "X-Canary", "canary_by_header_pattern": "(a+)+$"}, "canary-by-header-pattern", ""),
        ({"canary_by_header": "X-Canary", "canary_by_header_pattern": "(?=x)"}, "canary-by-header-pattern", ""),
        ({"canary_by_cookie": "a;b"}, "canary-by-cookie", "is not a cookie name"),
        ({"canary_by_header": "X-C", "canary_by_header_value": 'a"b'}, "canary-by-header-value", ""),
    ],
)
def test_invalid_values_reject_that_canary_alone(annotations: dict[str, str], field: str, reason: str) -> None:
    config = run(main(), canary(name="bad", **annotations), main(name="other", host="b.test"))
    assert location_backends(config, "a.test") == {"prefix /": APP}
    assert location_backends(config, "b.test") == {"prefix /": APP}
    (problem,) = [p for p in config.problems if p.ref.name == "bad"]
    assert problem.field == f'metadata.annotations["{NGINX}{field}"]'
    assert reason in problem.reason and problem.reason.endswith("Ingress rejected")


def test_canary_annotations_without_canary_true_warn_and_change_nothing() -> None:
    plain = ingress(
        "main",
        rules=[rule("a.test", ("/", "Prefix", backend("app")))],
        annotations={NGINX + "canary-weight": "50", OURS + "canary": "false"},
    )
    config = run(plain)
    assert location_backends(config, "a.test") == {"prefix /": APP}
    assert any("has no effect without canary" in p.reason for p in config.problems)


def test_other_annotations_of_a_canary_are_reported_as_unused() -> None:
    c = canary(canary_weight="5")
    c["metadata"]["annotations"][NGINX + "proxy-read-timeout"] = "30"
    config = run(main(), c)
    assert any("not used on a canary Ingress" in p.reason and "proxy-read-timeout" in p.field for p in config.problems)


_CHARS = st.sampled_from([*"aZ09-_.~!&()*+,=:@/?%| ;{}$#\"'\\\n\t[]^<>", "é", "\x00", "(?", "(?:", "\\d"])
_TEXT = st.lists(_CHARS, min_size=1, max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT)
def test_parsers_accept_only_their_charsets(text: str) -> None:
    """What each canary parser accepts holds only characters the Lua side accepts, never a control
    character, quote, brace, ';' or '#'; a pattern compiles and has no quantified group."""
    for parse, allowed in (
        (v.header_name, r"[A-Za-z0-9-]+"),
        (v.cookie_name, r"[A-Za-z0-9_.-]+"),
        (v.header_value, r"[A-Za-z0-9._~!&()*+,=:@/?%| -]+"),
        (v.header_pattern, r"[A-Za-z0-9 !%&,/:<=>@_~.^$|*+?()\[\]\\-]+"),
    ):
        try:
            value = parse(text)
        except Invalid:
            continue
        assert value == text and re.fullmatch(allowed, value), (parse.__name__, value)
        if parse is v.header_pattern:
            re.compile(value)
            assert not re.search(r"\)[*+?{]", value) and "(?=" not in value and "{" not in value
        if parse is v.header_value:
            assert value == value.strip()


@settings(max_examples=200, deadline=None)
@given(weight=st.integers(0, 2000), total=st.integers(1, 2000))
def test_weight_is_accepted_exactly_up_to_the_total(weight: int, total: int) -> None:
    config = run(main(), canary(canary_weight=str(weight), canary_weight_total=str(total)))
    effective = max(total, 100)
    if weight <= effective:
        policy = backend_named(config, f"{APP}~{NEXT}~default/canary").canary
        assert (policy.weight, policy.weight_total) == (weight, effective)
    else:
        assert location_backends(config, "a.test") == {"prefix /": APP}
        assert any(p.ref.name == "canary" and "canary-weight" in p.field for p in config.problems)


def test_canaries_of_the_same_services_on_two_hosts_keep_their_own_policies() -> None:
    config = run(
        main(),
        main(name="main-b", host="b.test"),
        canary(canary_weight="10"),
        canary(name="canary-b", host="b.test", canary_weight="90"),
    )
    assert backend_named(config, location_backends(config, "a.test")["prefix /"]).canary.weight == 10
    assert backend_named(config, location_backends(config, "b.test")["prefix /"]).canary.weight == 90
    assert not config.problems


def test_no_canary_value_reaches_nginx_conf() -> None:
    """The policy goes to the balancer as JSON: nginx.conf names only the route's backend."""
    from ingressctl.dataplane.paths import Paths
    from ingressctl.dataplane.render import Renderer

    config = run(
        main(),
        canary(
            canary_by_header="X-Canary-Probe",
            canary_by_header_pattern=r"^zz[0-9]+\.q$",
            canary_by_cookie="cookie-probe",
            canary_weight="77",
        ),
    )
    text = Renderer(paths=Paths(work="/w", lua="/l")).render(config.static).text
    assert f'"{APP}~{NEXT}~default/canary"' in text
    # (no number probe: certificate names are hashes, and may hold any digits)
    for probe in ("X-Canary-Probe", "x_canary_probe", "zz[0-9]", "cookie-probe", "weight"):
        assert probe.lower() not in text.lower()


def test_nginx_accepts_a_configuration_with_canaries() -> None:
    """`nginx -t` with our templates and Lua on canary routes (backend names with '~' and '/')."""
    from tests.test_annotations_translate import nginx_test

    two_paths = ingress(
        "main",
        rules=[rule("a.test", ("/api", "Prefix", backend("app")), ("/", "Exact", backend("app")))],
        annotations={NGINX + "use-regex": "false", NGINX + "proxy-read-timeout": "30"},
        created="2026-01-01T00:00:00Z",
    )
    config = run(two_paths, canary(path="/api", canary_weight="5"), canary(name="root", path="/", canary_weight="7"))
    assert len([b for b in config.backends if b.canary is not None]) == 2
    result = nginx_test(config)
    assert result.ok, result.output


def test_host_rules_and_catch_alls_follow_the_tenancy_policy() -> None:
    import dataclasses

    from ingressctl.config import TenancyPolicy

    foreign = canary(name="foreign", canary_weight="100")
    foreign["metadata"]["namespace"] = "other"
    objects = [
        main(),
        foreign,
        service("next", namespace="other"),
        endpoint_slice("next", ["10.0.9.1"], namespace="other"),
    ]
    cache = Cache()
    cache.load(Event(EventType.ADDED, o["kind"], o) for o in (*BASE, *objects))
    open_policy = dataclasses.replace(SETTINGS, tenancy=TenancyPolicy(allow_cross_namespace_hosts=True))
    config = translate(cache.snapshot(), open_policy)
    assert location_backends(config, "a.test") == {"prefix /": f"{APP}~other/next:80~other/foreign"}
    # A rule without a host reaches the catch-all routes: only from a catch-all namespace.
    hostless = ingress("any", rules=[rule(None, ("/", "Prefix", backend("app")))], created="2026-01-01T00:00:00Z")
    stray = ingress(
        "stray",
        namespace="other",
        rules=[rule(None, ("/", "Prefix", backend("next")))],
        annotations={NGINX + "canary": "true", NGINX + "canary-weight": "100"},
    )
    config = run(hostless, stray, service("next", namespace="other"))
    default = {loc.path: loc.backend for loc in config.static.default_server.locations}
    assert default["/"] == APP
    assert any("catch-all-namespaces" in p.reason for p in config.problems if p.ref.name == "stray")
    allowed = ingress(
        "allowed",
        rules=[rule(None, ("/", "Prefix", backend("next")))],
        annotations={NGINX + "canary": "true", NGINX + "canary-weight": "100"},
    )
    config = run(hostless, allowed)
    default = {loc.path: loc.backend for loc in config.static.default_server.locations}
    assert default["/"] == f"{APP}~{NEXT}~default/allowed"
