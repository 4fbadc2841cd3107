"""Apply: execute a change plan (ingressctl.plan) so that nginx and the Lua balancer run a
Configuration.

A reload (and the first start, which shares its path) writes certificates, renders to a temporary
file, `nginx -t`s it, atomically replaces nginx.conf, sends the backends, SIGHUPs (or starts) the
master and waits until the new digest answers on the configuration API and the old workers stopped
accepting. With test_reloads off (--skip-reload-test) a reload is its own test (one parse, not two:
at 10,000 Ingresses that halves a host change): the master keeps the running configuration when it
cannot load the new one. Either way a refusal the master logs is reported exactly like a failed
test (ConfigRejected, traced to its Ingress where it can be), with the last good nginx.conf put back. A Lua update
sends the backends (ingressctl.dataplane.backends: as a delta where it can) and the certificates served
by SNI (ingressctl.dataplane.certificates), whichever changed. A certificate the Lua store refuses is a
ConfigRejected traced to the Ingresses that chose it; the store keeps what it served.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ingressctl.config import Backend, Configuration, StaticConfig
from ingressctl.dataplane import htpasswd
from ingressctl.dataplane.backends import LuaBackends
from ingressctl.dataplane.certificates import CertificateRefused, LuaCertificates
from ingressctl.dataplane.luaapi import LuaApi
from ingressctl.dataplane.nginx import Nginx
from ingressctl.dataplane.refusal import Trace, trace
from ingressctl.dataplane.render import Renderer, UnsafeValue
from ingressctl.metrics import Metrics
from ingressctl.plan import Action, Plan, Reason, make_plan
from ingressctl.translate.sni import file_certificates, served

log = logging.getLogger(__name__)


class ApplyError(RuntimeError):
    pass


class ConfigRejected(ApplyError):
    """nginx refused the candidate (nginx -t, or the reload): retrying the same configuration cannot
    help. `trace` names the Ingresses responsible, when nginx's message could be traced to them
    (dataplane.refusal)."""

    def __init__(self, message: str, trace: Trace | None = None) -> None:
        super().__init__(message)
        self.trace = trace or Trace((), message)


@dataclass(frozen=True)
class ApplyResult:
    reloaded: bool
    backends_updated: bool
    deferred: bool = False  # the static part changed but its reload was held back


class Applier:
    def __init__(
        self,
        *,
        nginx: Nginx,
        renderer: Renderer,
        lua: LuaApi,
        metrics: Metrics,
        live_timeout: float = 60.0,
        test_reloads: bool = True,
    ) -> None:
        self.nginx = nginx
        self.renderer = renderer
        self.lua = lua
        self.metrics = metrics
        self.live_timeout = live_timeout
        # nginx -t before each reload too (default); without, a reload is its own test (one parse).
        self.test_reloads = test_reloads
        # What nginx and the balancer run: the last configuration that went live, with the
        # backends sent since (a held-back reload may send the new backends alongside the old ones).
        self.running: Configuration | None = None
        self.lua_backends = LuaBackends(lua=lua, metrics=metrics)
        self.lua_certificates = LuaCertificates(lua=lua)
        # The last nginx.conf installed and its Configuration: a refused reload is traced on them.
        self._installed: tuple[str, Configuration] | None = None
        self.reloads = 0
        self.last_reload = float("-inf")  # time.monotonic() of the last reload (or start)
        for reason in Reason:  # every label exists from the start, at 0
            metrics.reloads.labels(reason=reason.value)

    @property
    def static(self) -> StaticConfig | None:
        return self.running.static if self.running else None

    @property
    def backends(self) -> tuple[Backend, ...] | None:
        return self.lua_backends.backends

    @property
    def ready(self) -> bool:
        return self.running is not None and self.backends is not None and self.nginx.alive()

    def _write_certificates(self, static: StaticConfig) -> None:
        """Only the files nginx.conf names: the certificates served by SNI live in the Lua store."""
        certs = Path(self.nginx.paths.certs)
        for cert in file_certificates(static):
            path = certs / f"{cert.name}.pem"
            if path.exists():
                continue
            tmp = certs / f".{cert.name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(cert.pem)
            os.replace(tmp, path)

    def _remove_unused_certificates(self, static: StaticConfig) -> None:
        keep = {f"{c.name}.pem" for c in file_certificates(static)}
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
            refused = self.nginx.refusal()
            if refused:
                self.nginx.restore()
                traced = None  # counted in reload_errors by _go_live
                if self._installed is not None:
                    text, config = self._installed
                    traced = trace(refused, text=text, candidate=str(self.nginx.conf), config=config)
                raise ConfigRejected(f"nginx refused the new configuration, keeping the running one: {refused}", traced)
            await asyncio.sleep(0.005)
        raise ApplyError(f"configuration {digest} was not live after {self.live_timeout:.0f}s")

    async def _install_static(self, config: Configuration, *, test: bool) -> str:
        """Renders, tests (if `test`: the first start; a reload is its own test) and installs
        nginx.conf; returns its digest. Raises ApplyError and leaves the running configuration alone
        on failure."""
        static = config.static
        self._write_certificates(static)
        htpasswd.write(self.nginx.paths, static)
        try:
            rendered = await asyncio.to_thread(self.renderer.render, static)
        except UnsafeValue as exc:
            self.metrics.reload_errors.inc()
            raise ConfigRejected(f"render refused the configuration, keeping the running one: {exc}") from None
        candidate = self.nginx.conf.with_name("nginx.conf.new")
        candidate.write_text(rendered.text)
        if test:
            result = await self.nginx.test(candidate)
            if not result.ok:
                self.metrics.reload_errors.inc()
                traced = trace(result.output, text=rendered.text, candidate=str(candidate), config=config)
                raise ConfigRejected(f"nginx -t rejected the new configuration: {result.output}", traced)
        self.nginx.install(candidate)
        self._installed = (rendered.text, config)
        return rendered.digest

    async def _send(self, backends: tuple[Backend, ...]) -> None:
        await self.lua_backends.send(backends, master=self.nginx.pid)

    async def _send_certificates(self, config: Configuration) -> None:
        """The certificates `config` serves by SNI (nothing if the store has them); a refused one
        is traced to the Ingresses whose TLS sections chose it (none for the default certificate)."""
        static = config.static
        try:
            await self.lua_certificates.send(served(static), ciphers=static.options.ssl_ciphers, master=self.nginx.pid)
        except CertificateRefused as exc:
            self.metrics.reload_errors.inc()
            users = () if exc.name == static.default_certificate else config.certificate_users.get(exc.name, ())
            raise ConfigRejected(
                f"nginx (OpenSSL) refuses a certificate, keeping the ones it serves: {exc.reason}",
                Trace(tuple(users), exc.reason),
            ) from None

    async def _go_live(self, config: Configuration, plan: Plan) -> None:
        """Start or reload: the one path by which a new nginx.conf goes live."""
        starting = not self.nginx.alive()
        if starting:
            # A new master has new, empty shared dicts: send everything.
            self.lua_backends.forget()
            self.lua_certificates.forget()
            self.nginx.prepare()
        digest = await self._install_static(config, test=starting or self.test_reloads)
        started = time.monotonic()
        old_workers: list[int] = []
        if starting:
            await self.nginx.start()
        else:
            # New routes must find their backends and certificates the moment the new workers take over.
            await self._send(config.backends)
            await self._send_certificates(config)
            old_workers = self.nginx.worker_pids()
            self.nginx.reload()  # counted once live (below): a refused one counts in reload_errors only
        self.last_reload = started
        try:
            await self._wait_live(digest)
            if not starting:  # the master loaded it: counted now, before the old workers' hand-over
                self.reloads += 1
                self.metrics.reloads.labels(reason=(plan.reason or Reason.OTHER).value).inc()
            # The new workers answer; the old ones accept connections until the master has told
            # them to quit. Only then does every new connection see the new config.
            await self.nginx.wait_stopped_accepting(old_workers, timeout=self.live_timeout)
        except ApplyError:
            self.metrics.reload_errors.inc()
            raise
        if starting:
            await self._send(config.backends)
            await self._send_certificates(config)
        self.running = config
        self._remove_unused_certificates(config.static)
        htpasswd.remove_unused(self.nginx.paths, config.static)
        what = "start" if starting else f"reload {self.reloads}"
        log.info("nginx %s done in %.0f ms: %s", what, (time.monotonic() - started) * 1000, plan.describe())

    async def execute(self, plan: Plan, config: Configuration, *, defer_reload: bool = False) -> ApplyResult:
        """Executes `plan`, made against self.running, to run `config`. With defer_reload, a reload
        is held back (the caller retries later) while new backends still go out, alongside the
        backends the running routes use. A stopped nginx is started whatever the plan."""
        running = self.running
        if running is None or not self.nginx.alive():
            if plan.action is not Action.RELOAD:
                plan = make_plan(None, config)
            await self._go_live(config, plan)
            return ApplyResult(reloaded=True, backends_updated=True)
        if plan.action is Action.RELOAD and defer_reload:
            current = self.backends or ()
            if any(b not in current for b in config.backends):
                names = {b.name for b in config.backends}
                merged = (*config.backends, *(b for b in current if b.name not in names))
                backends = tuple(sorted(merged, key=lambda b: b.name))
                await self._send(backends)
                self.running = dataclasses.replace(running, backends=backends)
                return ApplyResult(reloaded=False, backends_updated=True, deferred=True)
            return ApplyResult(reloaded=False, backends_updated=False, deferred=True)
        if plan.action is Action.RELOAD:
            await self._go_live(config, plan)
            return ApplyResult(reloaded=True, backends_updated=True)
        if plan.action is Action.LUA:
            if plan.htpasswd_changed:
                await asyncio.to_thread(htpasswd.write, self.nginx.paths, config.static)
            if plan.certificates_changed:
                await self._send_certificates(config)
            await self._send(config.backends)
            # nginx.conf is the same text for both static parts (the plan says so): the new one runs.
            self.running = config
            log.debug("%s", plan.describe())
            return ApplyResult(reloaded=False, backends_updated=True)
        return ApplyResult(reloaded=False, backends_updated=False)

    async def apply(self, config: Configuration, *, defer_reload: bool = False) -> ApplyResult:
        """Plans against what runs and executes the plan (for callers without a plan of their own)."""
        return await self.execute(make_plan(self.running, config), config, defer_reload=defer_reload)
