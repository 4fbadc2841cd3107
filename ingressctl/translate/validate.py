"""Anchored allowlist checks for every string that can reach nginx.conf.

Each check uses re.fullmatch (never `$`, which also matches before a trailing newline). A value
that passes is safe to emit quoted; translate rejects the object that carries one that fails.
"""

from __future__ import annotations

import ipaddress
import re

_DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_DNS_LABEL_RE = re.compile(_DNS_LABEL)
_WILDCARD_HOST = re.compile(rf"\*(\.{_DNS_LABEL})+")
# Exact/Prefix paths: RFC 3986 path characters minus everything nginx.conf or a regex could read
# as syntax (quotes, braces, semicolons, $, #, whitespace, backslash, %).
_PATH = re.compile(r"/[A-Za-z0-9._~!&()*+,=:@/-]*")
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?")
_SIZE = re.compile(r"[0-9]{1,9}[kKmMgG]?")


MAX_PATH = 254


class Invalid(ValueError):
    """A value failed its allowlist check; the message says why."""


def host(value: object) -> str:
    """A DNS-1123 subdomain, optionally with a `*.` first label; returned lower-cased."""
    if not isinstance(value, str) or not value:
        raise Invalid("must be a non-empty string")
    if not value.isascii():
        # Checked before lower(): 'K' (KELVIN SIGN) lower-cases to an ASCII 'k'.
        raise Invalid(f"{value!r} is not a DNS-1123 host name (ASCII only; use the punycode form)")
    v = value.lower()
    if len(v) > 253:
        raise Invalid("must be at most 253 characters")
    if _DNS_SUBDOMAIN.fullmatch(v) or _WILDCARD_HOST.fullmatch(v):
        return v
    raise Invalid(f"{value!r} is not a DNS-1123 host name (optionally with a '*.' first label)")


def rule_host(value: object) -> str:
    """A rule's host: host(), and not an IP address (as the API server requires: an IP is no host)."""
    v = host(value)
    if _is_ipv4(v):
        raise Invalid(f"{v!r} is an IP address; a rule's host must be a DNS name (omit it to match any host)")
    return v


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def path(value: object) -> str:
    """A plain absolute path for Exact and Prefix rules."""
    if not isinstance(value, str) or not value:
        raise Invalid("must be a non-empty string")
    # nginx keeps a location's length in one byte: longer locations silently stop matching.
    # A Prefix path also becomes the location "<path>/", hence one less.
    if len(value) > MAX_PATH:
        raise Invalid(f"must be at most {MAX_PATH} characters (nginx cannot match longer locations)")
    if not _PATH.fullmatch(value):
        raise Invalid(
            f"{value!r} is not a plain path: it must start with '/' and contain only letters, digits "
            "and ._~!&()*+,=:@/- (no whitespace, quotes, braces, ';', '$', '#', '%' or '\\')"
        )
    if "//" in value:
        raise Invalid(f"{value!r} contains '//'")
    if any(seg in (".", "..") for seg in value.split("/")):
        raise Invalid(f"{value!r} contains a '.' or '..' segment")
    return value


def name(value: object, what: str = "name") -> str:
    """A Kubernetes object name (DNS-1123 subdomain; Service names are labels, a subset)."""
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise Invalid(f"{value!r} is not a valid {what} (DNS-1123)")
    return value


def service_name(value: object) -> str:
    if not isinstance(value, str) or not _DNS_LABEL_RE.fullmatch(value):
        raise Invalid(f"{value!r} is not a valid Service name (DNS-1123 label)")
    return value


def port_number(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid(f"{value!r} is not a port number (1-65535)")
    return value


def port_name(value: object) -> str:
    if not isinstance(value, str) or not _PORT_NAME.fullmatch(value) or "--" in value:
        raise Invalid(f"{value!r} is not a valid port name (IANA_SVC_NAME)")
    return value


def ip_address(value: object) -> str:
    """An endpoint address: an IPv4 or IPv6 literal (never a host name)."""
    # ipaddress's grammar (no leading zeros in IPv4, at most one "::" in IPv6), without zone
    # indexes ("%eth0"); lua/ingressctl/configuration.lua checks the same grammar, and a test
    # compares the two on generated addresses.
    if isinstance(value, str) and value.isascii() and "%" not in value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            pass
        else:
            return value
    raise Invalid(f"{value!r} is not an IP address")


def size(value: object) -> str:
    """An nginx size such as 1m, 512k, 0."""
    if not isinstance(value, str) or not _SIZE.fullmatch(value):
        raise Invalid(f"{value!r} is not a size (digits with an optional k, m or g)")
    return value
