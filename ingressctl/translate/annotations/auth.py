"""External authentication (auth-url and its auth-* settings) and client certificates (auth-tls-*):
the value parsers of their annotations and the typed settings built from them. Pure: no I/O.

Variables: auth-url may name `$host` as its whole host (no port): the auth request then goes to this
nginx itself (its own listener, with the request's Host and SNI), as `https://$host/oauth2/auth` does
under ingress-nginx; or a Service's `<name>.<namespace>.svc[.cluster.local]`, which translate
replaces with its cluster IP from the cache; otherwise an IP address. nginx never resolves a name.
auth-request-redirect and auth-tls-error-page hold no variables. auth-signin may use
`$host`, `$http_host`, `$best_http_host`, `$scheme`, `$pass_access_scheme`, `$request_uri` and
`$escaped_request_uri` (ingress-nginx's documented ones), auth-cache-key `$remote_user`, `$remote_addr`,
`$host`, `$uri`, `$request_uri`, `$http_<name>`, `$cookie_<name>` and `$arg_<name>`; any other `$` is
refused. ingress-nginx's own names are renamed to ours here, so the template prints only variables
that exist in our nginx.conf.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ingressctl.config import ClientAuth, ExternalAuth
from ingressctl.translate.annotations import values as v
from ingressctl.translate.validate import Invalid

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")
VERIFY_CLIENT = ("on", "off", "optional", "optional_no_ca")
DEFAULT_CACHE_DURATION = "200 202 401 5m"
DEFAULT_REDIRECT_PARAM = "rd"

_URL_REST = r"(?P<rest>[/?][A-Za-z0-9._~!&()*+,=:@/?%-]*)?"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SERVICE_HOST = rf"{_LABEL}\.{_LABEL}\.svc(?:\.cluster\.local)?"
# A Service's cluster DNS name: <service>.<namespace>.svc[.cluster.local].
SERVICE_NAME = re.compile(rf"(?P<service>{_LABEL})\.(?P<namespace>{_LABEL})\.svc(?:\.cluster\.local)?")
_AUTH_URL = re.compile(
    rf"(?P<scheme>https?)://(?P<host>[0-9.]{{7,15}}|\[[0-9A-Fa-f:.]{{2,45}}\]|\$host(?![A-Za-z0-9_])|{_SERVICE_HOST})"
    r"(?::(?P<port>[0-9]{1,5}))?" + _URL_REST
)
_NOT_NAME = r"(?![A-Za-z0-9_])"
# auth-signin: ingress-nginx's variables, mapped to the ones our nginx.conf defines.
SIGNIN_VARIABLES = {
    "host": "$host",
    "http_host": "$ingressctl_host",
    "best_http_host": "$ingressctl_host",
    "scheme": "$scheme",
    "pass_access_scheme": "$scheme",
    "request_uri": "$request_uri",
    "escaped_request_uri": "$ingressctl_escaped_request_uri",
}
_SIGNIN_VAR = r"\$(?:" + "|".join(sorted(SIGNIN_VARIABLES, key=len, reverse=True)) + ")" + _NOT_NAME
_SIGNIN = re.compile(
    r"https?://(?:[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?|\$(?:host|http_host|best_http_host)" + _NOT_NAME + ")"
    r"(?:[/?](?:[A-Za-z0-9._~!&()*+,=:@/?%-]|" + _SIGNIN_VAR + r")*)?"
)
_CACHE_VAR = r"\$(?:remote_user|remote_addr|host|uri|request_uri|(?:http|cookie|arg)_[A-Za-z0-9_]{1,64})" + _NOT_NAME
_CACHE_KEY = re.compile(r"(?:[A-Za-z0-9._:/@-]|" + _CACHE_VAR + r"){1,256}")
_CACHE_ENTRY = re.compile(r"(?:(?:[2-5][0-9]{2}|any) +){0,16}[0-9]{1,6}(?:ms|s|m|h|d)?")
_PARAM = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MATCH_CN = re.compile(r"CN=(?:[A-Za-z0-9._~!&()*+,=:@/|?\[\]^-]|\\\.){1,255}\$?")  # '$' only as the end


def auth_url(value: str) -> str:
    """An http(s) URL whose host is an IP address, a Service's cluster DNS name (translate replaces it
    with the Service's cluster IP) or `$host` without a port (the request's own host, asked through
    this nginx itself): nginx never resolves a name, at load or per request."""
    text = v._text(value, v.MAX_URL)
    m = _AUTH_URL.fullmatch(text)
    try:
        ok = m is not None and v._port_ok(m["port"])
        if ok and m is not None and m["host"] == "$host":
            ok = m["port"] is None
        elif ok and m is not None and not SERVICE_NAME.fullmatch(m["host"]):
            ipaddress.ip_address(m["host"].strip("[]"))
    except ValueError:
        ok = False
    if not ok:
        raise Invalid(
            f"{value!r} is not an http(s) URL whose host is an IP address, a Service's "
            "<name>.<namespace>.svc[.cluster.local] or $host (no other names or variables, whitespace, quotes, "
            "braces, ';', '#' or '\\')"
        )
    return text


def _target(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path and query) of a URL auth_url accepted."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc, url[len(parts.scheme) + 3 + len(parts.netloc) :] or "/"


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise Invalid(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


method = _one_of(METHODS)
verify_client = _one_of(VERIFY_CLIENT)


def signin(value: str) -> str:
    """An http(s) URL that may use the auth-signin variables (module docstring); returns it with our
    variable names."""
    text = v._text(value, v.MAX_URL)
    if not _SIGNIN.fullmatch(text):
        raise Invalid(
            f"{value!r} is not an http(s) URL using only the variables "
            f"{', '.join('$' + n for n in SIGNIN_VARIABLES)} (no whitespace, quotes, braces, ';', '#' or '\\')"
        )
    return re.sub(_SIGNIN_VAR, lambda m: SIGNIN_VARIABLES[m[0][1:]], text)


def redirect_param(value: str) -> str:
    if not _PARAM.fullmatch(v._text(value, 64)):
        raise Invalid(f"{value!r} is not a query parameter name (letters, digits, '_' and '-')")
    return value


def cache_key(value: str) -> str:
    text = v._text(value, 256)
    if not _CACHE_KEY.fullmatch(text):
        raise Invalid(
            f"{value!r} is not a cache key: letters, digits, '._:/@-' and the variables $remote_user, $remote_addr, "
            "$host, $uri, $request_uri, $http_<name>, $cookie_<name>, $arg_<name>"
        )
    return re.sub(_CACHE_VAR, lambda m: m[0].lower(), text)


def cache_duration(value: str) -> tuple[tuple[str, ...], ...]:
    """Comma-separated proxy_cache_valid arguments: optional statuses (or `any`) and a time; each
    entry as its words."""
    items = [" ".join(i.split()) for i in v._items(value, 256)]
    bad = [i for i in items if not _CACHE_ENTRY.fullmatch(i) or any(not 200 <= int(c) <= 599 for c in _codes(i))]
    if bad or not items:
        raise Invalid(f"{(bad or [value])[0]!r} is not statuses (200-599 or any) followed by a time such as 5m")
    return tuple(tuple(i.split()) for i in items)


def _codes(entry: str) -> list[str]:
    return [c for c in entry.split()[:-1] if c != "any"]


def match_cn(value: str) -> str:
    """`CN=` and a regular expression over the client certificate's subject DN (a safe subset)."""
    text = v._text(value, 260)
    if not _MATCH_CN.fullmatch(text):
        raise Invalid(
            f"{value!r} is not CN= followed by a regex of letters, digits, path characters, ( ) | ? * + [ ] ^, "
            "'\\.' and a final '$' (no whitespace, braces, quotes, ';', '#' or other backslashes)"
        )
    try:
        with warnings.catch_warnings():  # Python's "possible nested set" about '[[': PCRE's syntax
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(text)
    except re.error as exc:
        raise Invalid(f"{value!r} is not a valid regular expression: {exc}") from None
    return text


