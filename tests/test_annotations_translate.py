"""Annotations in translate and render: typed fields only on the locations of the Ingress that sets
them, server scope decided by the host's owner, aliases and www servers, rejection of one Ingress
alone, regex locations in nginx's order, and (hypothesis) that whatever annotation values translate
accepts, render prints without complaint."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingressctl.cache import Cache
from ingressctl.config import EXACT, PREFIX, REGEX, Certificate, Configuration, Location, Policy, ServerPolicy
from ingressctl.dataplane import htpasswd
from ingressctl.dataplane.nginx import Nginx
from ingressctl.dataplane.paths import Paths, lua_dir
from ingressctl.dataplane.render import Renderer
from ingressctl.model import Event, EventType
from ingressctl.translate import Settings, translate
from ingressctl.translate.annotations.registry import BY_NAME, NGINX, OURS
from tests.certs import make_cert
from tests.harness import backend, endpoint_slice, ingress, ingress_class, opaque_secret, rule, service
from tests.test_annotations import EXAMPLES

SETTINGS = Settings(fallback_certificate=Certificate.from_pem(*make_cert("fallback")))
# The users of EXAMPLES' auth-secret (alice's password: "alice", an $apr1$ hash).
BASIC_AUTH = opaque_secret("basic-auth", {"alice": "$apr1$9r4Hk8Zr$jXDdJMuzQYs8.v8IycIyj1"})
BASE = [ingress_class(), service("app"), endpoint_slice("app", ["10.0.0.1"]), service("other"), BASIC_AUTH]
APP = "default/app:80"
OTHER = "default/other:80"


def run(*objs: dict[str, Any]) -> Configuration:
    cache = Cache()
    cache.load(Event(EventType.ADDED, o["kind"], o) for o in (*BASE, *objs))
    return translate(cache.snapshot(), SETTINGS)


def ing(name: str, host: str, annotations: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    paths = kw.pop("paths", None) or [("/", "Prefix", backend("app"))]
    return ingress(name, rules=[rule(host, *paths)], annotations=annotations, **kw)


def server(config: Configuration, host: str) -> Any:
    return next(s for s in config.static.servers if s.host == host)


def render(config: Configuration) -> str:
    return Renderer(paths=Paths(work="/w", lua="/l")).render(config.static).text


def test_ingresses_without_annotations_are_unchanged() -> None:
    plain = run(ing("a", "a.example.com", paths=[("/api", "Prefix", backend("app"))]))
    ignored_only = run(
        ing(
            "a", "a.example.com", {NGINX + "mirror-target": "http://m.test"}, paths=[("/api", "Prefix", backend("app"))]
        )
    )
    assert plain.static == ignored_only.static
    assert all(loc.policy is None for s in plain.static.servers for loc in s.locations)
    assert all(s.policy is None for s in plain.static.servers)
    text = render(plain)
    for directive in ("proxy_read_timeout 1", "add_header", "allow ", "rewrite ", "grpc_pass", "_upstream_https;"):
        server_blocks = text.split('server_name "a.example.com"')[1]
        assert directive not in server_blocks


def test_location_policy_only_on_the_annotated_ingress() -> None:
    config = run(
        ing("a", "shared.example.com", {NGINX + "proxy-read-timeout": "300"}, paths=[("/a", "Exact", backend("app"))]),
        ing("b", "shared.example.com", paths=[("/b", "Exact", backend("other"))]),
    )
    locations = {loc.path: loc for loc in server(config, "shared.example.com").locations}
    assert locations["/a"].policy == Policy(read_timeout=300)
    assert locations["/b"].policy is None
    assert locations["/"].policy is None, "the fallback belongs to no Ingress"
    text = render(config)
    assert text.count("proxy_read_timeout 300s;") == 1


def test_regex_locations_longest_first_after_the_others() -> None:
    config = run(
        ing(
            "r",
            "r.example.com",
            {NGINX + "use-regex": "true"},
            paths=[
                ("/a(/|$)(.*)", "ImplementationSpecific", backend("app")),
                ("/a/b/c/d(.*)", "Prefix", backend("other")),
                ("/exact", "Exact", backend("app")),
            ],
        )
    )
    locations = server(config, "r.example.com").locations
    assert [(loc.match, loc.path) for loc in locations] == [
        (PREFIX, "/"),
        (EXACT, "/exact"),
        (REGEX, "/a/b/c/d(.*)"),
        (REGEX, "/a(/|$)(.*)"),
    ]
    text = render(config)
    assert 'location ~* "^/a/b/c/d(.*)" {' in text
    assert text.index('"^/a/b/c/d(.*)"') < text.index('"^/a(/|$)(.*)"')


def test_invalid_annotation_rejects_that_ingress_alone() -> None:
    config = run(
        ing("good", "good.example.com", {NGINX + "proxy-body-size": "8m"}),
        ing("bad", "bad.example.com", {NGINX + "proxy-body-size": "8m;\n}"}),
        ing("snippet", "snippet.example.com", {OURS + "server-snippet": "return 200;"}),
    )
    assert [s.host for s in config.static.servers] == ["good.example.com"]
    reasons = {p.ref.name: (p.field, p.reason) for p in config.problems}
    assert reasons["bad"][0] == f'metadata.annotations["{NGINX}proxy-body-size"]'
    assert reasons["bad"][1].endswith("Ingress rejected")
    assert "server-alias" in reasons["snippet"][1] and reasons["snippet"][1].endswith("Ingress rejected")


def test_server_scope_owner_wins_and_the_other_is_reported() -> None:
    config = run(
        ing("owner", "h.example.com", {NGINX + "ssl-redirect": "false"}, created="2024-01-01T00:00:00Z"),
        ing(
            "late",
            "h.example.com",
            {NGINX + "force-ssl-redirect": "true"},
            paths=[("/late", "Exact", backend("app"))],
            created="2024-02-01T00:00:00Z",
        ),
        ing(
            "agrees",
            "h.example.com",
            {NGINX + "ssl-redirect": "false"},
            paths=[("/agrees", "Exact", backend("app"))],
            created="2024-03-01T00:00:00Z",
        ),
    )
    s = server(config, "h.example.com")
    assert s.policy == ServerPolicy(ssl_redirect=False)
    assert not s.redirect_https
    assert [(p.ref.name, p.field) for p in config.problems] == [("late", "metadata.annotations")]
    assert "decided by its owner, Ingress default/owner" in config.problems[0].reason


def test_aliases_and_www_servers() -> None:
    config = run(
        ing("a", "a.example.com", {NGINX + "server-alias": "alias.example.com, b.example.com"}),
        ing("b", "b.example.com"),
        ing("www", "www.shop.example.com", {NGINX + "from-to-www-redirect": "true"}),
        ing("apex", "apex.example.com", {NGINX + "from-to-www-redirect": "true"}),
        ing("taken", "taken.example.com", {NGINX + "from-to-www-redirect": "true"}),
        ing("www-taken", "www.taken.example.com"),
    )
    a = server(config, "a.example.com")
    assert a.policy.aliases == ("alias.example.com",)
    assert any("server-alias b.example.com" in p.reason for p in config.problems)
    shop = server(config, "shop.example.com")
    assert (shop.redirect_to, shop.locations) == ("www.shop.example.com", ())
    assert server(config, "www.apex.example.com").redirect_to == "apex.example.com"
    assert server(config, "www.taken.example.com").redirect_to is None, "a real host is never replaced"
    text = render(config)
    assert 'server_name "a.example.com" "alias.example.com";' in text
    assert 'set $ingressctl_www "www.shop.example.com";' in text


def test_annotation_change_is_only_a_location_change() -> None:
    before = run(ing("a", "a.example.com"))
    after = run(ing("a", "a.example.com", {NGINX + "enable-cors": "true"}))
    old, new = server(before, "a.example.com"), server(after, "a.example.com")
    assert [(loc.path, loc.match, loc.backend) for loc in old.locations] == [
        (loc.path, loc.match, loc.backend) for loc in new.locations
    ]
    assert old != new


# Values drawn from each annotation's documented example, mutated with characters that matter.
_NOISE = st.text(alphabet=st.sampled_from(list(" ;{}$#\"'\\\n\r\t()|[]^?+*,./:-_aZ09é")), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    picks=st.lists(st.tuples(st.sampled_from(sorted(BY_NAME)), _NOISE, st.booleans()), min_size=1, max_size=6),
)
def test_whatever_translate_accepts_renders(picks: list[tuple[str, str, bool]]) -> None:
    """Any mix of annotation values: translate accepts or rejects the Ingress; render never refuses
    what translate accepted (so nothing unchecked reaches nginx.conf, and nothing checked breaks it)."""
    annotations = {}
    for name, noise, prefix in picks:
        example = EXAMPLES[name][0]
        annotations[NGINX + name] = example + noise if prefix else noise + example
    config = run(ing("x", "x.example.com", annotations, paths=[("/p", "Prefix", backend("app"))]))
    text = render(config)
    if any(s.host == "x.example.com" for s in config.static.servers):
        assert 'server_name "x.example.com"' in text
    else:
        assert any(p.ref.name == "x" and p.reason.endswith("Ingress rejected") for p in config.problems)


def test_location_fields_cover_the_policy() -> None:
    """Every Policy field is printed by the template when set (a new field cannot be silently dropped)."""
    template = (Path(__file__).resolve().parent.parent / "templates" / "policy.conf.j2").read_text()
    through_properties = {"ssl_secret": "p.ssl_unusable", "protocol": "p.upstream"}
    for name in Policy.__dataclass_fields__:
        assert f"p.{name}" in template or through_properties.get(name, "?") in template, name
    for name in ServerPolicy.__dataclass_fields__:
        assert name in (
            Path(__file__).resolve().parent.parent / "templates" / "server.conf.j2"
        ).read_text() or name in (
            "ssl_redirect",
            "force_ssl_redirect",
            "from_to_www",
        ), name
    assert Location.__dataclass_fields__["policy"].default is None


def test_directives_of_annotations_a_request_cannot_observe() -> None:
    """Settings whose effect no single request shows (buffering, connect and send timeouts, the retry
    time limit): the exact directives, in the annotated location only; gRPC gets grpc_* ones."""
    config = run(
        ing(
            "a",
            "a.example.com",
            {
                NGINX + "proxy-buffering": "on",
                NGINX + "client-body-buffer-size": "64k",
                NGINX + "proxy-connect-timeout": "7",
                NGINX + "proxy-send-timeout": "70",
                NGINX + "proxy-next-upstream-timeout": "9",
                NGINX + "proxy-next-upstream": "error http_503",
            },
        ),
        ing("g", "g.example.com", {NGINX + "backend-protocol": "GRPC", NGINX + "proxy-read-timeout": "600"}),
    )
    a_block = render(config).split('server_name "a.example.com";')[1].split("server {")[0]
    for directive in (
        "proxy_buffering on;",
        'client_body_buffer_size "64k";',
        "proxy_connect_timeout 7s;",
        "proxy_send_timeout 70s;",
        "proxy_next_upstream_timeout 9s;",
        'proxy_next_upstream "error" "http_503";',
    ):
        assert directive in a_block, directive
    g_block = render(config).split('server_name "g.example.com";')[1].split("server {")[0]
    assert "grpc_read_timeout 600s;" in g_block and "grpc_pass grpc://ingressctl_upstream_grpc;" in g_block
    assert "proxy_read_timeout" not in g_block


@settings(max_examples=30, deadline=None)
@given(
    picks=st.lists(
        st.tuples(st.sampled_from(sorted(BY_NAME)), st.one_of(st.just(""), st.just(" "), _NOISE), st.booleans()),
        min_size=1,
        max_size=8,
    ),
)
def test_nginx_accepts_whatever_translate_accepts(picks: list[tuple[str, str, bool]]) -> None:
    """The rendered nginx.conf of any accepted mix of annotation values passes the real `nginx -t`
    (with our templates and Lua): no tenant's accepted value can make a reload fail for everyone."""

    annotations = {
        NGINX + n: (EXAMPLES[n][0] + noise if after else noise + EXAMPLES[n][0]) for n, noise, after in picks
    }
    config = run(
        ing(
            "x", "x.example.com", annotations, paths=[("/p", "Prefix", backend("app")), ("/q", "Exact", backend("app"))]
        ),
        ing("y", "x.example.com", {NGINX + "enable-cors": "true"}, paths=[("/y", "Prefix", backend("other"))]),
    )
    result = nginx_test(config)
    assert result.ok, (annotations, result.output)


def test_nginx_accepts_every_annotation_at_once() -> None:
    annotations = {NGINX + name: raw for name, (raw, _) in EXAMPLES.items()}
    config = run(ing("all", "all.example.com", annotations, paths=[("/p(/|$)(.*)", "Prefix", backend("app"))]))
    assert any(s.host == "all.example.com" for s in config.static.servers), config.problems
    result = nginx_test(config)
    assert result.ok, result.output


def nginx_test(config: Configuration) -> Any:
    """`nginx -t` on the rendered configuration, in a work dir laid out as the controller does."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths(work=tmp, lua=str(lua_dir()))
        nginx = Nginx(binary="nginx", paths=paths)
        nginx.prepare()
        for cert in config.static.certificates:
            Path(paths.cert(cert.name)).write_bytes(cert.pem)
        htpasswd.write(paths, config.static)
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(Renderer(paths=paths).render(config.static).text)
        return asyncio.run(nginx.test(conf))
