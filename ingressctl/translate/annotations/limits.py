"""The limit-* annotations as a Limits, and auth-type/auth-secret/auth-realm as a BasicAuth (before
its Secret is read: ingressctl.translate.basicauth does that). Pure: values in, settings out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingressctl.config import BasicAuth, Limits

_ZONED = ("limit-rps", "limit-rpm", "limit-connections")


def limits(values: Mapping[str, Any], *, namespace: str, name: str) -> Limits | None:
    """The Ingress's limits, None when it sets none (a zero rps/rpm/connections is no limit, as in
    ingress-nginx; limit-rate 0 does switch off the ConfigMap's global limit-rate for these paths).
    limit-allowlist wins over its older name limit-whitelist."""
    if not any(values.get(n) for n in _ZONED) and "limit-rate" not in values and "limit-rate-after" not in values:
        return None
    return Limits(
        namespace=namespace,
        ingress=name,
        rps=values.get("limit-rps", 0),
        rpm=values.get("limit-rpm", 0),
        connections=values.get("limit-connections", 0),
        burst_multiplier=values.get("limit-burst-multiplier", 5),
        rate=values.get("limit-rate"),
        rate_after=values.get("limit-rate-after"),
        allowlist=values.get("limit-allowlist", values.get("limit-whitelist", ())),
    )


def basic_auth(values: Mapping[str, Any]) -> BasicAuth | None:
    if values.get("auth-type") != "basic":
        return None
    return BasicAuth(
        realm=values.get("auth-realm", ""),
        secret=values["auth-secret"],
        secret_type=values.get("auth-secret-type", "auth-file"),
    )
