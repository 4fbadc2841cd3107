"""The Grafana dashboard (deploy/grafana-dashboard.json) and the optional ServiceMonitor
(deploy/monitoring/): the dashboard is well-formed and every panel's PromQL names only series and
labels that the controller's real registry exports; the ServiceMonitor has what the
monitoring.coreos.com/v1 CRD requires and reaches the controller's health port through the metrics
Service's port name; neither is part of deploy/'s default kustomization."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ingressctl.config import (
    Backend,
    Configuration,
    Endpoint,
    GlobalOptions,
    RouteLabels,
    Server,
    StaticConfig,
)
from ingressctl.dataplane.luaapi import LuaApi
from ingressctl.dataplane.monitor import BUCKETS as TIME_BUCKETS
from ingressctl.dataplane.monitor import FIELDS, RouteMetrics
from ingressctl.metrics import Metrics
from tests.test_deploy import DEPLOY, args_of, deploy_objects, find, kubectl_kustomize, load_docs

DASHBOARD = DEPLOY / "grafana-dashboard.json"
MONITORING = DEPLOY / "monitoring"

# PromQL's own words that may appear outside label matchers in our panels.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "by", "without", "on", "ignoring", "or", "and",
    "unless", "rate", "irate", "increase", "histogram_quantile", "vector", "clamp_min", "label_values",
}  # fmt: skip
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}


def exported() -> dict[str, set[str]]:
    """Sample name -> its label names, from the real registry with every family populated."""
    metrics = Metrics()
    routes = RouteMetrics(lua=LuaApi("/nonexistent"), metrics=metrics)
    metrics.reloads.labels(reason="start").inc()
    metrics.certificate_expiry_days.labels(secret="default/tls").set(30)
    metrics.sync_seconds.observe(0.1)
    labels = RouteLabels("default", "shop", "a.example", "/", "app")
    static = StaticConfig(
        servers=(),
        default_server=Server("", "_", ()),
        certificates=(),
        default_certificate="x",
        options=GlobalOptions(),
    )
    config = Configuration(
        static=static, backends=(Backend("default/app:80", (Endpoint("10.0.0.1", 80),)),), routes={"r1": labels}
    )
    asyncio.run(routes.publish(config))
    routes.add({"epoch": "e", "buckets": list(TIME_BUCKETS), "fields": FIELDS, "routes": {"r1:2": [1.0] * FIELDS}})
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _expressions(d: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in d["templating"]["list"] if v["type"] == "query"]
    return exprs


def _references(expr: str) -> tuple[set[str], set[str], set[str]]:
    """(metric names, label names, Grafana variables) an expression refers to."""
    variables = set(re.findall(r"\$\{?(\w+)", expr))
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (matcher values, never names)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    labels: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    text = re.sub(r"\{[^}]*\}", " ", text)
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", text):
        labels |= {x.strip() for x in grouping.split(",") if x.strip()}
    text = re.sub(r"\b(by|without)\s*\([^)]*\)", " ", text)
    # label_values(metric, label): the second argument is a label.
    for label in re.findall(r"label_values\([^,]+,\s*(\w+)\)", expr):
        labels.add(label)
        text = text.replace(label + ")", ")")
    names = set(re.findall(r"(?<![\w.$])[A-Za-z_:][\w:]*", text)) - PROMQL_WORDS
    return names, labels, variables


def test_every_panel_queries_only_series_and_labels_we_export() -> None:
    series = exported()
    d = dashboard()
    defined = {v["name"] for v in d["templating"]["list"]} | GRAFANA_VARIABLES
    used: set[str] = set()
    for expr in _expressions(d):
        names, labels, variables = _references(expr)
        assert names, f"no series in {expr!r}"
        unknown = names - series.keys()
        assert not unknown, f"{expr!r} queries {sorted(unknown)}, which ingressctl does not export"
        allowed = set().union(*(series[n] for n in names))
        assert labels <= allowed, f"{expr!r}: labels {sorted(labels - allowed)} are not on {sorted(names)}"
        assert variables <= defined, f"{expr!r}: undefined variables {sorted(variables - defined)}"
        used |= names
    # What the issue asks the dashboard to show.
    for wanted in (
        "ingressctl_requests_total",
        "ingressctl_request_duration_seconds_bucket",
        "ingressctl_upstream_response_duration_seconds_bucket",
        "ingressctl_nginx_reloads_total",
        "ingressctl_backend_updates_total",
        "ingressctl_backend_endpoints_ready",
        "ingressctl_certificate_expiry_days",
    ):
        assert wanted in used, f"no panel shows {wanted}"


def test_the_check_catches_a_misspelled_series() -> None:
    series = exported()
    names, labels, _ = _references('sum by (ingres) (rate(ingressctl_request_total{namespace="a"}[5m]))')
    assert names == {"ingressctl_request_total"} and names - series.keys()
    assert labels == {"ingres", "namespace"}


def test_the_dashboard_is_well_formed() -> None:
    d = dashboard()
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, f"panel {p['title']} leaves the grid"
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']} overlaps another"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["type"] in {"timeseries", "stat", "table", "gauge"}
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs))
        assert all(t["expr"].strip() for t in p["targets"])
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"


# ---- ServiceMonitor --------------------------------------------------------------------------

# The fields of a ServiceMonitor endpoint (monitoring.coreos.com/v1) that we may use; the CRD
# requires spec, and in spec selector and endpoints.
ENDPOINT_FIELDS = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels", "relabelings"}
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def monitoring_objects() -> list[dict[str, Any]]:
    return [
        doc for r in load_docs(MONITORING / "kustomization.yaml")[0]["resources"] for doc in load_docs(MONITORING / r)
    ]


def test_servicemonitor_has_what_the_crd_requires_and_reaches_the_health_port() -> None:
    objects = monitoring_objects()
    monitor = find(objects, "ServiceMonitor", "ingressctl")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "ingressctl"
    spec = monitor["spec"]
    assert {"selector", "endpoints"} <= spec.keys()
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= ENDPOINT_FIELDS, sorted(set(endpoint) - ENDPOINT_FIELDS)
        assert isinstance(endpoint["port"], str)
        for key in ("interval", "scrapeTimeout"):
            assert DURATION.match(endpoint.get(key, "")), f"{key}: {endpoint.get(key)!r}"
        assert endpoint.get("path", "/metrics") == "/metrics"
    # The selector picks the metrics Service, never the public LoadBalancer one.
    wanted = spec["selector"]["matchLabels"]
    services = [o for o in (*objects, *deploy_objects()) if o["kind"] == "Service"]
    picked = [s for s in services if wanted.items() <= s["metadata"].get("labels", {}).items()]
    assert [s["metadata"]["name"] for s in picked] == ["ingressctl-metrics"]
    (metrics_service,) = picked
    assert metrics_service["spec"]["type"] == "ClusterIP"
    assert spec["namespaceSelector"]["matchNames"] == [metrics_service["metadata"]["namespace"]]
    ports = {p["name"]: p for p in metrics_service["spec"]["ports"]}
    assert all(e["port"] in ports for e in spec["endpoints"])
    # The Service's target is the container's health port, where /metrics is served.
    deployment = find(deploy_objects(), "Deployment", "ingressctl")
    pod = deployment["spec"]["template"]
    assert metrics_service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    target = ports[spec["endpoints"][0]["port"]]["targetPort"]
    assert container_ports[target] == int(args_of(container)["--health-port"])


def test_monitoring_is_optional_and_builds() -> None:
    default = {(o["kind"], o["metadata"]["name"]) for o in deploy_objects()}
    assert not {("ServiceMonitor", "ingressctl"), ("Service", "ingressctl-metrics")} & default
    built = kubectl_kustomize(MONITORING)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == [
        ("Service", "ingressctl-metrics"),
        ("ServiceMonitor", "ingressctl"),
    ]
