"""Prometheus metrics of the controller (served on the health port at /metrics), shared by the
controller (syncs, problems, readiness) and the data plane (reloads, backend updates; per-route
request metrics are a collector of their own, ingressctl.dataplane.monitor, hooked in before_scrape)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Run (awaited) before each scrape: collectors that read the data plane first
        # (ingressctl.dataplane.monitor: per-route request metrics).
        self.before_scrape: list[Callable[[], Awaitable[None]]] = []
        self.reloads = Counter(
            "ingressctl_nginx_reloads",
            "nginx reloads signalled, by main reason (ingressctl.plan.Reason); refused ones count in reload_errors too",
            ["reason"],
            registry=self.registry,
        )
        self.reload_errors = Counter(
            "ingressctl_nginx_reload_errors",
            "configurations nginx refused (nginx -t at start, the reload itself) or not confirmed live",
            registry=self.registry,
        )
        self.backend_updates = Counter(
            "ingressctl_backend_updates", "backend documents posted to the Lua API", registry=self.registry
        )
        self.refused = Counter(
            "ingressctl_nginx_refused_ingresses",
            "Ingresses rejected alone because nginx -t refused the configuration they made",
            registry=self.registry,
        )
        self.certificate_expiry_days = Gauge(
            "ingressctl_certificate_expiry_days",
            "days until the leaf certificate of a TLS Secret in use expires (negative: expired)",
            ["secret"],
            registry=self.registry,
        )
        self.syncs = Counter("ingressctl_syncs", "sync loop runs", registry=self.registry)
        self.problems = Gauge("ingressctl_problems", "rejected or degraded objects", registry=self.registry)
        self.sync_seconds = Histogram(
            "ingressctl_sync_seconds",
            "time from translate to applied",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.ready = Gauge("ingressctl_ready", "1 once the first configuration is live", registry=self.registry)
