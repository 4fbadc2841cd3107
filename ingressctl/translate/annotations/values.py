"""Value parsers of annotation values: one anchored check per value type, each returning a typed value.

Every parser takes the annotation's string, checks it with `re.fullmatch` (never `$`), a length cap
and, where a real parser exists (`ipaddress`, `re`), that parser too; it raises Invalid with a reason
that names what is accepted. A value that passes is safe to print quoted into nginx.conf.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from collections.abc import Callable

from ingressctl.translate import validate
from ingressctl.translate.validate import Invalid

MAX_VALUE = 1024  # any annotation value
MAX_URL = 1024
MAX_LIST = 64  # items in any list value

_DIGITS = re.compile(r"[0-9]{1,9}")
_SIZE = re.compile(r"[0-9]{1,9}[kKmMgG]?")
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
_HEADER = re.compile(r"[A-Za-z0-9_-]{1,64}")
_METHOD = re.compile(r"[A-Za-z]{1,16}")
# An absolute http(s) URL: scheme, a DNS host or IPv4 (optionally :port), then an optional path and
# query of characters that need no escaping in nginx.conf (no whitespace, quotes, braces, ';', '$', '#', '\').
_URL = re.compile(
    r"(?P<scheme>https?)://(?P<host>[A-Za-z0-9.-]{1,253})(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<rest>[/?][A-Za-z0-9._~!&()*+,=:@/?%-]*)?"
)
_URL_PATH = re.compile(r"/[A-Za-z0-9._~!&()*+,=:@/%-]*")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<wild>\*\.)?(?P<host>[A-Za-z0-9.-]{1,253})(?::(?P<port>[0-9]{1,5}))?")
_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9.-]{1,253})(?::(?P<port>[0-9]{1,5}))?")
# The regular-expression subset accepted in regex paths: a path's characters plus grouping,
# alternation, classes, anchors and quantifiers; no braces (nginx block syntax), no backslash
# except `\.`, no whitespace, quotes, ';' or '#'.
_REGEX_PATH = re.compile(r"/(?:[A-Za-z0-9._~!&()*+,=:@/|?\[\]^$-]|\\\.)*")
_REWRITE = re.compile(r"(?:/|https?://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?/?)(?:[A-Za-z0-9._~!&()*+,=:@/?%-]|\$[1-9])*")


_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_CIDR = re.compile(r"[0-9A-Fa-f:./]{1,64}")


def _text(value: str, cap: int = MAX_VALUE) -> str:
    """Every value: at most `cap` characters, printable ASCII only (no control characters, no CR/LF)."""
    if len(value) > cap:
        raise Invalid(f"must be at most {cap} characters")
    if not _PRINTABLE.fullmatch(value):
        raise Invalid(f"{value!r} contains a control or non-ASCII character")
    return value


def boolean(value: str) -> bool:
    """ingress-nginx accepts Go's strconv.ParseBool spellings."""
    v = _text(value, 8)
    if v in ("true", "True", "TRUE", "1", "t", "T"):
        return True
    if v in ("false", "False", "FALSE", "0", "f", "F"):
        return False
    raise Invalid(f"{value!r} is not true or false")


def on_off(value: str) -> bool:
    v = _text(value, 8).lower()
    if v not in ("on", "off"):
        raise Invalid(f"{value!r} is not on or off")
    return v == "on"


def integer(low: int, high: int) -> Callable[[str], int]:
    def check(value: str) -> int:
        v = _text(value, 10).strip()
        if not _DIGITS.fullmatch(v) or not low <= int(v) <= high:
            raise Invalid(f"{value!r} is not a whole number from {low} to {high}")
        return int(v)

    check.__doc__ = f"a whole number from {low} to {high}"
    return check


def _seconds(low: int) -> Callable[[str], int]:
    """ingress-nginx's timeouts are plain numbers of seconds ("30"); a trailing "s" is accepted too."""
    extra = " (0 = no limit)" if low == 0 else ""

    def check(value: str) -> int:
        v = _text(value, 10).strip()
        v = v[:-1] if v.endswith("s") else v
        if not _DIGITS.fullmatch(v) or not low <= int(v) <= 3600:
            raise Invalid(f"{value!r} is not a number of seconds ({low}-3600{extra})")
        return int(v)

    return check


seconds = _seconds(1)
seconds_or_zero = _seconds(0)


