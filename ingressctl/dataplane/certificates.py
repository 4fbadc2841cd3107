"""The certificates the Lua store serves by SNI, as the controller knows them, and sending them.

The store (lua/ingressctl/certificates.lua) holds the whole map of server names to certificate
names; a POST replaces it, carrying only the PEMs the store does not hold yet (names are content
hashes, so a held name is the same certificate). Nothing is sent while the map, the ciphers and the
nginx master stay the same. The store checks each new certificate as OpenSSL will use it and names
the first it refuses: that is CertificateRefused here, which apply traces to the Ingresses that
chose the certificate. Private keys travel only over the 0600 unix socket, into nginx's memory.
"""

from __future__ import annotations

import json
import logging

from ingressctl.dataplane.luaapi import LuaApi, LuaApiError
from ingressctl.translate.sni import ServedCertificates

log = logging.getLogger(__name__)


class CertificateRefused(LuaApiError):
    """The store refused a certificate: OpenSSL, as nginx runs it, would not use it."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"certificate {name} refused: {reason}")
        self.name = name
        self.reason = reason


class LuaCertificates:
    def __init__(self, *, lua: LuaApi) -> None:
        self.lua = lua
        self._held: frozenset[str] = frozenset()  # certificate names the store holds
        self._sent: tuple[object, ...] | None = None  # (master, ciphers, map) of the last answer
        self.posts = 0

    def forget(self) -> None:
        """The store is unknown (a new nginx master): the next send carries every certificate."""
        self._held, self._sent = frozenset(), None

    async def send(self, served: ServedCertificates, *, ciphers: str, master: int | None) -> None:
        """Makes the store of nginx master `master` serve `served`; raises CertificateRefused."""
        sent = (master, ciphers, served.key)
        if sent == self._sent:
            return
        held = self._held if self._sent is not None and self._sent[:2] == (master, ciphers) else frozenset()
        self._sent = None  # unknown until the store answers
        status, answer = await self._post(served.document(ciphers=ciphers, held=held))
        if status == 409:  # the store lacks some (a new master, or new ciphers): send them all
            log.info("certificate store lacks %s: sending every certificate", answer.get("missing"))
            status, answer = await self._post(served.document(ciphers=ciphers))
        refused = answer.get("certificate")
        if status == 400 and isinstance(refused, str):
            raise CertificateRefused(refused, str(answer.get("error")))
        if status != 201:
            raise LuaApiError(f"Lua API answered {status} to the certificates: {answer}")
        self._held, self._sent = frozenset(served.certificates), sent
        log.debug("certificates sent: %s", answer)

    async def _post(self, document: dict[str, object]) -> tuple[int, dict[str, object]]:
        self.posts += 1
        return await self.lua.post_certificates(json.dumps(document, separators=(",", ":")))
