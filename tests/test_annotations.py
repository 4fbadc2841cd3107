"""The annotation registry and its value parsers: every declared annotation accepts its documented
examples and refuses hostile values; generated input never gets past a parser unless it is safe to
print quoted into nginx.conf; reading both prefixes, snippets, unknown annotations; README's table."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingressctl.config import Cors, Policy, ServerPolicy
from ingressctl.dataplane.render import quote, quote_regex, quote_text, quote_variables
from ingressctl.translate.annotations import AnnotationError, read
from ingressctl.translate.annotations import doc as annotation_doc
from ingressctl.translate.annotations.registry import ANNOTATIONS, BY_NAME, NGINX, OURS
from ingressctl.translate.validate import Invalid

REPO = Path(__file__).resolve().parent.parent

# A valid value per annotation (from ingress-nginx's documentation) and what it parses to.
EXAMPLES: dict[str, tuple[str, object]] = {
    "proxy-connect-timeout": ("15", 15),
    "proxy-read-timeout": ("3600", 3600),
    "proxy-send-timeout": ("120s", 120),
    "proxy-body-size": ("8M", "8m"),
    "proxy-next-upstream": ("error timeout http_502", ("error", "timeout", "http_502")),
    "proxy-next-upstream-tries": ("2", 2),
    "proxy-next-upstream-timeout": ("0", 0),
    "proxy-buffering": ("on", True),
    "proxy-buffer-size": ("16k", "16k"),
    "proxy-buffers-number": ("8", 8),
    "proxy-request-buffering": ("off", False),
    "client-body-buffer-size": ("1M", "1m"),
    "proxy-http-version": ("1.0", "1.0"),
    "upstream-vhost": ("internal.example.com:8080", "internal.example.com:8080"),
    "connection-proxy-header": ("keep-alive", "keep-alive"),
    "x-forwarded-prefix": ("/web", "/web"),
    "proxy-redirect-from": ("http://internal.local/", "http://internal.local/"),
    "proxy-redirect-to": ("/", "/"),
    "proxy-ssl-name": ("internal.example.com", "internal.example.com"),
    "proxy-ssl-server-name": ("on", True),
    "proxy-ssl-secret": ("default/backend-ca", "default/backend-ca"),
    "proxy-ssl-verify": ("on", True),
    "proxy-ssl-verify-depth": ("2", 2),
    "backend-protocol": ("grpcs", "GRPCS"),
    "permanent-redirect": ("https://www.google.com", "https://www.google.com"),
    "permanent-redirect-code": ("308", 308),
    "temporal-redirect": ("https://status.example.com/down?x=1", "https://status.example.com/down?x=1"),
    "temporal-redirect-code": ("307", 307),
    "ssl-redirect": ("false", False),
    "force-ssl-redirect": ("true", True),
    "from-to-www-redirect": ("True", True),
    "app-root": ("/app1", "/app1"),
    "use-regex": ("true", True),
    "rewrite-target": ("/$2", "/$2"),
    "server-alias": ("a.example.com, B.example.com", ("a.example.com", "b.example.com")),
    "whitelist-source-range": ("10.0.0.1/8, 2001:db8::/32", ("10.0.0.0/8", "2001:db8::/32")),
    "allowlist-source-range": ("192.168.1.1", ("192.168.1.1/32",)),
    "denylist-source-range": ("198.51.100.0/24", ("198.51.100.0/24",)),
    "default-backend": ("error-pages", "error-pages"),
    "custom-http-errors": ("503, 404,404", (404, 503)),
    "service-upstream": ("true", True),
    "preserve-trailing-slash": ("false", False),
    "enable-cors": ("true", True),
    "cors-allow-origin": (
        "https://origin-site.com:4443, http://origin-site.com, https://*.Example.org",
        ("https://origin-site.com:4443", "http://origin-site.com", "https://*.example.org"),
    ),
    "cors-allow-methods": ("PUT, get", ("PUT", "GET")),
    "cors-allow-headers": ("X-Forwarded-For, X-app123-XPTO", ("X-Forwarded-For", "X-app123-XPTO")),
    "cors-expose-headers": ("*, X-CustomResponseHeader", ("*", "X-CustomResponseHeader")),
    "cors-allow-credentials": ("false", False),
    "cors-max-age": ("600", 600),
    "auth-url": ("http://10.96.0.20:4180/oauth2/auth?x=1", "http://10.96.0.20:4180/oauth2/auth?x=1"),
    "auth-method": ("POST", "POST"),
    "auth-signin": (
        "https://$host/oauth2/start?rd=$escaped_request_uri",
        "https://$host/oauth2/start?rd=$ingressctl_escaped_request_uri",
    ),
    "auth-signin-redirect-param": ("next", "next"),
    "auth-response-headers": (
        "X-Auth-Request-User, X-Auth-Request-Email",
        ("X-Auth-Request-User", "X-Auth-Request-Email"),
    ),
    "auth-request-redirect": ("https://app.example.com/", "https://app.example.com/"),
    "auth-cache-key": ("$http_Authorization$remote_user", "$http_authorization$remote_user"),
    "auth-cache-duration": ("200 202 10m, 401  30s", (("200", "202", "10m"), ("401", "30s"))),
    "auth-always-set-cookie": ("true", True),
    "auth-tls-secret": ("default/ca-secret", "default/ca-secret"),
    "auth-tls-verify-client": ("optional_no_ca", "optional_no_ca"),
    "auth-tls-verify-depth": ("2", 2),
    "auth-tls-error-page": ("https://errors.example.com/cert", "https://errors.example.com/cert"),
    "auth-tls-pass-certificate-to-upstream": ("true", True),
    "auth-tls-match-cn": ("CN=(alice|bob)\\.example\\.com", "CN=(alice|bob)\\.example\\.com"),
    "load-balance": ("ewma", "ewma"),
    "upstream-hash-by": ("${request_uri}-text-value", "${request_uri}-text-value"),
    "upstream-hash-by-subset": ("true", True),
    "upstream-hash-by-subset-size": ("3", 3),
    "affinity": ("cookie", "cookie"),
    "affinity-mode": ("persistent", "persistent"),
    "session-cookie-name": ("route", "route"),
    "session-cookie-path": ("/app", "/app"),
    "session-cookie-domain": (".Example.com", ".example.com"),
    "session-cookie-max-age": ("172800", 172800),
    "session-cookie-expires": ("172800", 172800),
    "session-cookie-samesite": ("none", "None"),
    "session-cookie-conditional-samesite-none": ("true", True),
    "session-cookie-secure": ("true", True),
    "session-cookie-change-on-failure": ("true", True),
    # "false": one Ingress carrying every example must stay a main Ingress (a lone canary serves nothing)
    "canary": ("false", False),
    "canary-by-header": ("X-Canary", "X-Canary"),
    "canary-by-header-value": ("enabled-v2", "enabled-v2"),
    "canary-by-header-pattern": (r"v[0-9]+\.beta$", r"v[0-9]+\.beta$"),
    "canary-by-cookie": ("canary_cookie", "canary_cookie"),
    "canary-weight": ("10", 10),
    "canary-weight-total": ("1000", 1000),
    "limit-rps": ("5", 5),
    "limit-rpm": ("300", 300),
    "limit-connections": ("10", 10),
    "limit-burst-multiplier": ("3", 3),
    "limit-rate": ("100", 100),
    "limit-rate-after": ("1024", 1024),
    "limit-whitelist": ("10.0.0.0/8, 2001:db8::1", ("10.0.0.0/8", "2001:db8::1/128")),
    "limit-allowlist": ("192.168.0.0/16", ("192.168.0.0/16",)),
    "auth-type": ("basic", "basic"),
    "auth-secret": ("default/basic-auth", "default/basic-auth"),
    "auth-secret-type": ("auth-map", "auth-map"),
    "auth-realm": ("Authentication Required - foo", "Authentication Required - foo"),
}
# Annotations whose values may hold a few documented variables: printed through `qv`, not `q`.
WITH_VARIABLES = {"auth-signin", "auth-cache-key"}
REGEXES = {"auth-tls-match-cn"}  # printed through `qre`
TEXT = {"auth-realm"}  # printed through `qtext`

HOSTILE_SUFFIXES = ["\n", "\r\nX: y", '"', "'", ";", "{", "}", "$host", "#", "\\", "\t", "\x00", "é", "\u2028"]


def test_every_annotation_has_an_example() -> None:
    assert set(EXAMPLES) == set(BY_NAME)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_documented_examples_parse(name: str) -> None:
    raw, expected = EXAMPLES[name]
    assert BY_NAME[name].parse(raw) == expected


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("suffix", HOSTILE_SUFFIXES)
def test_hostile_values_are_refused(name: str, suffix: str) -> None:
    raw, _ = EXAMPLES[name]
    if name in WITH_VARIABLES and suffix == "$host":
        suffix = "$hostname"  # $host is one of their variables; a longer name is not
    with pytest.raises(Invalid):
        BY_NAME[name].parse(raw + suffix)
    with pytest.raises(Invalid):
        BY_NAME[name].parse(suffix + raw)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_over_long_values_are_refused(name: str) -> None:
    raw, _ = EXAMPLES[name]
    with pytest.raises(Invalid):
        BY_NAME[name].parse(raw + "1" * 5000)
    with pytest.raises(Invalid):
        BY_NAME[name].parse(", ".join([raw] * 2000))


def _strings(value: object) -> list[str]:
    if isinstance(value, tuple):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


# Text built from the characters that matter to nginx.conf and to the parsers.
_ALPHABET = st.sampled_from([*"aZ09.-/:*,_ ;{}$#\"'\\\n\r\t()|[]^?+~!&=@%", "é", "\x00", "https://", "10."])
_TEXT = st.lists(_ALPHABET, max_size=40).map("".join)


# Values that never reach nginx.conf: rewrite-target (its own test), canary-by-header-pattern and
# canary-by-header-value (a regex and a header value, any text a header may carry, for the Lua balancer,
# sent as JSON; test_canary_translate checks that no canary value is rendered), upstream-hash-by (also
# for the Lua balancer; tests/test_balancing.py proves Lua and Python accept the same expressions).
_NOT_RENDERED = ("rewrite-target", "canary-by-header-pattern", "canary-by-header-value", "upstream-hash-by")


@pytest.mark.parametrize("name", sorted(n for n in EXAMPLES if n not in _NOT_RENDERED))
@settings(max_examples=150, deadline=None)
@given(text=_TEXT)
def test_whatever_passes_is_safe_to_quote(name: str, text: str) -> None:
    """A value that a parser accepts is safe to print through the template's quoting filter."""
    for candidate in (text, EXAMPLES[name][0] + text):
        try:
            value = BY_NAME[name].parse(candidate)
        except Invalid:
            continue
        for piece in _strings(value):
            quoting = (
                quote_variables
                if name in WITH_VARIABLES
                else quote_regex
                if name in REGEXES
                else quote_text  # a realm is text: spaces between words
                if name in TEXT
                else quote
            )
            quoting(piece)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT)
