"""The client's real address: checks for the ConfigMap keys that decide which hops are trusted.

ingress-nginx's names (`use-proxy-protocol`, `use-forwarded-headers`, `compute-full-forwarded-for`,
`forwarded-for-header`, `proxy-real-ip-cidr`), one difference by design: no hop is trusted unless
`proxy-real-ip-cidr` names it (ingress-nginx defaults to 0.0.0.0/0). The template turns the checked
values into nginx's realip module directives.
"""

from __future__ import annotations

import ipaddress
import re

from ingressctl.translate.validate import Invalid

MAX_CIDRS = 64
_HEADER = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")


def cidrs(value: str) -> tuple[str, ...]:
    """Comma-separated IPv4/IPv6 networks (or addresses), returned in canonical form, order kept."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if len(parts) > MAX_CIDRS:
        raise Invalid(f"at most {MAX_CIDRS} networks")
    networks: list[str] = []
    for part in parts:
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise Invalid(f"{part!r} is not an IP network (e.g. 10.0.0.0/8)") from None
        networks.append(str(network))
    return tuple(dict.fromkeys(networks))


def header(value: str) -> str:
    """An HTTP header name (letters, digits, '-'; starting with a letter)."""
    if not _HEADER.fullmatch(value):
        raise Invalid(f"{value!r} is not a header name (letters, digits and '-', at most 64)")
    return value


def header_variable(name: str) -> str:
    """nginx's variable for a request header: X-Forwarded-For -> http_x_forwarded_for."""
    return "http_" + header(name).lower().replace("-", "_")
