"""The sync loop: events -> cache -> debounce -> translate -> plan -> apply -> publish.

Events that change nothing translate reads are dropped by the cache, which also says what changed
(everything, or only some Services' endpoints: then only their backends are resolved again). The
plan (ingressctl.plan) says what the new Configuration costs: nothing, a Lua update or a reload, and
why; the applier executes it. The first event after a quiet
period opens a window; the sync runs once no event came for `holdoff` seconds (`endpoint_holdoff`
while the window holds only endpoint changes, which cost no render and go to the Lua API as a
delta), or `max_delay` after the window opened, whichever is first. Reloads are further spaced
by `min_reload_interval`: a static change that comes sooner is held back until then (endpoint
changes still go out at once), so a burst of host/path changes costs one reload at its start and
one after it. Translate runs in a thread so the health endpoints stay responsive at scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from ingressctl.cache import Cache, Snapshot
from ingressctl.config import Configuration, Problem
from ingressctl.dataplane.apply import Applier, ApplyError, ApplyResult, ConfigRejected
from ingressctl.dataplane.luaapi import LuaApiError
from ingressctl.memory import fix_mmap_threshold
from ingressctl.metrics import Metrics
from ingressctl.model import Event, EventType
from ingressctl.plan import Plan, make_plan
from ingressctl.sources.base import Source
from ingressctl.translate import Translator
from ingressctl.translate.tenancy import Refusal

log = logging.getLogger(__name__)

# Rounds of "nginx refused it: reject the Ingresses it traces to, translate and test again" per sync.
MAX_ISOLATIONS = 5


class Publisher(Protocol):
    """Told about every configuration that went live (status writer, event recorder...)."""

    async def publish(self, config: Configuration) -> None: ...


class Controller:
    def __init__(
        self,
        *,
        source: Source,
        translator: Translator,
        applier: Applier,
        metrics: Metrics,
        publishers: Sequence[Publisher] = (),
        holdoff: float = 0.03,
        endpoint_holdoff: float = 0.01,
        max_delay: float = 1.0,
        retry_delay: float = 1.0,
        min_reload_interval: float = 1.0,
    ) -> None:
        self.source = source
        self.translator = translator
        self.applier = applier
        self.metrics = metrics
        self.publishers = publishers
        self.holdoff = holdoff
        self.endpoint_holdoff = endpoint_holdoff
        self.max_delay = max_delay
        self.retry_delay = retry_delay
        self.min_reload_interval = min_reload_interval
        self._deferred: asyncio.TimerHandle | None = None
        self.cache = Cache()
        self.synced = False
        self.config: Configuration | None = None
        self._dirty = asyncio.Event()
        self._first_change = 0.0
        self._last_change = 0.0
        self._reported: set[Problem] = set()
        self._expiry_labels: set[str] = set()

    @property
    def ready(self) -> bool:
        return self.synced and self.applier.ready

    async def run(self) -> None:
        fix_mmap_threshold()  # large per-sync buffers go back to the OS (see ingressctl.memory)
        consumer = asyncio.create_task(self._consume(), name="source")
        try:
            while True:
                await self._dirty.wait()
                if consumer.done():
                    consumer.result()  # re-raise a failed source
                await self._debounce()
                self._dirty.clear()
                await self.sync()
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    async def _consume(self) -> None:
        # aclosing: the source's own clean-up (closing watches, releasing the Lease) runs when we
        # stop, not whenever the generator happens to be collected.
        async with contextlib.aclosing(self.source.events()) as events:
            async for event in events:
                if event.type is EventType.SYNCED:
                    if not self.synced:
                        log.info("source synced: applying the first configuration")
                    self.synced = True
                    self._mark()
                else:
                    self._record(event)
        self._dirty.set()  # the source ended: wake the loop so run() re-raises or sees it

    def _record(self, event: Event) -> None:
        if self.cache.apply(event) and self.synced:
            self._mark()

    def _mark(self) -> None:
        now = time.monotonic()
        if not self._dirty.is_set():
            self._first_change = now
        self._last_change = now
        self._dirty.set()

    async def _debounce(self) -> None:
        while True:
            now = time.monotonic()
            holdoff = self.endpoint_holdoff if self.cache.endpoints_only and self.config else self.holdoff
            wait = min(self._last_change + holdoff, self._first_change + self.max_delay) - now
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def sync(self) -> None:
        started = time.monotonic()
        snapshot = self.cache.snapshot()
        changes = self.cache.take_changes()
        previous = self.config
        if changes.full or previous is None:
            config = await asyncio.to_thread(self.translator.full, snapshot)
        else:
            # Endpoints only: no translate of the whole snapshot, no render, no reload.
            config = self.translator.endpoints(previous, snapshot, services=set(changes.services))
        translated = time.monotonic()
        self.metrics.syncs.inc()
        try:
            config, plan, result, wait = await self._execute(snapshot, config)
        except ConfigRejected as exc:
            self._report(config)
            log.error(
                "nginx refused the new configuration and nothing in it could be traced to an Ingress: "
                "keeping the last good configuration running (%s)",
                exc.trace.reason,
            )
            log.debug("%s", exc)
            self.cache.changed_all()
            return
        except (ApplyError, LuaApiError, OSError) as exc:
            log.error("apply failed, retrying in %.0fs: %s", self.retry_delay, exc)
            self.cache.changed_all()
            asyncio.get_running_loop().call_later(self.retry_delay, self._mark)
            return
        if result.deferred:
            if self._deferred is None or self._deferred.cancelled() or self._deferred.when() < time.monotonic():
                self._deferred = asyncio.get_running_loop().call_later(wait, self._mark)
            log.debug("reload held back %.0f ms (min reload interval): %s", wait * 1000, plan.describe())
        self.metrics.sync_seconds.observe(time.monotonic() - started)
        self.metrics.ready.set(1 if self.ready else 0)
        if not changes.full:
            log.debug(
                "endpoint-only sync: snapshot + translate %.1f ms, apply %.1f ms",
                (translated - started) * 1000,
                (time.monotonic() - translated) * 1000,
            )
        self.config = config
        if result.reloaded or result.backends_updated:
            log.info(
                "configuration applied (%s) in %.0f ms: %d servers, %d backends, %d problems",
                "reload" if result.reloaded else "backends only, no reload",
                (time.monotonic() - started) * 1000,
                len(config.static.servers),
                len(config.backends),
                len(config.problems),
            )
        for publisher in self.publishers:
            try:
                await publisher.publish(config)
            except Exception:  # a publisher must never stop serving
                log.exception("publisher %s failed", type(publisher).__name__)

    async def _execute(
        self, snapshot: Snapshot, config: Configuration
    ) -> tuple[Configuration, Plan, ApplyResult, float]:
        """Plans and applies `config`. When nginx refuses it and the refusal traces to Ingresses,
        those are rejected alone (ingressctl.translate.tenancy.Refusal) and the rest is translated
        and applied again, at most MAX_ISOLATIONS times; otherwise ConfigRejected propagates."""
        for attempt in range(MAX_ISOLATIONS + 1):
            self._report(config)
            plan = make_plan(self.applier.running, config)
            wait = self.applier.last_reload + self.min_reload_interval - time.monotonic()
            try:
                return (
                    config,
                    plan,
                    await self.applier.execute(plan, config, defer_reload=plan.reload and wait > 0),
                    wait,
                )
            except ConfigRejected as exc:
                culprits = [r for r in exc.trace.culprits if r not in self.translator.refused]
                if not culprits or attempt == MAX_ISOLATIONS:
                    raise
                for ref in culprits:
                    log.warning(
                        "nginx refused the configuration of %s (%s): rejecting it alone, applying the rest",
                        ref,
                        exc.trace.reason,
                    )
                    self.translator.refuse(Refusal.of(snapshot, ref, exc.trace.reason))
                    self.metrics.refused.inc()
                config = await asyncio.to_thread(self.translator.full, snapshot)
        raise AssertionError("unreachable")

    def _report(self, config: Configuration) -> None:
        """Logs each problem once, when it appears; and once more when it is gone."""
        current = set(config.problems)
        for problem in sorted(current - self._reported, key=str):
            log.warning("rejected: %s", problem)
        for problem in sorted(self._reported - current, key=str):
            log.info("resolved: %s", problem)
        self._reported = current
        self.metrics.problems.set(len(current))
        self._report_expiry(config)

    def _report_expiry(self, config: Configuration) -> None:
        """Days left per TLS Secret in use; a Secret no longer used loses its series."""
        now = datetime.datetime.now(datetime.UTC)
        secrets = dict(config.certificate_expiry)
        for secret in self._expiry_labels - secrets.keys():
            self.metrics.certificate_expiry_days.remove(secret)
        for secret, not_after in secrets.items():
            days = (not_after - now).total_seconds() / 86400
            self.metrics.certificate_expiry_days.labels(secret=secret).set(round(days, 3))
        self._expiry_labels = set(secrets)