def test_rewrite_target_only_uses_capture_variables(text: str) -> None:
    try:
        value = BY_NAME["rewrite-target"].parse("/" + text)
    except Invalid:
        return
    # Without its $1..$9 it must be a quotable string; the only '$' left are capture groups.
    import re

    assert not re.search(r"\$(?![1-9])", value)
    quote(re.sub(r"\$[1-9]", "", value))


def test_snippets_are_refused_naming_a_safe_alternative() -> None:
    with pytest.raises(AnnotationError) as exc:
        read({NGINX + "configuration-snippet": "more_set_headers 'A: b';"})
    assert exc.value.field == 'metadata.annotations["nginx.ingress.kubernetes.io/configuration-snippet"]'
    assert "refused" in exc.value.reason and "enable-cors" in exc.value.reason
    with pytest.raises(AnnotationError) as exc:
        read({OURS + "server-snippet": "return 200;"})
    assert "server-alias" in exc.value.reason
    for name in ("auth-snippet", "stream-snippet", "modsecurity-snippet", "anything-else-snippet"):
        with pytest.raises(AnnotationError, match="no safe equivalent"):
            read({NGINX + name: "x"})


def test_unknown_annotations_are_ignored_with_one_warning() -> None:
    result = read(
        {
            NGINX + "mirror-target": "http://mirror.test",
            NGINX + "mirror-request-body": "off",
            OURS + "nonsense": "1",
            "kubernetes.io/ingress.class": "nginx",
            "example.com/other": "x",
        }
    )
    assert result.ignored == (OURS + "nonsense", NGINX + "mirror-request-body", NGINX + "mirror-target")
    assert len(result.warnings) == 1
    assert result.policy is None and result.server is None


