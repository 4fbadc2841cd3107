"""Which certificate each server name gets: the document the Lua certificate store serves from.

Certificates are served by SNI from the Lua store (lua/ingressctl/certificates.lua), not from
files named in nginx.conf, so that rotating a Secret, or a new certificate for a host that already
serves TLS, is a Lua update and no reload. This module derives that document from the static
part (pure): each server with a certificate maps its host (an exact name or a `*.` wildcard) and
its aliases to it; every other name gets the default certificate. It also names the certificates
nginx.conf still reads as files (the shared SSL context's placeholder, proxy-ssl-secret's), which
are the only ones written to disk.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from ingressctl.config import Certificate, StaticConfig


@dataclass(frozen=True)
class ServedCertificates:
    """What the Lua store holds: names to certificate names, the default, and their PEMs."""

    default: str  # Certificate.name
    hosts: Mapping[str, str]  # server name (exact or "*.domain") -> Certificate.name
    certificates: Mapping[str, Certificate]  # by name: the default and every one hosts use

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Equal for two documents the store would hold alike (names are content hashes)."""
        return self.default, tuple(sorted(self.hosts.items()))

    def document(self, *, ciphers: str, held: frozenset[str] = frozenset()) -> dict[str, object]:
        """The JSON document for POST /configuration/certificates, without the PEMs in `held`."""
        return {
            "default": self.default,
            "hosts": dict(self.hosts),
            "certificates": {
                name: cert.pem.decode("ascii") for name, cert in sorted(self.certificates.items()) if name not in held
            },
            "ciphers": ciphers,
        }


@functools.lru_cache(maxsize=4)  # the plan and the applier ask for the same static parts in turn
def served(static: StaticConfig) -> ServedCertificates:
    hosts: dict[str, str] = {}
    for server in static.servers:
        if not server.certificate:
            continue
        hosts[server.host] = server.certificate
        for alias in server.policy.aliases if server.policy else ():
            hosts.setdefault(alias, server.certificate)
    by_name = {c.name: c for c in static.certificates}
    names = {static.default_certificate, *hosts.values()}
    return ServedCertificates(
        default=static.default_certificate,
        hosts=hosts,
        certificates={n: by_name[n] for n in sorted(names) if n in by_name},
    )


def file_certificates(static: StaticConfig) -> tuple[Certificate, ...]:
    """The certificates nginx.conf names as files: everything but what only the Lua store serves."""
    referenced = {static.tls_context_certificate}
    for server in (static.default_server, *static.servers):
        for location in server.locations:
            policy = location.policy
            if policy is not None:
                referenced.update(n for n in (policy.ssl_trusted, policy.ssl_client) if n)
    lua_only = {static.default_certificate, *(s.certificate for s in static.servers if s.certificate)} - referenced
    return tuple(c for c in static.certificates if c.name not in lua_only)