def size(value: str) -> str:
    """An nginx size: digits and an optional k, m or g (upper case too)."""
    v = _text(value, 12).strip()
    if not _SIZE.fullmatch(v):
        raise Invalid(f"{value!r} is not a size (digits with an optional k, m or g)")
    return v.lower()


_NEXT_UPSTREAM = (
    "error",
    "timeout",
    "invalid_header",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_403",
    "http_404",
    "http_429",
    "non_idempotent",
    "off",
)


def next_upstream(value: str) -> tuple[str, ...]:
    """Space-separated conditions of nginx's proxy_next_upstream."""
    items = tuple(dict.fromkeys(_text(value, 200).split()))
    if not items:
        raise Invalid("must name at least one condition")
    bad = [i for i in items if i not in _NEXT_UPSTREAM]
    if bad:
        raise Invalid(f"{bad[0]!r} is not one of {', '.join(_NEXT_UPSTREAM)}")
    if "off" in items and len(items) > 1:
        raise Invalid("'off' cannot be combined with other conditions")
    return items


def http_version(value: str) -> str:
    if value not in ("1.0", "1.1"):
        raise Invalid(f"{value!r} is not 1.0 or 1.1")
    return value


def _port_ok(port: str | None) -> bool:
    return port is None or 1 <= int(port) <= 65535


def _host_ok(host: str) -> bool:
    try:
        validate.host(host)
    except Invalid:
        return False
    return not host.startswith("*")


def url(value: str) -> str:
    """An absolute http or https URL with a valid host; no whitespace, control characters, quotes,
    braces, ';', '$', '#' or '\\'."""
    v = _text(value, MAX_URL)
    m = _URL.fullmatch(v)
    if not m or not _host_ok(m["host"]) or not _port_ok(m["port"]):
        raise Invalid(
            f"{value!r} is not an http(s) URL with a valid host (no whitespace, quotes, braces, ';', '$', '#' or '\\')"
        )
    return v


def url_or_path(value: str) -> str:
    """An absolute http(s) URL or an absolute path."""
    v = _text(value, MAX_URL)
    if v.startswith("/"):
        if not _URL_PATH.fullmatch(v):
            raise Invalid(f"{value!r} is not a plain path (no whitespace, quotes, braces, ';', '$', '#' or '\\')")
        return v
    return url(v)


def redirect_code(default: int) -> Callable[[str], int]:
    codes = (300, 301, 302, 303, 304, 307, 308)

    def check(value: str) -> int:
        v = _text(value, 4).strip()
        if not _DIGITS.fullmatch(v) or int(v) not in codes:
            raise Invalid(f"{value!r} is not a redirect status ({', '.join(map(str, codes))})")
        return int(v)

    check.__doc__ = f"a redirect status code (default {default})"
    return check


def _items(value: str, cap: int = MAX_VALUE) -> list[str]:
    items = [i.strip() for i in _text(value, cap).split(",")]
    items = [i for i in items if i]
    if len(items) > MAX_LIST:
        raise Invalid(f"at most {MAX_LIST} items")
    return items


def cidrs(value: str) -> tuple[str, ...]:
    """A comma-separated list of IPv4/IPv6 addresses or CIDR ranges, parsed with `ipaddress`."""
    out: list[str] = []
    items = _items(value, 4096)
    if not items:
        raise Invalid("must list at least one address or CIDR range")
    for item in items:
        try:
            if not _CIDR.fullmatch(item):  # also no IPv6 scope id ("fe80::1%eth0"), which ipaddress accepts
                raise ValueError
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise Invalid(f"{item!r} is not an IP address or CIDR range") from None
        out.append(str(net))
    return tuple(dict.fromkeys(out))


def origins(value: str) -> tuple[str, ...]:
    """`*`, or http(s) origins (optionally with a port, optionally `*.` as the first host label)."""
    items = _items(value)
    if not items:
        raise Invalid("must list at least one origin")
    if "*" in items:
        return ("*",)
    out = []
    for item in items:
        m = _ORIGIN.fullmatch(item)
        if not m or not _host_ok(m["host"]) or not _port_ok(m["port"]):
            raise Invalid(f"{item!r} is not '*' or an origin such as https://example.com[:port] or https://*.a.com")
        out.append(item.lower())
    return tuple(dict.fromkeys(out))


