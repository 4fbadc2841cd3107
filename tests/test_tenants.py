"""Tenancy through translate (ingressctl.translate.tenancy): host ownership by namespace, wildcards,
IP hosts, catch-alls, caps, the single-team switch, and missing pathType. The same captures through
real nginx are in tests/test_tenants_nginx.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from ingressctl.cache import Cache
from ingressctl.certs import self_signed
from ingressctl.cli import build_parser, settings_from
from ingressctl.config import Configuration, TenancyPolicy
from ingressctl.dataplane.paths import Paths
from ingressctl.dataplane.refusal import trace
from ingressctl.dataplane.render import Renderer
from ingressctl.model import Event, EventType, Obj
from ingressctl.sources.legacy import convert_ingress
from ingressctl.translate import Settings, translate
from tests.certs import make_cert, tls_secret
from tests.harness import backend, ingress, ingress_class, rule, service

FALLBACK = self_signed()
BASE = [ingress_class(), service("app", namespace="team-a"), service("app", namespace="team-b"), service("app")]


def ts(day: int) -> str:
    return f"2024-01-{day:02d}T00:00:00Z"


def run(objects: Iterable[Obj], **settings: Any) -> Configuration:
    cache = Cache()
    for obj in [*BASE, *objects]:
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    return translate(cache.snapshot(), Settings(fallback_certificate=FALLBACK, **settings))


def team(ns: str, name: str, host: str | None, *paths: str, day: int = 1, **kwargs: Any) -> Obj:
    return ingress(
        name,
        namespace=ns,
        created=ts(day),
        rules=[rule(host, *((p, "Prefix", backend("app")) for p in paths or ("/",)))],
        **kwargs,
    )


def configmap(data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ctl"}, "data": data}


def problems(config: Configuration) -> list[str]:
    return [str(p) for p in config.problems]


def served(config: Configuration) -> dict[str, list[tuple[str, str | None]]]:
    """host -> [(location path, backend)], for every server including the default one ("")."""
    servers = (config.static.default_server, *config.static.servers)
    return {s.host: [(loc.match + loc.path, loc.backend) for loc in s.locations] for s in servers}


A_SERVES = [("/", "team-a/app:80")]
OWNED = (
    "host a.example.com belongs to namespace team-a (Ingress team-a/a claimed it first); other namespaces "
    "cannot add paths, TLS or backends to it; Ingress rejected"
)


def test_another_namespace_cannot_add_a_path_to_an_owned_host() -> None:
    config = run([team("team-a", "a", "a.example.com", day=1), team("team-b", "b", "a.example.com", "/admin", day=2)])
    assert served(config)["a.example.com"] == A_SERVES
    assert problems(config) == [f"Ingress team-b/b: spec.rules[0].host: {OWNED}"]
    assert [r.name for r in config.ingresses] == ["a"]  # b gets no status: it is rejected


def test_the_oldest_owns_whatever_the_namespace_then_the_uid() -> None:
    config = run([team("team-a", "a", "a.example.com", day=2), team("team-b", "b", "a.example.com", "/admin", day=1)])
    assert served(config)["a.example.com"] == [("/", None), ("=/admin", "team-b/app:80"), ("/admin/", "team-b/app:80")]
    assert problems(config)[0].startswith(
        "Ingress team-a/a: spec.rules[0].host: host a.example.com belongs to namespace team-b"
    )
    # Same creationTimestamp: the lower UID wins (namespace/name only where there is no UID).
    a, b = team("team-a", "a", "a.example.com"), team("team-b", "b", "a.example.com", "/x")
    a["metadata"]["uid"], b["metadata"]["uid"] = "f000", "0fff"
    assert run([a, b]).ingresses[0].namespace == "team-b"


def test_same_namespace_still_shares_hosts() -> None:
    config = run([team("team-a", "a", "a.example.com", day=1), team("team-a", "a2", "a.example.com", "/api", day=2)])
    assert problems(config) == []
    assert ("/api/", "team-a/app:80") in served(config)["a.example.com"]


def test_single_team_clusters_can_share_hosts_across_namespaces() -> None:
    objects = [team("team-a", "a", "a.example.com", day=1), team("team-b", "b", "a.example.com", "/admin", day=2)]
    for settings in (
        {"tenancy": TenancyPolicy(allow_cross_namespace_hosts=True)},
        {"configmap": ("ctl", "c"), "extra": [configmap({"allow-cross-namespace-hosts": "true"})]},
    ):
        extra = settings.pop("extra", [])
        config = run([*objects, *extra], **settings)  # type: ignore[arg-type]
        assert problems(config) == []
        assert ("/admin/", "team-b/app:80") in served(config)["a.example.com"]


def test_tls_for_an_owned_host_is_refused() -> None:
    cert = tls_secret("b-tls", *make_cert("a.example.com"), namespace="team-b")
    sneaky = team(
        "team-b",
        "b",
        "b.example.com",
        day=2,
        tls=[{"hosts": ["a.example.com", "b.example.com"], "secretName": "b-tls"}],
    )
    config = run([team("team-a", "a", "a.example.com", day=1), cert, sneaky])
    assert problems(config) == [f"Ingress team-b/b: spec.tls[0].hosts[0]: {OWNED}"]
    server = {s.host: s for s in config.static.servers}
    assert set(server) == {"a.example.com"}
    assert server["a.example.com"].certificate is None and not server["a.example.com"].redirect_https


def test_wildcards_need_two_labels_unless_allowed() -> None:
    config = run([team("team-b", "b", "*.com", day=1)])
    assert problems(config) == [
        "Ingress team-b/b: spec.rules[0].host: wildcard *.com would take every unnamed host under com: a wildcard "
        "needs two labels after '*.' unless the ConfigMap's allowed-wildcard-hosts lists it; Ingress rejected"
    ]
    assert config.static.servers == ()
    allowed = run(
        [team("team-b", "b", "*.com"), configmap({"allowed-wildcard-hosts": "*.internal, *.com"})],
        configmap=("ctl", "c"),
    )
    assert problems(allowed) == []
    assert [s.host for s in allowed.static.servers] == ["*.com"]


def test_a_wildcard_of_another_namespace_is_its_own_server() -> None:
    """*.example.com in team-b and a.example.com in team-a: both are served; nginx prefers the exact
    server_name, so the wildcard never takes a.example.com (through nginx: test_tenants_nginx)."""
    config = run([team("team-b", "b", "*.example.com", day=1), team("team-a", "a", "a.example.com", day=2)])
    assert problems(config) == []
    assert {s.host: s.server_name for s in config.static.servers} == {
        "*.example.com": r"~^[^.]+\.example\.com$",
        "a.example.com": "a.example.com",
    }


@pytest.mark.parametrize("host", ["10.0.0.1", "127.0.0.1", "192.168.1.255"])
def test_ip_addresses_are_not_hosts(host: str) -> None:
    config = run([team("team-b", "b", host)])
    assert problems(config) == [
        f"Ingress team-b/b: spec.rules[0].host: {host!r} is an IP address; a rule's host must be a DNS name "
        "(omit it to match any host); Ingress rejected"
    ]


def test_catch_alls_only_from_listed_namespaces() -> None:
    only_default = ingress("fb", namespace="team-b", default_backend=backend("app"), created=ts(1))
    hostless = team("team-b", "all", None, "/", day=1)
    mixed = ingress(
        "mixed",
        namespace="team-b",
        created=ts(1),
        rules=[rule(None, ("/x", "Prefix", backend("app"))), rule("b.example.com", ("/", "Prefix", backend("app")))],
    )
    config = run([only_default, hostless, mixed])
    assert served(config)[""] == [("/", None)]  # the default server is untouched
    assert served(config)["b.example.com"] == [("/", "team-b/app:80")]  # the rest of `mixed` is served
    assert sorted(problems(config)) == [
        f"Ingress team-b/{name}: {field}: serves hosts no rule names (a catch-all), which only the namespaces "
        "listed in catch-all-namespaces may do (default); ignored"
        for name, field in [("all", "spec.rules[0]"), ("fb", "spec.defaultBackend"), ("mixed", "spec.rules[0]")]
    ]
    listed = run([only_default], tenancy=TenancyPolicy(catch_all_namespaces=("team-b",)))
    assert problems(listed) == [] and served(listed)[""] == [("/", "team-b/app:80")]
    by_configmap = run([only_default, configmap({"catch-all-namespaces": "team-b"})], configmap=("ctl", "c"))
    assert served(by_configmap)[""] == [("/", "team-b/app:80")]
    # The default namespace is listed by default: single-team setups keep their catch-all.
    assert served(run([ingress("fb", default_backend=backend("app"))]))[""] == [("/", "default/app:80")]


def many_rules(n: int, paths: int = 1) -> Obj:
    return ingress(
        "big",
        namespace="team-b",
        rules=[
            rule(f"h{i}.example.com", *((f"/p{j}", "Prefix", backend("app")) for j in range(paths))) for i in range(n)
        ],
    )


@pytest.mark.parametrize(
    ("obj", "settings", "field", "reason"),
    [
        (many_rules(101), {}, "spec.rules", "101 rules is more than the cap of 100 (max-rules-per-ingress)"),
        (
            many_rules(1, 101),
            {},
            "spec.rules[0].http.paths",
            "101 paths is more than the cap of 100 (max-paths-per-rule)",
        ),
        (
            team("team-b", "big", "b.example.com", annotations={"x": "y" * 70000}),
            {},
            "metadata.annotations",
            "70001 bytes is more than the cap of 65536 (max-annotation-bytes)",
        ),
        (many_rules(3), {"max_rules_per_ingress": 2}, "spec.rules", "3 rules is more than the cap of 2"),
        (
            many_rules(50, 50),
            {"max_object_bytes": 100000},
            "metadata",
            "more than the cap of 100000 (max-object-bytes)",
        ),
    ],
    ids=["rules", "paths", "annotations", "rules-policy", "object-bytes"],
)
def test_caps_reject_the_ingress_whole(obj: Obj, settings: dict[str, Any], field: str, reason: str) -> None:
    config = run([team("team-a", "a", "a.example.com"), obj], tenancy=TenancyPolicy(**settings))
    (problem,) = config.problems
    assert (problem.ref.name, problem.field) == ("big", field)
    assert reason in problem.reason and problem.reason.endswith("; Ingress rejected")
    assert [s.host for s in config.static.servers] == ["a.example.com"]  # nothing of it, nothing truncated


def test_the_hosts_cap_rejects_the_newest() -> None:
    objects = [team("team-a", f"a{i}", f"a{i}.example.com", day=i + 1) for i in range(4)]
    config = run([*objects, configmap({"max-hosts": "3"})], configmap=("ctl", "c"))
    assert [s.host for s in config.static.servers] == ["a0.example.com", "a1.example.com", "a2.example.com"]
    assert problems(config) == [
        "Ingress team-a/a3: spec.rules: its 1 new hosts would pass the cap of 3 hosts in the whole configuration "
        "(max-hosts); Ingress rejected"
    ]


def test_policy_keys_in_the_configmap_are_checked() -> None:
    config = run(
        [configmap({"max-hosts": "0", "catch-all-namespaces": "Bad_NS", "max-paths-per-rule": "5", "nope": "1"})],
        configmap=("ctl", "c"),
    )
    assert problems(config) == [
        "ConfigMap ctl/c: data.catch-all-namespaces: 'Bad_NS' is not a namespace name (ignored)",
        "ConfigMap ctl/c: data.max-hosts: '0' is not a number from 1 to 1000000 (ignored)",
        "ConfigMap ctl/c: data.nope: unknown option (ignored)",
    ]


def test_missing_path_type_on_v1_is_rejected_with_the_field() -> None:
    obj = team("team-a", "a", "a.example.com")
    del obj["spec"]["rules"][0]["http"]["paths"][0]["pathType"]
    config = run([obj])
    assert problems(config) == [
        "Ingress team-a/a: spec.rules[0].http.paths[0].pathType: is required: one of Exact, Prefix, "
        "ImplementationSpecific; Ingress rejected"
    ]
    legacy = {
        "apiVersion": "extensions/v1beta1",
        "kind": "Ingress",
        "metadata": {"name": "old", "namespace": "team-a"},
        "spec": {
            "ingressClassName": "ingressctl",
            "rules": [
                {
                    "host": "a.example.com",
                    "http": {"paths": [{"path": "/x", "backend": {"serviceName": "app", "servicePort": 80}}]},
                }
            ],
        },
    }
    converted = run([convert_ingress(legacy)])
    assert problems(converted) == []
    assert ("/x", "team-a/app:80") in served(converted)["a.example.com"]  # ImplementationSpecific: a plain prefix


# --- tracing what nginx refuses back to Ingresses (ingressctl.dataplane.refusal) ---------------

RENDERER = Renderer(paths=Paths(work="/run/ingressctl", lua="/usr/share/ingressctl/lua"))


def traced(config: Configuration, output: str) -> tuple[list[str], str]:
    text = RENDERER.render(config.static).text
    result = trace(output, text=text, candidate="/run/ingressctl/nginx.conf.new", config=config)
    return [f"{r.namespace}/{r.name}" for r in result.culprits], result.reason


def line_of(config: Configuration, needle: str) -> int:
    lines = RENDERER.render(config.static).text.splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_a_refused_certificate_file_traces_to_the_ingresses_that_chose_it() -> None:
    secret = tls_secret("a-tls", *make_cert("a.example.com"), namespace="team-a")
    tls = [{"hosts": ["a.example.com"], "secretName": "a-tls"}]
    config = run(
        [secret, team("team-a", "a", "a.example.com", tls=tls), team("team-a", "a2", "a.example.com", "/x", day=2)]
    )
    (server,) = config.static.servers
    output = (
        f'2026/12/04 18:18:37 [emerg] 1#1: SSL_CTX_use_certificate("/run/ingressctl/certs/{server.certificate}.pem") '
        "failed (SSL: error:0A00018F:SSL routines::ee key too small)\nnginx: configuration file test failed"
    )
    assert traced(config, output) == (
        ["team-a/a"],  # a2 has no TLS section: it did not choose the certificate
        f'SSL_CTX_use_certificate("{server.certificate}.pem") failed '
        "(SSL: error:0A00018F:SSL routines::ee key too small)",
    )
    default = output.replace(server.certificate or "", config.static.default_certificate)
    assert traced(config, default)[0] == []  # the admin's default certificate: no tenant to blame


def test_a_refused_line_traces_to_the_newest_ingress_of_its_server() -> None:
    config = run([team("team-a", "a", "a.example.com"), team("team-a", "a2", "a.example.com", "/x", day=2)])
    line = line_of(config, 'location "/x/"')
    output = f"nginx: [emerg] something wrong in /run/ingressctl/nginx.conf.new:{line}"
    assert traced(config, output) == (["team-a/a2"], "something wrong in nginx.conf.new:" + str(line))
    http_line = line_of(config, "proxy_http_version")
    assert traced(config, output.replace(f":{line}", f":{http_line}"))[0] == []  # the http block: nobody's
    assert traced(config, "nginx: [emerg] something in /elsewhere.conf:3")[0] == []


def test_policy_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    def policy(*args: str) -> TenancyPolicy:
        return settings_from(build_parser().parse_args(["render", *args])).tenancy

    assert policy() == TenancyPolicy()  # cross-namespace sharing off, catch-alls from `default`
    assert policy("--allow-cross-namespace-hosts", "--catch-all-namespaces", "ops, infra") == TenancyPolicy(
        allow_cross_namespace_hosts=True, catch_all_namespaces=("infra", "ops")
    )
    assert policy("--catch-all-namespaces", "").catch_all_namespaces == ()
    monkeypatch.setenv("INGRESSCTL_CATCH_ALL_NAMESPACES", "ops")
    assert policy().catch_all_namespaces == ("ops",)
    with pytest.raises(SystemExit):
        policy("--catch-all-namespaces", "Not_A_Namespace")
