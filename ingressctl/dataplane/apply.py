"""Apply: make nginx and the Lua balancer run a Configuration, reloading only when needed.

Static part changed -> write certificates, render to a temporary file, `nginx -t` it, send the
backends, atomically replace nginx.conf, SIGHUP the master and wait until the new digest answers
on the configuration API. Only backends changed -> send them to the Lua API, no reload. A failed
test keeps the last good configuration running and reports why.

Backends go out as a delta (only those that changed, removals by name) on top of the Lua store's
epoch and version from the last answer; as a full replace when nginx (re)started, when no answer
told where the store is, or when a delta fails (the store may be elsewhere: 409, or unknown).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ingressctl.config import Backend, Configuration, StaticConfig
from ingressctl.dataplane.luaapi import BackendsEncoder, LuaApi, LuaApiError, LuaState
from ingressctl.dataplane.nginx import Nginx
from ingressctl.dataplane.render import Renderer, UnsafeValue
from ingressctl.metrics import Metrics

log = logging.getLogger(__name__)


class ApplyError(RuntimeError):
    pass


class ConfigRejected(ApplyError):
    """nginx -t refused the candidate: retrying the same configuration cannot help."""


@dataclass(frozen=True)
class ApplyResult:
    reloaded: bool
    backends_updated: bool
    deferred: bool = False  # the static part changed but its reload was held back


class Applier:
    def __init__(
        self, *, nginx: Nginx, renderer: Renderer, lua: LuaApi, metrics: Metrics, live_timeout: float = 60.0
    ) -> None:
        self.nginx = nginx
        self.renderer = renderer
        self.lua = lua
        self.metrics = metrics
        self.live_timeout = live_timeout
        self.static: StaticConfig | None = None  # what nginx runs
        self.backends: tuple[Backend, ...] | None = None  # what the balancer holds
        self.reloads = 0
        self.encoder = BackendsEncoder()
        # Where the Lua store is and what it holds, by name; None: not known, send everything.
        self._lua_state: LuaState | None = None
        self._lua_master: int | None = None  # the nginx master that store belongs to
        self._posted: dict[str, Backend] = {}
        self.full_posts = 0
        self.delta_posts = 0
        self.last_reload = float("-inf")  # time.monotonic() of the last reload

    @property
    def ready(self) -> bool:
        return self.static is not None and self.backends is not None and self.nginx.alive()

    def _write_certificates(self, static: StaticConfig) -> None:
        certs = Path(self.nginx.paths.certs)
        for cert in static.certificates:
            path = certs / f"{cert.name}.pem"
            if path.exists():
                continue
            tmp = certs / f".{cert.name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(cert.pem)
            os.replace(tmp, path)

    def _remove_unused_certificates(self, static: StaticConfig) -> None:
        keep = {f"{c.name}.pem" for c in static.certificates}
        for path in Path(self.nginx.paths.certs).glob("*.pem"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    async def _wait_live(self, digest: str) -> None:
        deadline = time.monotonic() + self.live_timeout
        while time.monotonic() < deadline:
            if not self.nginx.alive():
                raise ApplyError("nginx exited")
            if await self.lua.digest() == digest:
                self.nginx.worker_pids()  # remembers the new workers
                return
            await asyncio.sleep(0.005)
        raise ApplyError(f"configuration {digest} was not live after {self.live_timeout:.0f}s")

    async def _post(self, config: Configuration, *, keep: tuple[Backend, ...] = ()) -> None:
        """Sends the config's backends, plus those of `keep` it lacks (routes still running)."""
        backends = config.backends
        if keep:
            names = {b.name for b in backends}
            backends = tuple(sorted((*backends, *(b for b in keep if b.name not in names)), key=lambda b: b.name))
        state, self._lua_state = self._lua_state, None  # unknown until the Lua API answers
        if state is not None and self._lua_master == self.nginx.pid:
            upserts, removals, same = self._delta(backends)
            try:
                if upserts or removals:
                    body = self.encoder.encode_delta(base=state, upserts=upserts, removals=removals)
                    state = await self.lua.patch_backends(body)
                    self.delta_posts += 1
                    log.debug(
                        "backends delta: %d upserted, %d removed, version %d",
                        len(upserts),
                        len(removals),
                        state.version,
                    )
            except LuaApiError as exc:
                log.warning("backends delta failed, sending every backend: %s", exc)
            else:
                posted = self._posted
                for backend in (*upserts, *same):
                    posted[backend.name] = backend
                for name in removals:
                    del posted[name]
                self._remember(backends, state)
                return
        state = await self.lua.post_backends(self.encoder.encode(backends))
        self._posted = {b.name: b for b in backends}
        self.full_posts += 1
        log.debug("backends replaced: %d backends, version %d", len(backends), state.version)
        self._remember(backends, state)

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

    def _remember(self, backends: tuple[Backend, ...], state: LuaState) -> None:
        self._lua_state, self._lua_master = state, self.nginx.pid
        self.backends = backends
        self.metrics.backend_updates.inc()

    async def _install_static(self, static: StaticConfig) -> str:
        """Renders, tests and installs nginx.conf; returns its digest. Raises ApplyError and leaves
        the running configuration alone on failure."""
        self._write_certificates(static)
        try:
            rendered = await asyncio.to_thread(self.renderer.render, static)
        except UnsafeValue as exc:
            self.metrics.reload_errors.inc()
            raise ConfigRejected(f"render refused the configuration, keeping the running one: {exc}") from None
        candidate = self.nginx.conf.with_name("nginx.conf.new")
        candidate.write_text(rendered.text)
        result = await self.nginx.test(candidate)
        if not result.ok:
            self.metrics.reload_errors.inc()
            raise ConfigRejected(f"nginx -t rejected the new configuration, keeping the running one: {result.output}")
        os.replace(candidate, self.nginx.conf)
        return rendered.digest

    async def apply(self, config: Configuration, *, defer_reload: bool = False) -> ApplyResult:
        """Applies config. With defer_reload, a static change is held back (the caller retries
        later) while backend changes still go out, keeping the backends the running routes use."""
        static = config.static
        if not self.nginx.alive():
            self._lua_state = None  # a new master has a new, empty shared dict: send everything
            self.nginx.prepare()
            digest = await self._install_static(static)
            await self.nginx.start()
            self.last_reload = time.monotonic()
            await self._wait_live(digest)
            self.static = static
            await self._post(config)
            self._remove_unused_certificates(static)
            return ApplyResult(reloaded=True, backends_updated=True)
        if static != self.static and defer_reload:
            running = self.backends or ()
            if any(b not in running for b in config.backends):
                await self._post(config, keep=running)
                return ApplyResult(reloaded=False, backends_updated=True, deferred=True)
            return ApplyResult(reloaded=False, backends_updated=False, deferred=True)
        if static != self.static:
            digest = await self._install_static(static)
            # New routes must find their backends the moment the new workers take over.
            await self._post(config)
            started = time.monotonic()
            old_workers = self.nginx.worker_pids()
            self.nginx.reload()
            self.last_reload = started
            self.reloads += 1
            self.metrics.reloads.inc()
            try:
                await self._wait_live(digest)
                # The new workers answer; the old ones accept connections until the master has
                # told them to quit. Only then does every new connection see the new config.
                await self.nginx.wait_stopped_accepting(old_workers, timeout=self.live_timeout)
            except ApplyError:
                self.metrics.reload_errors.inc()
                raise
            self.static = static
            self._remove_unused_certificates(static)
            log.info("nginx reload %d done in %.0f ms", self.reloads, (time.monotonic() - started) * 1000)
            return ApplyResult(reloaded=True, backends_updated=True)
        if config.backends != self.backends:
            await self._post(config)
            log.debug("backends updated without reload")
            return ApplyResult(reloaded=False, backends_updated=True)
        return ApplyResult(reloaded=False, backends_updated=False)