def signin_url(url: str, param: str) -> str:
    """ingress-nginx's buildAuthSignURL: the original URL goes in `param` unless the URL sets it."""
    query = urllib.parse.urlsplit(url).query
    if param in urllib.parse.parse_qs(query, keep_blank_values=True):
        return url
    return f"{url}{'&' if query else '?'}{param}=$scheme://$ingressctl_host$ingressctl_escaped_request_uri"


def external_auth(values: Mapping[str, Any]) -> ExternalAuth | None:
    url = values.get("auth-url")
    if url is None:
        return None
    sign = values.get("auth-signin")
    key = values.get("auth-cache-key")
    scheme, host, path = _target(url)
    service = SERVICE_NAME.fullmatch(host.rsplit(":", 1)[0])
    return ExternalAuth(
        url=url,
        host=host,
        scheme=scheme,
        path=path,
        service=f"{service['namespace']}/{service['service']}" if service else None,
        method=values.get("auth-method"),
        signin=signin_url(sign, values.get("auth-signin-redirect-param", DEFAULT_REDIRECT_PARAM)) if sign else None,
        response_headers=values.get("auth-response-headers", ()),
        request_redirect=values.get("auth-request-redirect"),
        cache_key=key,
        cache_valid=values.get("auth-cache-duration", (tuple(DEFAULT_CACHE_DURATION.split()),)) if key else (),
        always_set_cookie=bool(values.get("auth-always-set-cookie", False)),
    )


def client_auth(values: Mapping[str, Any]) -> ClientAuth | None:
    secret = values.get("auth-tls-secret")
    if secret is None:
        return None
    return ClientAuth(
        secret=secret,
        verify=values.get("auth-tls-verify-client", "on"),
        depth=values.get("auth-tls-verify-depth", 1),
        error_page=values.get("auth-tls-error-page"),
        pass_certificate=bool(values.get("auth-tls-pass-certificate-to-upstream", False)),
        match_cn=values.get("auth-tls-match-cn"),
    )


# Annotations that mean nothing without another one (annotations._unused reads this).
NEEDS = {
    **{
        n: "auth-url"
        for n in (
            "auth-method",
            "auth-signin",
            "auth-signin-redirect-param",
            "auth-response-headers",
            "auth-request-redirect",
            "auth-cache-key",
            "auth-cache-duration",
            "auth-always-set-cookie",
        )
    },
    "auth-signin-redirect-param": "auth-signin",
    "auth-cache-duration": "auth-cache-key",
    **{
        n: "auth-tls-secret"
        for n in (
            "auth-tls-verify-client",
            "auth-tls-verify-depth",
            "auth-tls-error-page",
            "auth-tls-pass-certificate-to-upstream",
            "auth-tls-match-cn",
        )
    },
}
