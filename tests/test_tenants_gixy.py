"""gixy-ng (a maintained nginx configuration security analyzer) on rendered configurations of the
test scenarios: nothing at High or Medium except the one finding README's Safety section explains
(no HSTS on servers without a certificate of their own: the default server and plain-HTTP hosts)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import crossplane
import pytest

from ingressctl.cache import Cache
from ingressctl.certs import self_signed
from ingressctl.config import Configuration, TenancyPolicy
from ingressctl.dataplane.paths import Paths
from ingressctl.dataplane.render import Renderer
from ingressctl.model import Event, EventType, Obj
from ingressctl.sources.manifests import parse_file
from ingressctl.translate import Settings, translate
from tests.certs import make_cert, tls_secret
from tests.harness import backend, endpoint_slice, ingress, ingress_class, opaque_secret, rule, service
from tests.test_validate import tenant_objects

REPO = Path(__file__).resolve().parent.parent
GIXY = Path(sys.executable).with_name("gixy")
RENDERER = Renderer(paths=Paths(work="/run/ingressctl", lua="/usr/share/ingressctl/lua"))
FALLBACK = self_signed()


# Variables gixy's http_splitting cannot tell are escaped: the client-certificate headers and the
# escaped request URI of auth-signin's redirect.
ESCAPED = ("ssl_client_escaped_cert", "ssl_client_verify", "ssl_client_s_dn", "ssl_client_i_dn")
ESCAPED += ("ingressctl_escaped_request_uri",)


def multi_tenant() -> list[Obj]:
    objects: list[Obj] = [ingress_class()]
    for ns in ("team-a", "team-b"):
        objects += [service("app", namespace=ns), endpoint_slice("app", ["10.0.0.1"], namespace=ns)]
        objects.append(tls_secret("tls", *make_cert(f"{ns}.example.com", f"*.{ns}.example.com"), namespace=ns))
    client_ca = tls_secret("client-ca", *make_cert("client-ca"), namespace="team-b")
    client_ca["data"]["ca.crt"] = client_ca["data"]["tls.crt"]
    objects += [
        ingress(
            "a",
            namespace="team-a",
            rules=[rule("team-a.example.com", ("/", "Prefix", backend("app")), ("/api", "Exact", backend("app")))],
            tls=[{"hosts": ["team-a.example.com"], "secretName": "tls"}],
            # CORS headers in a location: HSTS must be repeated there (nginx inherits add_header only
            # into blocks without one; gixy's add_header_redefinition checks it).
            annotations={"nginx.ingress.kubernetes.io/enable-cors": "true"},
        ),
        ingress(
            "b",
            namespace="team-b",
            rules=[rule("*.team-b.example.com", ("/", "Prefix", backend("app"))), rule("plain.example.com")],
            tls=[{"hosts": ["*.team-b.example.com"], "secretName": "tls"}],
            # ewma: its locations run the balancer's log phase (log_by_lua_block).
            annotations={"nginx.ingress.kubernetes.io/load-balance": "ewma"},
        ),
        ingress("catch-all", namespace="team-a", default_backend=backend("app")),
        # A canary (issue 13): its route's backend is a "<main>~<canary>~<ingress>" name in nginx.conf.
        ingress(
            "a-canary",
            namespace="team-a",
            rules=[rule("team-a.example.com", ("/", "Prefix", backend("app", 8080)))],
            annotations={
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "20",
            },
        ),
        # External auth (auth_request, the signin redirect, the auth cache) and client certificates.
        ingress(
            "auth",
            namespace="team-b",
            rules=[rule("auth.team-b.example.com", ("/", "Prefix", backend("app")))],
            tls=[{"hosts": ["auth.team-b.example.com"], "secretName": "tls"}],
            annotations={
                f"nginx.ingress.kubernetes.io/{k}": v
                for k, v in {
                    "auth-url": "http://10.0.0.9:4180/oauth2/auth",
                    "auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri",
                    "auth-response-headers": "X-Auth-Request-User",
                    "auth-cache-key": "$cookie__oauth2_proxy",
                    "auth-tls-secret": "client-ca",
                    "auth-tls-match-cn": "CN=(alice|bob)$",
                    "auth-tls-pass-certificate-to-upstream": "true",
                }.items()
            },
        ),
        client_ca,
    ]
    return objects


def demo() -> list[Obj]:
    return list(parse_file(REPO / "demo" / "hostnames" / "hostnames.yaml").values())


def limits_and_basic_auth() -> list[Obj]:
    """Two tenants with rate/connection limits (one with an allowlist) and basic auth."""
    from tests.test_limits_auth_translate import APR1

    a = "nginx.ingress.kubernetes.io/"
    objects: list[Obj] = [ingress_class()]
    for ns in ("team-a", "team-b"):
        objects += [service("app", namespace=ns), endpoint_slice("app", ["10.0.0.1"], namespace=ns)]
        objects.append(opaque_secret("users", {"auth": f"alice:{APR1}\n"}, namespace=ns))
    limits = {a + "limit-rps": "10", a + "limit-connections": "5", a + "limit-rate": "100"}
    auth = {a + "auth-type": "basic", a + "auth-secret": "users", a + "auth-realm": "Team only"}
    objects += [
        ingress(
            "a",
            namespace="team-a",
            rules=[rule("a.example.com", ("/", "Prefix", backend("app")))],
            annotations={**limits, a + "limit-whitelist": "10.0.0.0/8, 2001:db8::/32", **auth},
        ),
        ingress(
            "b",
            namespace="team-b",
            rules=[rule("b.example.com", ("/api", "Prefix", backend("app")))],
            annotations={**limits, a + "limit-rpm": "600"},
        ),
    ]
    return objects


SCENARIOS = {
    "multi-tenant": (multi_tenant, TenancyPolicy(catch_all_namespaces=("team-a",))),
    "limits-and-basic-auth": (limits_and_basic_auth, TenancyPolicy()),
    "hostile-values": (tenant_objects, TenancyPolicy(catch_all_namespaces=("zz-ns",))),
    "demo": (demo, TenancyPolicy()),
}


def configuration(objects: Iterable[Obj], policy: TenancyPolicy) -> Configuration:
    cache = Cache()
    for obj in objects:
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    return translate(cache.snapshot(), Settings(fallback_certificate=FALLBACK, tenancy=policy))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_gixy_finds_nothing_at_high_or_medium_but_the_documented_one(name: str, tmp_path: Path) -> None:
    make, policy = SCENARIOS[name]
    config = configuration(make(), policy)
    conf = tmp_path / "nginx.conf"
    conf.write_text(RENDERER.render(config.static).text)
    if name == "limits-and-basic-auth":  # the scenario renders what it is about
        assert all(d in conf.read_text() for d in ("auth_basic ", "limit_req ", "limit_conn ", "geo ")), config.problems
    result = subprocess.run(
        # No --nginx-version: the CVE check goes by version number alone, and Debian backports the
        # fixes (README's Safety section), so it is a property of the package, not of the config.
        [str(GIXY), "-f", "json", str(conf)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(result.stdout or "[]")
    serious = [f for f in findings if f["severity"] in ("HIGH", "MEDIUM")]
    without_certificate = {s.server_name for s in config.static.servers if not s.certificate} | {"_"}
    with_certificate = {s.server_name for s in config.static.servers if s.certificate}
    assert with_certificate or name != "multi-tenant"  # the scenario has TLS hosts to check
    for finding in serious:
        if finding["plugin"] == "if_is_evil":
            # The CORS preflight (`if ($request_method = OPTIONS) { ...; return 204; }`): the if ends
            # the request itself, so nothing runs in its implicit location afterwards (README).
            assert "if ($request_method = OPTIONS)" in finding["config"], finding
            continue
        if finding["plugin"] == "http_splitting":
            # Variables nginx (or ngx.escape_uri) escapes: no line break can reach a header (README).
            assert re.search(f'variable "\\$({"|".join(ESCAPED)})" can contain', finding["reason"]), finding
            continue
        assert finding["plugin"] == "hsts_header", finding
        named = set(re.findall(r"server_name ([^;]+);", finding["config"]))
        assert named <= without_certificate, (named & with_certificate, finding["config"])
    _check_blocks(conf)


def _check_blocks(conf: Path) -> None:
    """Every CORS preflight `if` ends with `return 204`; in a server with HSTS, every block with an
    add_header of its own repeats HSTS (nginx inherits add_header only into blocks without one)."""
    parsed = crossplane.parse(str(conf), single=True, comments=False)
    assert parsed["status"] == "ok", parsed["errors"]
    (http,) = [d for d in parsed["config"][0]["parsed"] if d["directive"] == "http"]

    def walk(block: list[dict[str, Any]], hsts: bool) -> None:
        for d in block:
            inner = d.get("block")
            if inner is None:
                continue
            if d["directive"] == "if" and d["args"] == ["$request_method", "=", "OPTIONS"]:
                assert (inner[-1]["directive"], inner[-1]["args"]) == ("return", ["204"])
            headers = [x["args"][0] for x in inner if x["directive"] == "add_header"]
            here = hsts or (d["directive"] == "server" and "Strict-Transport-Security" in headers)
            if here and headers and d["directive"] != "server":
                assert "Strict-Transport-Security" in headers, (d["directive"], d["args"], headers)
            walk(inner, here)

    walk(http["block"], False)
