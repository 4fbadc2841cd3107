"""The balancer's backends, as the controller knows them: what the Lua store holds, and sending it
what changed.

Backends go out as a delta (only those that changed, removals by name) on top of the Lua store's
epoch and version from its last answer; as a full replace when the nginx master is new (a new
master has a new, empty shared dict), when no answer told where the store is, or when a delta
fails (the store may be elsewhere: 409, or unknown).
"""

from __future__ import annotations

import logging

from ingressctl.config import Backend
from ingressctl.dataplane.luaapi import BackendsEncoder, LuaApi, LuaApiError, LuaState
from ingressctl.metrics import Metrics

log = logging.getLogger(__name__)


class LuaBackends:
    def __init__(self, *, lua: LuaApi, metrics: Metrics) -> None:
        self.lua = lua
        self.metrics = metrics
        self.encoder = BackendsEncoder()
        self.backends: tuple[Backend, ...] | None = None  # what the balancer holds, as last sent
        # Where the Lua store is and what it holds, by name; None: not known, send everything.
        self._state: LuaState | None = None
        self._master: int | None = None  # the nginx master that store belongs to
        self._posted: dict[str, Backend] = {}
        self.full_posts = 0
        self.delta_posts = 0

    def forget(self) -> None:
        """The store is unknown (a new nginx master): the next send replaces everything."""
        self._state = None

    async def send(self, backends: tuple[Backend, ...], *, master: int | None) -> None:
        """Makes the store of nginx master `master` hold exactly `backends`."""
        state, self._state = self._state, None  # unknown until the Lua API answers
        if state is not None and self._master == master:
            upserts, removals, same = self._delta(backends)
            try:
                if upserts or removals:
                    body = self.encoder.encode_delta(base=state, upserts=upserts, removals=removals)
                    state = await self.lua.patch_backends(body)
                    self.delta_posts += 1
                    counts = (len(upserts), len(removals))
                    log.debug("backends delta: %d upserted, %d removed, version %d", *counts, state.version)
            except LuaApiError as exc:
                log.warning("backends delta failed, sending every backend: %s", exc)
            else:
                posted = self._posted
                for backend in (*upserts, *same):
                    posted[backend.name] = backend
                for name in removals:
                    del posted[name]
                self._remember(backends, state=state, master=master)
                return
        state = await self.lua.post_backends(self.encoder.encode(backends))
        self._posted = {b.name: b for b in backends}
        self.full_posts += 1
        log.debug("backends replaced: %d backends, version %d", len(backends), state.version)
        self._remember(backends, state=state, master=master)

    def _delta(self, backends: tuple[Backend, ...]) -> tuple[list[Backend], list[str], list[Backend]]:
        """What changed since the store last answered: backends to upsert, names to remove, and
        equal backends that are new objects (remembered, so the next diff compares by identity)."""
        running = self.backends
        if running is not None and len(running) == len(backends):
            # An endpoint-only change keeps the order and every unchanged object: compare by
            # position and identity, so the cost at 10,000 backends stays well under a millisecond.
            moved = [(new, old) for new, old in zip(backends, running, strict=True) if new is not old]
            if all(new.name == old.name for new, old in moved):
                return [n for n, o in moved if n != o], [], [n for n, o in moved if n == o]
        posted = self._posted
        upserts: list[Backend] = []
        same: list[Backend] = []
        known = 0
        for backend in backends:
            old = posted.get(backend.name)
            if old is None:
                upserts.append(backend)
                continue
            known += 1
            if old is not backend:
                (same if old == backend else upserts).append(backend)
        removals = [] if known == len(posted) else sorted(posted.keys() - {b.name for b in backends})
        return upserts, removals, same

    def _remember(self, backends: tuple[Backend, ...], *, state: LuaState, master: int | None) -> None:
        self._state, self._master = state, master
        self.backends = backends
        self.metrics.backend_updates.inc()
