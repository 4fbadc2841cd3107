"""Per-route request metrics through real nginx (lua/ingressctl/monitor.lua, ingressctl.dataplane.monitor):
requests to two Ingresses with different statuses show up in the scraped series with the
configuration's labels and the right counts; label values never come from the request; a reload
loses no count and the counters never go down; the ConfigMap's enable-metrics=false renders no Lua
for it at all."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ingressctl.config import route_id
from tests.harness import (
    Controller,
    backend,
    endpoint_slice,
    ingress,
    pods,
    request,
    rule,
    running_controller,
    service,
    unix_request,
    wait_for,
    write_manifests,
)

PORT = 18141
SHOP, BLOG = "shop.metrics.example", "blog.metrics.example"
SHOP_POD = "127.41.0.11"
BLOG_POD = "127.41.0.12"  # in the slice but not ready: the blog answers 503


def _manifests(manifests: Path, *, configmap: dict[str, str] | None = None, extra_host: str | None = None) -> None:
    shop_rules = [rule(SHOP, ("/api", "Prefix", backend("shop")))]
    if extra_host:
        shop_rules.append(rule(extra_host, ("/", "Prefix", backend("shop"))))
    docs: list[dict[str, Any]] = [
        service("shop", target=PORT, namespace="team-a"),
        endpoint_slice("shop", [SHOP_POD], port=PORT, namespace="team-a"),
        ingress("shop-ing", namespace="team-a", rules=shop_rules),
        service("blog", target=PORT),
        endpoint_slice("blog", [BLOG_POD], port=PORT, not_ready=(BLOG_POD,)),
        ingress("blog-ing", rules=[rule(BLOG, ("/", "Prefix", backend("blog")))]),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"namespace": "default", "name": "cm"},
            "data": configmap or {},
        },
    ]
    write_manifests(manifests, "app.yaml", docs)


def _scrape(ctl: Controller) -> dict[str, list[tuple[dict[str, str], float]]]:
    conn = http.client.HTTPConnection("127.0.0.1", ctl.health_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def _wait_reloaded(ctl: Controller, reloads: int) -> None:
    """Waits for the reload after `reloads` and until nginx's new workers serve its configuration:
    the reload counter moves when nginx is signalled, before the master has started them."""
    wait_for(lambda: ctl.reloads() > reloads, timeout=15, what="reload")
    socket = ctl.work_dir / "api" / "lua-api.sock"
    wait_for(lambda: unix_request(socket, "GET", "/configuration/metrics").status == 200, what="new workers")
    ctl.settle()


def _requests(series: dict[str, list[tuple[dict[str, str], float]]]) -> dict[tuple[str, ...], float]:
    return {
        (s["namespace"], s["ingress"], s["host"], s["path"], s["service"], s["status"]): v
        for s, v in series.get("ingressctl_requests_total", [])
    }


def _wait_counts(ctl: Controller, expected: dict[tuple[str, ...], float]) -> dict[str, Any]:
    """Scrapes until the counts reach `expected` (workers flush every second), then returns the scrape."""
    result: dict[str, Any] = {}

    def reached() -> bool:
        result.update(_scrape(ctl))
        got = _requests(result)
        return all(got.get(k, 0) >= v for k, v in expected.items())

    try:
        wait_for(reached, timeout=10, interval=0.3, what="request counts scraped")
    except AssertionError:
        raise AssertionError(f"expected {expected}, scraped {_requests(result)}") from None
    return result


SHOP_API = ("team-a", "shop-ing", SHOP, "/api", "shop")
BLOG_ROOT = ("default", "blog-ing", BLOG, "/", "blog")


def test_requests_per_route_and_status(tmp_path: Path, manifests: Path) -> None:
    _manifests(manifests)
    with (
        pods([SHOP_POD], PORT),
        running_controller(tmp_path, manifests, extra_args=["--configmap", "default/cm"]) as ctl,
    ):
        for i in range(5):
            assert ctl.get(SHOP, f"/api/item/{i}").status == 200
        assert ctl.get(SHOP, "/api").status == 200  # the rule's exact location: the same route
        for _ in range(3):
            assert ctl.get(BLOG, "/").status == 503
        assert ctl.get(SHOP, "/elsewhere").status == 404  # the host's fallback: no Ingress chose one
        scraped = _wait_counts(
            ctl,
            {
                (*SHOP_API, "2xx"): 6,
                (*BLOG_ROOT, "5xx"): 3,
                ("", "", SHOP, "/", "", "4xx"): 1,
            },
        )
        counts = _requests(scraped)
        assert counts == {(*SHOP_API, "2xx"): 6, (*BLOG_ROOT, "5xx"): 3, ("", "", SHOP, "/", "", "4xx"): 1}
        # The histograms count every request; the upstream one those that reached an endpoint
        # (the blog's 503 comes from the no-endpoints server, also an upstream to nginx).
        durations = {(s["ingress"], s["status"]): v for s, v in scraped["ingressctl_request_duration_seconds_count"]}
        assert durations == {("shop-ing", "2xx"): 6, ("blog-ing", "5xx"): 3, ("", "4xx"): 1}
        upstream = {
            (s["ingress"], s["status"]): v for s, v in scraped["ingressctl_upstream_response_duration_seconds_count"]
        }
        assert upstream[("shop-ing", "2xx")] == 6
        assert upstream[("", "4xx")] == 0  # nginx answered the 404 itself
        inf = {s["ingress"]: v for s, v in scraped["ingressctl_request_duration_seconds_bucket"] if s["le"] == "+Inf"}
        assert inf["shop-ing"] == 6
        response_bytes = {s["ingress"]: v for s, v in scraped["ingressctl_response_bytes_total"]}
        request_bytes = {s["ingress"]: v for s, v in scraped["ingressctl_request_bytes_total"]}
        assert response_bytes["shop-ing"] > 6 * 100  # headers and the pod's JSON body
        assert request_bytes["shop-ing"] > 6 * 30
        ready = {(s["namespace"], s["service"]): v for s, v in scraped["ingressctl_backend_endpoints_ready"]}
        assert ready == {("team-a", "shop"): 1, ("default", "blog"): 0}
        # The location carries the route id of its rule: a function of host, path and type.
        conf = (ctl.work_dir / "nginx.conf").read_text()
        assert f'set $ingressctl_route "{route_id(SHOP, "/api", "Prefix")}";' in conf
        assert conf.count("log_by_lua_block") == 1


def test_label_values_are_not_client_controlled(tmp_path: Path, manifests: Path) -> None:
    _manifests(manifests)
    with (
        pods([SHOP_POD], PORT),
        running_controller(tmp_path, manifests, extra_args=["--configmap", "default/cm"]) as ctl,
    ):
        nasty = ["/api/%22%7Bevil%7D", "/api/a/../../api/evil", "/api/" + "x" * 2000, "/api?path=evil"]
        for path in nasty:
            ctl.get(SHOP, path, headers={"X-Request-ID": "evil-id", "X-Forwarded-Host": "evil.example"})
        ctl.get("evil.example", "/api/x")  # an unknown host: the default server's fallback
        ctl.get(SHOP.upper(), "/api/x")  # the same host in capitals: nginx matches it, the label is ours
        scraped = _wait_counts(ctl, {(*SHOP_API, "2xx"): len(nasty) + 1})
        values = {v for samples in scraped.values() for labels, _ in samples for v in labels.values()}
        assert not any("evil" in v or "x" * 50 in v or ".." in v for v in values), values
        hosts = {s["host"] for s, _ in scraped["ingressctl_requests_total"]}
        assert hosts <= {SHOP, BLOG, ""}
        assert _requests(scraped)[(*SHOP_API, "2xx")] == len(nasty) + 1
        assert ("", "", "", "/", "", "4xx") in _requests(scraped)  # evil.example: the catch-all's 404


def test_reload_keeps_counts_monotonic(tmp_path: Path, manifests: Path) -> None:
    _manifests(manifests)
    with (
        pods([SHOP_POD], PORT),
        running_controller(tmp_path, manifests, extra_args=["--configmap", "default/cm"]) as ctl,
    ):
        sent, seen = 0, []
        deadline = time.monotonic() + 60
        for round_ in range(3):
            for _ in range(20):
                assert ctl.get(SHOP, "/api/x").status == 200
                sent += 1
            seen.append(_requests(_scrape(ctl)).get((*SHOP_API, "2xx"), 0))
            reloads = ctl.reloads()
            # A new host: a reload; the old workers flush what they counted before they exit.
            _manifests(manifests, extra_host=f"r{round_}.metrics.example")
            _wait_reloaded(ctl, reloads)
            assert time.monotonic() < deadline
        scraped = _wait_counts(ctl, {(*SHOP_API, "2xx"): sent})
        seen.append(_requests(scraped)[(*SHOP_API, "2xx")])
        assert seen == sorted(seen), f"a counter went down: {seen}"
        assert seen[-1] == sent


def test_enable_metrics_false_renders_no_lua_for_them(tmp_path: Path, manifests: Path) -> None:
    _manifests(manifests, configmap={"enable-metrics": "false"})
    with (
        pods([SHOP_POD], PORT),
        running_controller(tmp_path, manifests, extra_args=["--configmap", "default/cm"]) as ctl,
    ):
        conf = (ctl.work_dir / "nginx.conf").read_text()
        assert "log_by_lua" not in conf
        assert "ingressctl_route" not in conf
        assert "ingressctl.monitor" not in conf and "ingressctl_metrics" not in conf
        for _ in range(3):
            assert ctl.get(SHOP, "/api/x").status == 200
        scraped = _scrape(ctl)
        assert "ingressctl_requests_total" not in scraped
        assert scraped["ingressctl_backend_endpoints_ready"]  # from the configuration: still there
        # Turned on: a reload, and counting starts.
        reloads = ctl.reloads()
        _manifests(manifests, configmap={"enable-metrics": "true"})
        _wait_reloaded(ctl, reloads)
        assert ctl.get(SHOP, "/api/x").status == 200
        _wait_counts(ctl, {(*SHOP_API, "2xx"): 1})


def test_reloads_under_load_lose_no_count(tmp_path: Path, manifests: Path) -> None:
    """Requests run while nginx reloads twice: old workers flush what they hold when they exit, and
    what they finish while exiting goes to the dict directly; every answered request is counted once."""
    _manifests(manifests)
    with (
        pods([SHOP_POD], PORT),
        running_controller(tmp_path, manifests, extra_args=["--configmap", "default/cm"]) as ctl,
    ):
        answered, stop = [0], threading.Event()

        def load() -> None:
            deadline = time.monotonic() + 30
            for _ in range(2000):  # bounded in count and time
                if stop.is_set() or time.monotonic() > deadline:
                    return
                if request(ctl.http_port, host=SHOP, path="/api/load").status == 200:
                    answered[0] += 1

        worker = threading.Thread(target=load)
        worker.start()
        try:
            for round_ in range(2):
                time.sleep(0.5)
                reloads = ctl.reloads()
                _manifests(manifests, extra_host=f"load{round_}.metrics.example")
                _wait_reloaded(ctl, reloads)
            time.sleep(0.5)
        finally:
            stop.set()
            worker.join(timeout=40)
        assert answered[0] > 20
        scraped = _wait_counts(ctl, {(*SHOP_API, "2xx"): answered[0]})
        assert _requests(scraped)[(*SHOP_API, "2xx")] == answered[0]


def test_an_ewma_route_is_counted_too(tmp_path: Path, manifests: Path) -> None:
    """ewma's locations run a log phase of their own (it replaces http{}'s): it counts the route as well."""
    _manifests(manifests)
    ewma = ingress(
        "ewma-ing",
        namespace="team-a",
        rules=[rule("ewma.metrics.example", ("/", "Prefix", backend("shop")))],
        annotations={"nginx.ingress.kubernetes.io/load-balance": "ewma"},
    )
    write_manifests(manifests, "ewma.yaml", [ewma])
    with (
        pods([SHOP_POD], PORT),
        running_controller(tmp_path, manifests, extra_args=["--configmap", "default/cm"]) as ctl,
    ):
        wait_for(lambda: ctl.get("ewma.metrics.example", "/x").status == 200, what="ewma route served")
        conf = (ctl.work_dir / "nginx.conf").read_text()
        assert 'require("ingressctl.balancer").log()' in conf
        for _ in range(4):
            assert ctl.get("ewma.metrics.example", "/x").status == 200
        _wait_counts(ctl, {("team-a", "ewma-ing", "ewma.metrics.example", "/", "shop", "2xx"): 5})