def methods(value: str) -> tuple[str, ...]:
    items = _items(value, 256)
    bad = [i for i in items if not _METHOD.fullmatch(i)]
    if bad or not items:
        raise Invalid(f"{(bad or [value])[0]!r} is not a method name (letters only)")
    return tuple(dict.fromkeys(i.upper() for i in items))


def headers(value: str) -> tuple[str, ...]:
    items = _items(value)
    bad = [i for i in items if not _HEADER.fullmatch(i)]
    if bad or not items:
        raise Invalid(f"{(bad or [value])[0]!r} is not a header name (letters, digits, '_' and '-')")
    return tuple(dict.fromkeys(items))


def expose_headers(value: str) -> tuple[str, ...]:
    items = _items(value)
    bad = [i for i in items if i != "*" and not _HEADER.fullmatch(i)]
    if bad or not items:
        raise Invalid(f"{(bad or [value])[0]!r} is not '*' or a header name (letters, digits, '_' and '-')")
    return tuple(dict.fromkeys(items))


def hosts(value: str) -> tuple[str, ...]:
    """Comma-separated host names (DNS-1123, lower-cased)."""
    items = _items(value)
    if not items:
        raise Invalid("must list at least one host name")
    out = []
    for item in items:
        if item.startswith("*"):
            raise Invalid(f"{item!r}: wildcard aliases are not supported")
        out.append(validate.host(item))
    return tuple(dict.fromkeys(out))


def host_port(value: str) -> str:
    """A host name with an optional :port (the Host header sent to the backend)."""
    v = _text(value, 260)
    m = _HOST_PORT.fullmatch(v)
    if not m or not _host_ok(m["host"]) or not _port_ok(m["port"]):
        raise Invalid(f"{value!r} is not a host name with an optional :port")
    return v.lower()


def token(value: str) -> str:
    """An HTTP token such as keep-alive or close."""
    if not _TOKEN.fullmatch(_text(value, 64)):
        raise Invalid(f"{value!r} is not a header token (letters, digits and '-')")
    return value


def plain_path(value: str) -> str:
    return validate.path(_text(value, validate.MAX_PATH))


def status_codes(value: str) -> tuple[int, ...]:
    items = _items(value, 512)
    out = []
    for item in items:
        if not _DIGITS.fullmatch(item) or not 400 <= int(item) <= 599:
            raise Invalid(f"{item!r} is not an HTTP error status (400-599)")
        out.append(int(item))
    if not out:
        raise Invalid("must list at least one status code")
    return tuple(sorted(set(out)))


def service_name(value: str) -> str:
    return validate.service_name(value)


_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPCS")


def backend_protocol(value: str) -> str:
    v = _text(value, 8).upper()
    if v in ("AJP", "FCGI"):
        raise Invalid(f"{v} backends are not supported (HTTP, HTTPS, GRPC and GRPCS are)")
    if v not in _PROTOCOLS:
        raise Invalid(f"{value!r} is not one of {', '.join(_PROTOCOLS)}")
    return v


def regex_path(value: str) -> str:
    """A path as a regular expression (use-regex): a safe subset that compiles."""
    v = _text(value, validate.MAX_PATH)
    if not _REGEX_PATH.fullmatch(v):
        raise Invalid(
            f"{value!r} is not a safe path regex: it must start with '/' and use only path characters, "
            "( ) | ? * + [ ] ^ $ and '\\.' (no braces, whitespace, quotes, ';', '#' or other backslashes)"
        )
    try:
        re.compile(v)
    except re.error as exc:
        raise Invalid(f"{value!r} is not a valid regular expression: {exc}") from None
    return v


def rewrite_target(value: str) -> str:
    """A path (or http(s) URL) that may use the capture groups $1..$9."""
    v = _text(value, MAX_URL)
    if not _REWRITE.fullmatch(v):
        raise Invalid(
            f"{value!r} is not a rewrite target: a path or http(s) URL using only path characters and $1..$9 "
            "(no whitespace, quotes, braces, ';', '#', '\\' or other '$' variables)"
        )
    return v


def secret_ref(value: str) -> str:
    """namespace/name or name of a Secret; returns the name (the namespace must be the Ingress's own,
    which the caller checks)."""
    v = _text(value, 507)
    ns, _, name = v.rpartition("/")
    validate.name(name, "Secret name")
    if ns:
        validate.name(ns, "namespace")
    return v


def choice(*allowed: str) -> Callable[[str], str]:
    """One of a fixed set of words."""

    def check(value: str) -> str:
        v = _text(value, 32).strip()
        if v not in allowed:
            raise Invalid(f"{value!r} is not one of {', '.join(allowed)}")
        return v

    check.__doc__ = f"one of {', '.join(allowed)}"
    return check