def test_ours_wins_over_ingress_nginx_with_a_warning() -> None:
    result = read({NGINX + "proxy-read-timeout": "30", OURS + "proxy-read-timeout": "90"})
    assert result.policy == Policy(read_timeout=90)
    assert result.warnings == (
        (f'metadata.annotations["{NGINX}proxy-read-timeout"]', f"differs from {OURS}proxy-read-timeout, which wins"),
    )
    same = read({NGINX + "proxy-read-timeout": "90", OURS + "proxy-read-timeout": "90"})
    assert same.warnings == ()


def test_invalid_value_names_the_annotation() -> None:
    with pytest.raises(AnnotationError) as exc:
        read({NGINX + "proxy-body-size": "8 m"})
    assert exc.value.field == f'metadata.annotations["{NGINX}proxy-body-size"]'
    assert "size" in exc.value.reason
    with pytest.raises(AnnotationError, match="AJP backends are not supported"):
        read({NGINX + "backend-protocol": "AJP"})
    with pytest.raises(AnnotationError, match="must be a string"):
        read({NGINX + "use-regex": True})


def test_typed_settings() -> None:
    result = read(
        {
            NGINX + "enable-cors": "true",
            NGINX + "cors-allow-origin": "https://a.example.com",
            NGINX + "permanent-redirect": "https://b.example.com",
            NGINX + "temporal-redirect": "https://c.example.com",
            NGINX + "allowlist-source-range": "10.0.0.0/8",
            NGINX + "whitelist-source-range": "192.168.0.0/16",
            NGINX + "ssl-redirect": "false",
            NGINX + "server-alias": "alias.example.com",
            NGINX + "rewrite-target": "/$1",
        }
    )
    assert result.policy == Policy(
        cors=Cors(origins=("https://a.example.com",)),
        redirect=(302, "https://c.example.com"),
        allow=("10.0.0.0/8",),
        rewrite_target="/$1",
    )
    assert result.server == ServerPolicy(ssl_redirect=False, aliases=("alias.example.com",))
    assert result.regex, "rewrite-target implies regex paths"


def test_settings_without_their_switch_warn() -> None:
    result = read({NGINX + "cors-allow-origin": "*", NGINX + "permanent-redirect-code": "308"})
    assert result.policy is None
    assert {reason for _, reason in result.warnings} == {
        "has no effect without enable-cors",
        "has no effect without permanent-redirect",
    }


def test_readme_table_is_generated_from_the_registry() -> None:
    readme = (REPO / "README.md").read_text()
    assert annotation_doc.replace(readme) == readme, (
        "README's annotation table is stale: run `python -m ingressctl.translate.annotations.doc --write README.md`"
    )
    for a in ANNOTATIONS:
        assert f"| `{a.name}` |" in readme
