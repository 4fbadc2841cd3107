"""Server-scope annotations across hosts: which aliases each host may have, the from-to-www redirect
servers, and whether a server redirects HTTP to HTTPS. Pure; problems go to the `report` callback."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping

from ingressctl.config import ObjectRef, Server, ServerPolicy

Report = Callable[[ObjectRef, str], None]  # (the Ingress, the reason)


def other_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else f"www.{host}"


def resolve(
    policies: Mapping[str, ServerPolicy],
    *,
    owners: Mapping[str, ObjectRef],
    hosts: Collection[str],
    report: Report,
) -> dict[str, ServerPolicy]:
    """The owners' policies with what each may have: an alias that is a host or an earlier host's
    alias (in host order) is reported and skipped; a www redirect whose other name is taken is dropped."""
    taken = set(hosts)
    out: dict[str, ServerPolicy] = {}
    for host in sorted(policies):
        policy = policies[host]
        kept = []
        for alias in policy.aliases:
            if alias in taken:
                report(
                    owners[host], f"server-alias {alias} of host {host} is already served as a host or alias; skipped"
                )
                continue
            taken.add(alias)
            kept.append(alias)
        out[host] = dataclasses.replace(policy, aliases=tuple(kept)) if len(kept) != len(policy.aliases) else policy
    for host, policy in out.items():
        if policy.from_to_www and other_www(host) in taken:
            out[host] = dataclasses.replace(policy, from_to_www=False)
        elif policy.from_to_www:
            taken.add(other_www(host))
    return out


def redirect_servers(policies: Mapping[str, ServerPolicy], certificates: Mapping[str, str | None]) -> list[Server]:
    """from-to-www-redirect: a server for the other name (www. added or removed) that redirects (308)."""
    return [
        Server(other_www(host), other_www(host), (), certificates.get(host), redirect_to=host)
        for host, policy in policies.items()
        if policy.from_to_www
    ]


def redirects_https(policy: ServerPolicy | None, *, tls: bool, default: bool) -> bool:
    if policy is None:
        return tls and default
    if policy.force_ssl_redirect:
        return True
    return tls and (default if policy.ssl_redirect is None else policy.ssl_redirect)