# A realm is printed quoted into nginx.conf and sent in WWW-Authenticate: printable ASCII without
# quotes, backslashes, '$' (nginx expands variables in auth_basic), ';', braces or '#'.
# "off" would switch authentication off (nginx's auth_basic off): never a realm.
_REALM = re.compile(r"[A-Za-z0-9 .,:!?@()/_+=*&%~-]{0,128}")


def realm(value: str) -> str:
    v = " ".join(_text(value, 128).split())
    if not _REALM.fullmatch(v):
        raise Invalid(
            f"{value!r} is not a realm: up to 128 letters, digits, spaces and .,:!?@()/_+=*&%~- "
            "(no quotes, backslashes, '$', ';', braces or '#')"
        )
    if v.lower() == "off":
        raise Invalid("'off' is not a realm (nginx would switch authentication off)")
    return v


def auth_type(value: str) -> str:
    v = _text(value, 16).strip()
    if v == "digest":
        raise Invalid("digest authentication is not supported (Debian's nginx has no digest module); use basic")
    if v != "basic":
        raise Invalid(f"{value!r} is not basic")
    return v


# --- canary (read by translate/canary.py; the values go to the Lua balancer, never into nginx.conf) ---
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")  # nginx drops headers with '_' (underscores_in_headers off)
_COOKIE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_PATTERN = 256
# A header-value regex: literal characters, classes, anchors, alternation, non-capturing and plain
# groups, quantifiers; backslash only before a class letter or a punctuation character; `$` only at
# the end of a branch. No braces, backreferences, lookarounds, inline flags or named groups (PCRE and
# Python differ there), and no quantifier right after a group: no nested repetition, the backtracking
# that could take seconds per request.
_PATTERN = re.compile(r"(?:[A-Za-z0-9 !%&,/:<=>@_~-]|[.^$|*+?()\[\]]|\\[dDwWsS.^$|*+?()\[\]\\/-])*")
_PATTERN_BAD = re.compile(r"\)[*+?]|\(\?(?!:)|(?<!\\)\$(?![|)]|\Z)")
# A header value compared exactly: the characters of a URL's path and query, and spaces inside.
_HEADER_VALUE = re.compile(
    r"[A-Za-z0-9._~!&()*+,=:@/?%|-](?:[A-Za-z0-9._~!&()*+,=:@/?%| -]*[A-Za-z0-9._~!&()*+,=:@/?%|-])?"
)


def header_name(value: str) -> str:
    """An HTTP header name: letters, digits and '-' (nginx ignores headers with '_')."""
    if not _HEADER_NAME.fullmatch(_text(value, 64)):
        raise Invalid(f"{value!r} is not a header name (1-64 letters, digits or '-')")
    return value


def cookie_name(value: str) -> str:
    if not _COOKIE_NAME.fullmatch(_text(value, 64)):
        raise Invalid(f"{value!r} is not a cookie name (1-64 letters, digits, '_', '.' or '-')")
    return value


def header_value(value: str) -> str:
    """A header value compared exactly: URL characters and inner spaces (nginx strips outer ones)."""
    if not _HEADER_VALUE.fullmatch(_text(value, MAX_PATTERN)):
        raise Invalid(
            f"{value!r} is not an accepted header value: letters, digits, ._~!&()*+,=:@/?%|- and inner spaces"
        )
    return value


def header_pattern(value: str) -> str:
    """A regular expression over the header's value (PCRE in the balancer): a subset that Python and
    PCRE read alike and that cannot backtrack without bound."""
    v = _text(value, MAX_PATTERN)
    if not v or not _PATTERN.fullmatch(v) or _PATTERN_BAD.search(v):
        raise Invalid(
            f"{value!r} is not an accepted pattern: letters, digits, ' !%&,/:<=>@_~-', '.^$|*+?()[]' ($ only "
            "at the end of a branch), backslash only before d D w W s S or punctuation; no braces, quotes, "
            "';', '#', backreferences, lookarounds or inline flags (only '(?:'); no quantifier after a group"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "possible nested set": a construct PCRE may read differently
        try:
            re.compile(v)
        except (re.error, FutureWarning) as exc:
            raise Invalid(f"{value!r} is not an accepted regular expression: {exc}") from None
    return v
