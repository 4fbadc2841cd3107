"""External auth and client certificates in translate and render: the typed settings each annotation
makes (named tables), the CA Secret's resolution and its problems, the host owner deciding the
server-scope ones, the nginx.conf lines only where they are set, and (hypothesis) that the value
parsers let through only the documented variables and text the template's filters print."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingressctl.config import ClientAuth, ExternalAuth
from ingressctl.dataplane.render import quote, quote_regex, quote_variables
from ingressctl.translate.annotations import auth
from ingressctl.translate.annotations.registry import NGINX, OURS
from ingressctl.translate.validate import Invalid
from tests.certs import make_cert
from tests.harness import backend, service
from tests.test_annotations_translate import ing, render, run, server
from tests.test_auth_nginx import _secret

URL = "http://10.96.0.20:4180/oauth2/auth"


def _cluster_ip(name: str, address: str) -> dict[str, Any]:
    obj = service(name)
    obj["spec"]["clusterIP"] = address
    return obj


SERVICES = [_cluster_ip("auth", "10.96.0.7"), _cluster_ip("headless", "None")]


def policy_of(annotations: dict[str, str]) -> Any:
    config = run(*SERVICES, ing("a", "a.example.com", {NGINX + k: v for k, v in annotations.items()}))
    [loc] = [loc for loc in server(config, "a.example.com").locations if loc.path == "/"]
    return loc.policy, config


EXTERNAL: dict[str, tuple[dict[str, str], ExternalAuth]] = {
    "url alone": ({"auth-url": URL}, ExternalAuth(URL, "10.96.0.20:4180", "http", "/oauth2/auth")),
    "https, query, no path": (
        {"auth-url": "https://10.0.0.1?a=b"},
        ExternalAuth("https://10.0.0.1?a=b", "10.0.0.1", "https", "?a=b"),
    ),
    "$host": (
        {"auth-url": "https://$host/oauth2/auth"},
        ExternalAuth("https://$host/oauth2/auth", "$host", "https", "/oauth2/auth"),
    ),
    "a Service's name": (
        {"auth-url": "https://auth.default.svc.cluster.local/x"},
        ExternalAuth(
            "https://auth.default.svc.cluster.local/x",
            "auth.default.svc.cluster.local",
            "https",
            "/x",
            service="default/auth",
            address="10.96.0.7",
        ),
    ),
    "ipv6": (
        {"auth-url": "http://[fd00::1]:80/a"},
        ExternalAuth("http://[fd00::1]:80/a", "[fd00::1]:80", "http", "/a"),
    ),
    "every setting": (
        {
            "auth-url": URL,
            "auth-method": "POST",
            "auth-signin": "https://login.example.com/start",
            "auth-signin-redirect-param": "next",
            "auth-response-headers": "X-User,X-Email, X-User",
            "auth-request-redirect": "/home",
            "auth-cache-key": "$http_authorization",
            "auth-always-set-cookie": "true",
        },
        ExternalAuth(
            URL,
            "10.96.0.20:4180",
            "http",
            "/oauth2/auth",
            method="POST",
            signin="https://login.example.com/start?next=$scheme://$ingressctl_host$ingressctl_escaped_request_uri",
            response_headers=("X-User", "X-Email"),
            request_redirect="/home",
            cache_key="$http_authorization",
            cache_valid=(("200", "202", "401", "5m"),),
            always_set_cookie=True,
        ),
    ),
    "signin that sets its redirect parameter": (
        {"auth-url": URL, "auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri"},
        ExternalAuth(
            URL,
            "10.96.0.20:4180",
            "http",
            "/oauth2/auth",
            signin="https://$host/oauth2/start?rd=$ingressctl_escaped_request_uri",
        ),
    ),
    "signin with another query": (
        {"auth-url": URL, "auth-signin": "https://l.example.com/s?app=1"},
        ExternalAuth(
            URL,
            "10.96.0.20:4180",
            "http",
            "/oauth2/auth",
            signin="https://l.example.com/s?app=1&rd=$scheme://$ingressctl_host$ingressctl_escaped_request_uri",
        ),
    ),
    "cache duration": (
        {"auth-url": URL, "auth-cache-key": "k", "auth-cache-duration": "200 10m, any 1m"},
        ExternalAuth(
            URL, "10.96.0.20:4180", "http", "/oauth2/auth", cache_key="k", cache_valid=(("200", "10m"), ("any", "1m"))
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(EXTERNAL))
def test_external_auth_settings(case: str) -> None:
    annotations, expected = EXTERNAL[case]
    policy, _ = policy_of(annotations)
    assert policy.external_auth == expected


INVALID = {
    "auth-url": [
        "http://auth.example.com/x",
        "http://a.b.c.svc/x",
        "http://Auth.b.svc/x",
        "http://$host:8080/x",
        "http://10.0.0.1/$uri",
        "ftp://10.0.0.1/",
        "10.0.0.1",
    ],
    "auth-signin": ["https://x/$remote_addr", "https://x/${host}", "/relative", "https://x/$hostname"],
    "auth-cache-key": ["$request_body", "a b", "$http_", "${http_x}"],
    "auth-cache-duration": ["5m 200", "100 5m", "200 5x", "200 any"],
    "auth-method": ["get", "PROPFIND"],
    "auth-tls-verify-client": ["yes", "ON"],
    "auth-tls-match-cn": ["alice", "CN=a b", "CN=(a", "CN=a$x", "CN={a}"],
    "auth-tls-verify-depth": ["0", "11"],
}


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in INVALID.items() for v in vs])
def test_invalid_values_reject_the_ingress_alone(name: str, value: str) -> None:
    extra = {} if name == "auth-url" or name.startswith("auth-tls") else {NGINX + "auth-url": URL}
    if name.startswith("auth-tls") and name != "auth-tls-secret":
        extra = {NGINX + "auth-tls-secret": "ca"}
    config = run(
        ing("bad", "bad.example.com", {NGINX + name: value, **extra}),
        ing("good", "good.example.com", {NGINX + "auth-url": URL}),
    )
    assert not any(s.host == "bad.example.com" for s in config.static.servers)
    assert any(s.host == "good.example.com" for s in config.static.servers)
    [problem] = [p for p in config.problems if p.ref.name == "bad"]
    assert problem.field == f'metadata.annotations["{NGINX}{name}"]' and problem.reason.endswith("Ingress rejected")


def test_a_service_name_resolves_to_its_cluster_ip_or_fails_closed() -> None:
    policy, config = policy_of({"auth-url": "https://auth.default.svc.cluster.local/x"})
    assert policy.external_auth.upstream == "https://10.96.0.7:443/x" and not policy.auth_unusable
    block = render(config).split('server_name "a.example.com"')[1]
    assert 'proxy_ssl_name "auth.default.svc.cluster.local";' in block
    assert 'proxy_pass "https://10.96.0.7:443/x";' in block
    assert 'proxy_set_header Host "auth.default.svc.cluster.local";' in block
    for url in ("http://missing.default.svc:8080/x", "http://headless.default.svc/x"):
        policy, config = policy_of({"auth-url": url})
        assert policy.auth_unusable
        [problem] = [p for p in config.problems if p.ref.name == "a"]
        assert problem.reason.endswith("not found or without a cluster IP; its paths answer 503")
        block = render(config).split('server_name "a.example.com"')[1]
        assert "return 503;" in block and "auth_request" not in block and "_ingressctl_auth" not in block


def test_settings_without_auth_url_or_secret_warn() -> None:
    config = run(ing("a", "a.example.com", {NGINX + "auth-method": "GET", OURS + "auth-tls-verify-depth": "2"}))
    reasons = {(p.field, p.reason) for p in config.problems}
    assert (f'metadata.annotations["{NGINX}auth-method"]', "has no effect without auth-url") in reasons
    assert (f'metadata.annotations["{OURS}auth-tls-verify-depth"]', "has no effect without auth-tls-secret") in reasons


CA, _ = make_cert("client-ca")
SERVER_CERT, SERVER_KEY = make_cert("a.example.com")
TLS = {"tls": [{"hosts": ["a.example.com"], "secretName": "server"}]}


def _ca_secret(name: str, ca: bytes = CA, **extra: bytes) -> dict[str, Any]:
    return _secret(name, {"tls.crt": SERVER_CERT, "tls.key": SERVER_KEY, "ca.crt": ca, **extra})


def test_client_auth_resolves_the_ca_into_a_certificate_file() -> None:
    config = run(
        _ca_secret("server"),
        _ca_secret("ca"),
        ing(
            "a",
            "a.example.com",
            {
                NGINX + "auth-tls-secret": "default/ca",
                NGINX + "auth-tls-verify-client": "optional",
                NGINX + "auth-tls-verify-depth": "3",
                NGINX + "auth-tls-error-page": "/cert-error",
                NGINX + "auth-tls-pass-certificate-to-upstream": "true",
                NGINX + "auth-tls-match-cn": "CN=alice$",
            },
            **TLS,
        ),
    )
    client = server(config, "a.example.com").policy.client_auth
    [ca_file] = [c for c in config.static.certificates if c.pem == CA]
    assert client == ClientAuth("ca", "optional", 3, "/cert-error", True, "CN=alice$", ca=ca_file.name)
    assert not [p for p in config.problems if "auth-tls" in p.field]
    text = render(config)
    block = text.split('server_name "a.example.com"')[1].split("server {")[0]
    for line in (
        f'ssl_client_certificate "/w/certs/{ca_file.name}.pem";',
        'ssl_verify_client "optional";',
        "ssl_verify_depth 3;",
        'error_page 495 496 = "/cert-error";',
        'if ($ssl_client_s_dn !~ "CN=alice$")',
        "proxy_set_header ssl-client-cert $ssl_client_escaped_cert;",
        "proxy_set_header ssl-client-verify $ssl_client_verify;",
    ):
        assert line in block, line
    assert "if ($ssl_client_verify != SUCCESS)" not in block, "optional serves requests without a certificate"


@pytest.mark.parametrize(
    ("secrets", "reason"),
    [
        (
            [],
            "Secret default/ca not found (only Secrets of type kubernetes.io/tls or Opaque are read); "
            "its hosts answer 503",
        ),
        ([_secret("ca", {"tls.crt": SERVER_CERT, "tls.key": SERVER_KEY})], "Secret default/ca has no ca.crt"),
        ([_ca_secret("ca", b"not a certificate")], "Secret default/ca: ca.crt is not valid base64 PEM certificates"),
    ],
)
def test_an_unusable_ca_secret_fails_closed(secrets: list[dict[str, Any]], reason: str) -> None:
    config = run(*secrets, _ca_secret("server"), ing("a", "a.example.com", {NGINX + "auth-tls-secret": "ca"}, **TLS))
    client = server(config, "a.example.com").policy.client_auth
    assert client.ca is None and client.unusable
    assert any(p.reason.startswith(reason) for p in config.problems), config.problems
    block = render(config).split('server_name "a.example.com"')[1].split("location")[0]
    assert "return 503;" in block and "ssl_client_certificate" not in block


def test_the_host_owner_decides_client_auth() -> None:
    older = ing("a", "a.example.com", {NGINX + "auth-tls-secret": "ca"}, **TLS)
    same = ing("b", "a.example.com", {NGINX + "auth-tls-secret": "ca"}, paths=[("/b", "Prefix", backend("app"))])
    other = ing("c", "a.example.com", {NGINX + "auth-tls-secret": "x"}, paths=[("/c", "Prefix", backend("app"))])
    older["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    for later in (same, other):
        later["metadata"]["creationTimestamp"] = "2021-01-01T00:00:00Z"
    config = run(_ca_secret("ca"), _ca_secret("server"), older, same, other)
    assert server(config, "a.example.com").policy.client_auth.secret == "ca"
    decided = [p.ref.name for p in config.problems if "decided by its owner" in p.reason]
    assert decided == ["c"]
    assert not [p for p in config.problems if "Secret default/x" in p.reason], "only the owner's Secret is read"


def test_nothing_is_printed_without_the_annotations() -> None:
    plain = render(run(ing("a", "a.example.com")))
    for word in ("auth_request", "ssl_client_certificate", "ssl_verify_client", "proxy_cache", "ssl-client"):
        assert word not in plain
    with_auth = render(run(ing("a", "a.example.com", {NGINX + "auth-url": URL})))
    assert "auth_request " in with_auth and "proxy_cache_path" not in with_auth
    cached = render(run(ing("a", "a.example.com", {NGINX + "auth-url": URL, NGINX + "auth-cache-key": "$remote_user"})))
    assert cached.count("proxy_cache_path") == 1 and "keys_zone=ingressctl_auth:10m" in cached


def test_equal_auth_settings_share_one_internal_location() -> None:
    config = run(
        ing("a", "a.example.com", {NGINX + "auth-url": URL}, paths=[("/a", "Prefix", backend("app"))]),
        ing("b", "a.example.com", {NGINX + "auth-url": URL}, paths=[("/b", "Prefix", backend("app"))]),
        ing("c", "a.example.com", {NGINX + "auth-url": URL + "2"}, paths=[("/c", "Prefix", backend("app"))]),
    )
    text = render(config)
    assert len(set(re.findall(r'location = "(/_ingressctl_auth[|][0-9a-f]{16})"', text))) == 2
    with_policy = [loc for loc in server(config, "a.example.com").locations if loc.policy]
    assert len(with_policy) >= 3 and text.count("auth_request ") == len(with_policy)


def test_no_ingress_path_can_be_an_auth_location() -> None:
    from ingressctl.translate import validate

    policy, _ = policy_of({"auth-url": URL})
    with pytest.raises(Invalid):
        validate.path(policy.external_auth.location)


# --- generated input ----------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        *"aZ09.-/:?&=%_ ;{}#\"'\\\n()|[]^$*+",
        *("$host", "$hostname", "$escaped_request_uri", "$request_uri", "$uri", "$http_x_user", "$cookie_s"),
        *("$arg_a", "$remote_user", "$remote_addr", "$request_body", "${host}"),
        *("https://", "http://", "10.0.0.1", "[::1]", "CN=", "a.b.svc", ".cluster.local", ":80"),
    ]
)
_TEXT = st.lists(_PIECES, max_size=30).map("".join)
_ALLOWED_AFTER = {
    "auth-url": set(),
    "auth-signin": {"$scheme", "$host", "$ingressctl_host", "$request_uri", "$ingressctl_escaped_request_uri"},
    "auth-cache-key": None,  # the cache variables: checked by pattern below
}


@settings(max_examples=400, deadline=None)
@given(text=_TEXT, prefix=st.sampled_from(["", "http://10.0.0.1/", "https://$host/", "https://login.test/"]))
def test_only_documented_variables_get_through(text: str, prefix: str) -> None:
    """Whatever a parser accepts prints through its filter, and names no variable but the documented
    ones (a variable name never runs on into another)."""
    value = prefix + text
    try:
        url = auth.auth_url(value)
    except Invalid:
        pass
    else:
        assert "$" not in url.replace("$host", "", 1) and not re.search(r"\$host[A-Za-z0-9_]", url)
        external = auth.external_auth({"auth-url": url})
        assert external is not None
        quote(external.path)
        if not external.loop:
            quote(external.url)
            quote(external.host)
    try:
        signin = auth.signin(value)
    except Invalid:
        pass
    else:
        quote_variables(auth.signin_url(signin, "rd"))
        assert set(re.findall(r"\$[A-Za-z0-9_]+", signin)) <= _ALLOWED_AFTER["auth-signin"]
    try:
        key = auth.cache_key(text)
    except Invalid:
        pass
    else:
        quote_variables(key)
        for name in re.findall(r"\$[A-Za-z0-9_]+", key):
            assert re.fullmatch(r"\$(remote_user|remote_addr|host|uri|request_uri|(http|cookie|arg)_[a-z0-9_]+)", name)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT)
def test_match_cn_is_a_quotable_regex_that_compiles(text: str) -> None:
    try:
        value = auth.match_cn("CN=" + text)
    except Invalid:
        return
    quote_regex(value)
    re.compile(value)
    assert "$" not in value[:-1], "'$' only as the end anchor: no variable can appear"
