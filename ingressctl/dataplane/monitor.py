"""Per-route request metrics from the data plane, as Prometheus series on the health port.

nginx counts requests per route id and status class (lua/ingressctl/monitor.lua) and keeps totals in
a shared dict; on each scrape of /metrics, RouteMetrics reads them through the Lua API
(GET /configuration/metrics), adds what grew since the last read to its own totals under the route's
labels (Configuration.routes: namespace, Ingress, host, rule path, Service; none from the request),
and serves those. Its totals never go down: a reload keeps nginx's dict (and old workers flush what
they hold before they exit); a new nginx master starts a new dict with a new epoch, and what is read
after it counts from zero. A route's series disappear once the route leaves the configuration.

It also serves the ready endpoints per backend (what the balancer has), from the configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ingressctl.config import Backend, Configuration, RouteLabels
from ingressctl.dataplane.luaapi import LuaApi
from ingressctl.metrics import Metrics
from ingressctl.translate.canary import SEPARATOR as CANARY_SEPARATOR

log = logging.getLogger(__name__)

# The record layout of monitor.lua (1-based there).
COUNT, REQUEST_BYTES, RESPONSE_BYTES, DURATION_SUM, UPSTREAM_COUNT, UPSTREAM_SUM = range(6)
_FIRST_BUCKET = 6
# ingress-nginx's --time-buckets default (Prometheus' DefBuckets); monitor.lua holds the same list
# and sends it along, a mismatch is refused (the test of both keeps them equal).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FIELDS = _FIRST_BUCKET + 2 * len(BUCKETS)
CLASSES = {"1": "1xx", "2": "2xx", "3": "3xx", "4": "4xx", "5": "5xx"}
ROUTE_LABELS = ("namespace", "ingress", "host", "path", "service")
SERIES = (
    "ingressctl_requests",
    "ingressctl_request_duration_seconds",
    "ingressctl_upstream_response_duration_seconds",
    "ingressctl_request_bytes",
    "ingressctl_response_bytes",
    "ingressctl_backend_endpoints_ready",
)

_Key = tuple[RouteLabels, str]  # labels and status class


class RouteMetrics:
    """A prometheus_client collector and a Controller publisher (it learns the running routes from
    each applied Configuration); refresh() runs before each scrape."""

    def __init__(self, *, lua: LuaApi, metrics: Metrics) -> None:
        self.lua = lua
        self.enabled = False
        self._routes: Mapping[str, RouteLabels] = {}
        self._retired: Mapping[str, RouteLabels] = {}  # the routes before the last change, for their last counts
        self._backends: Sequence[Backend] = ()
        self._epoch: str | None = None
        self._last: dict[str, list[float]] = {}  # "route:class" -> the dict's totals at the last read
        self._totals: dict[_Key, list[float]] = {}
        # One read at a time: two scrapes at once (an HA pair of Prometheus servers) must not add an
        # older answer after a newer one (it would look like an evicted entry and count twice).
        self._reading = asyncio.Lock()
        metrics.registry.register(self)
        metrics.before_scrape.append(self.refresh)

    async def publish(self, config: Configuration) -> None:
        self.enabled = config.static.options.metrics
        if config.routes is not self._routes:
            self._retired, self._routes = self._routes, config.routes
        self._backends = config.backends
        if not self.enabled:
            self._totals, self._last, self._epoch = {}, {}, None

    async def refresh(self) -> None:
        """Adds what nginx counted since the last read; keeps the totals when nginx does not answer."""
        if not self.enabled:
            return
        async with self._reading:
            document = await self.lua.metrics()
            if document is not None:
                self.add(document)

    def add(self, document: Mapping[str, Any]) -> None:
        """Adds a GET /configuration/metrics answer (the dict's totals) as differences."""
        if tuple(document.get("buckets") or ()) != BUCKETS or document.get("fields") != FIELDS:
            log.warning("the data plane's metrics layout differs from the controller's: ignored")
            return
        epoch = str(document.get("epoch"))
        if epoch != self._epoch:  # a new nginx master: its dict counts from zero
            self._epoch, self._last = epoch, {}
        routes: Mapping[str, list[float]] = document.get("routes") or {}
        for name, raw in routes.items():
            route, _, digit = name.rpartition(":")
            status = CLASSES.get(digit)
            labels = self._routes.get(route) or self._retired.get(route)
            if status is None or labels is None or len(raw) != FIELDS:
                # Not known yet (nginx may run a new configuration a moment before it is published
                # here) or not any more: counted from what was last read once its labels are known.
                continue
            last = self._last.get(name)
            self._last[name] = raw
            if last is None or any(r < p for r, p in zip(raw, last, strict=True)):
                delta = raw  # new, or the dict lost the entry (evicted) and counts again from zero
            else:
                delta = [r - p for r, p in zip(raw, last, strict=True)]
            totals = self._totals.setdefault((labels, status), [0.0] * FIELDS)
            for i, value in enumerate(delta):
                totals[i] += value
        if self._retired:
            current = set(self._routes.values())
            self._totals = {k: v for k, v in self._totals.items() if k[0] in current}
            self._retired = {}

    def collect(self) -> Iterator[Metric]:
        labels = [*ROUTE_LABELS, "status"]
        requests = CounterMetricFamily(
            "ingressctl_requests", "requests answered, per route and status class", labels=labels
        )
        request_bytes = CounterMetricFamily(
            "ingressctl_request_bytes", "bytes received from clients ($request_length)", labels=labels
        )
        response_bytes = CounterMetricFamily(
            "ingressctl_response_bytes", "bytes sent to clients ($bytes_sent)", labels=labels
        )
        duration = HistogramMetricFamily(
            "ingressctl_request_duration_seconds", "time from the request's first byte to its log", labels=labels
        )
        upstream = HistogramMetricFamily(
            "ingressctl_upstream_response_duration_seconds",
            "time waiting for endpoints' responses (all tries), for requests that reached one",
            labels=labels,
        )
        for (route, status), t in sorted(self._totals.items(), key=_sort_key):
            values = [route.namespace, route.ingress, route.host, route.path, route.service, status]
            requests.add_metric(values, t[COUNT])
            request_bytes.add_metric(values, t[REQUEST_BYTES])
            response_bytes.add_metric(values, t[RESPONSE_BYTES])
            duration.add_metric(values, _buckets(t, _FIRST_BUCKET, t[COUNT]), t[DURATION_SUM])
            upstream.add_metric(values, _buckets(t, _FIRST_BUCKET + len(BUCKETS), t[UPSTREAM_COUNT]), t[UPSTREAM_SUM])
        yield from (requests, duration, upstream, request_bytes, response_bytes)
        ready = GaugeMetricFamily(
            "ingressctl_backend_endpoints_ready",
            "ready endpoints the balancer has per backend (Service port)",
            labels=["namespace", "service", "port"],
        )
        for backend in self._backends:
            if CANARY_SEPARATOR in backend.name:
                continue  # a canary route's backend: no endpoints of its own (its two Services' are listed)
            namespace, _, rest = backend.name.partition("/")
            service, _, port = rest.rpartition(":")
            ready.add_metric([namespace, service, port], len(backend.endpoints))
        yield ready


def _buckets(totals: list[float], first: int, count: float) -> list[tuple[str, float]]:
    out, running = [], 0.0
    for i, bound in enumerate(BUCKETS):
        running += totals[first + i]
        out.append((str(float(bound)), running))
    out.append(("+Inf", count))
    return out


def _sort_key(item: tuple[_Key, list[float]]) -> tuple[str, ...]:
    route, status = item[0]
    return (route.namespace, route.ingress, route.host, route.path, route.service, status)
