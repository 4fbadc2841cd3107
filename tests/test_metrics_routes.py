"""Route ids and the labels of per-route metrics, from translate (no nginx): every location carries
its rule's id; ids are the same for the same routes in every translation and render (no extra
reload), also when another Ingress takes a route over; the labels come from the configuration
only (generated Ingresses, hypothesis); enable-metrics=false leaves no label map and no Lua."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any

from hypothesis import given

from ingressctl.cache import Cache
from ingressctl.config import Backend, Configuration, Endpoint, RouteLabels, TenancyPolicy, route_id
from ingressctl.dataplane.luaapi import LuaApi
from ingressctl.dataplane.monitor import BUCKETS, FIELDS, RouteMetrics
from ingressctl.metrics import Metrics
from ingressctl.model import CONFIG_MAP, Event, EventType, Obj
from ingressctl.plan import Action, make_plan
from ingressctl.translate import Settings, translate
from tests.harness import REPO, backend, endpoint_slice, ingress, ingress_class, rule, service
from tests.test_properties import FALLBACK, RENDERER, SETTINGS, tenants

APP = [service("app"), endpoint_slice("app", ["10.0.0.1"]), service("web"), endpoint_slice("web", ["10.0.0.2"])]


def run(objects: list[Obj], **settings: Any) -> Configuration:
    cache = Cache()
    for obj in objects:
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    return translate(cache.snapshot(), Settings(fallback_certificate=FALLBACK, **settings))


def _ids(config: Configuration) -> dict[tuple[str, str, str], str]:
    return {
        (s.host, loc.match, loc.path): loc.route
        for s in (config.static.default_server, *config.static.servers)
        for loc in s.locations
    }


def test_each_location_carries_its_rules_route_and_the_labels_name_it() -> None:
    shop = ingress(
        "shop",
        namespace="default",
        rules=[rule("a.example", ("/api", "Prefix", backend("app")), ("/exact", "Exact", backend("web")))],
        default_backend=backend("web"),
    )
    config = run([ingress_class(), *APP, shop])
    ids = _ids(config)
    api = route_id("a.example", "/api", "Prefix")
    # A Prefix rule's two locations share one id.
    assert ids[("a.example", "=", "/api")] == ids[("a.example", "", "/api/")] == api
    assert ids[("a.example", "=", "/exact")] == route_id("a.example", "/exact", "Exact")
    fallback = route_id("a.example", "/", "default")
    assert ids[("a.example", "", "/")] == fallback
    assert config.routes[api] == RouteLabels("default", "shop", "a.example", "/api", "app")
    assert config.routes[fallback] == RouteLabels("default", "shop", "a.example", "/", "web")  # its defaultBackend
    # The catch-all answers 404: no Ingress, no Service.
    assert config.routes[ids[("", "", "/")]] == RouteLabels("", "", "", "/", "")
    assert set(config.routes) == set(ids.values())


def test_route_ids_are_stable_and_a_new_owner_does_not_reload() -> None:
    older = ingress("older", rules=[rule("a.example", ("/", "Prefix", backend("app")))], created="2024-01-01T00:00:00Z")
    newer = ingress("newer", rules=[rule("a.example", ("/", "Prefix", backend("app")))], created="2024-01-02T00:00:00Z")
    both = run([ingress_class(), *APP, older, newer])
    again = run([ingress_class(), *APP, newer, older])
    assert _ids(both) == _ids(again)
    assert RENDERER.render(both.static).text == RENDERER.render(again.static).text
    # The older one goes: the newer one now owns the same route; nginx.conf stays the same.
    taken_over = run([ingress_class(), *APP, newer])
    assert make_plan(both, taken_over).action is Action.NOTHING
    route = route_id("a.example", "/", "Prefix")
    assert both.routes[route].ingress == "older"
    assert taken_over.routes[route].ingress == "newer"


def test_enable_metrics_false_renders_no_route_and_no_lua() -> None:
    configmap = {"apiVersion": "v1", "kind": CONFIG_MAP, "metadata": {"namespace": "default", "name": "cm"}}
    shop = ingress("shop", rules=[rule("a.example", ("/", "Prefix", backend("app")))])
    on = run([ingress_class(), *APP, shop, {**configmap, "data": {}}], configmap=("default", "cm"))
    off = run(
        [ingress_class(), *APP, shop, {**configmap, "data": {"enable-metrics": "false"}}], configmap=("default", "cm")
    )
    assert on.routes and not off.routes
    text = RENDERER.render(off.static).text
    assert "ingressctl_route" not in text and "log_by_lua" not in text and "ingressctl_metrics" not in text
    plan = make_plan(on, off)
    assert plan.reload and "enable-metrics" in plan.describe()
    bad = run(
        [ingress_class(), *APP, shop, {**configmap, "data": {"enable-metrics": "yes"}}], configmap=("default", "cm")
    )
    assert [p.field for p in bad.problems] == ["data.enable-metrics"]  # reported, the default (on) kept
    assert bad.routes


@SETTINGS
@given(objects=tenants())
def test_labels_come_from_the_configuration_only(objects: list[Obj]) -> None:
    config = run(objects, tenancy=TenancyPolicy(catch_all_namespaces=("a",)))
    ids = _ids(config)
    assert set(config.routes) == set(ids.values()), "every location's route has labels, and only those"
    hosts = {s.host for s in config.static.servers} | {""}
    paths = {  # as written, or a Prefix path without its trailing slash (translate ignores it)
        path
        for o in objects
        if o["kind"] == "Ingress"
        for r in o["spec"].get("rules", [])
        for p in r["http"]["paths"]
        for path in (p["path"], p["path"].rstrip("/"))
    }
    accepted = {(ref.namespace, ref.name) for ref in config.ingresses}
    for labels in config.routes.values():
        assert labels.host in hosts
        assert labels.path in paths | {"/"}
        assert (labels.namespace, labels.ingress) in accepted | {("", "")}
        assert labels.service in ("app", "")


def test_lua_and_python_agree_on_the_buckets() -> None:
    text = (REPO / "lua" / "ingressctl" / "monitor.lua").read_text()
    match = re.search(r"^local BUCKETS = \{([^}]*)\}", text, re.M)
    assert match
    assert tuple(float(x) for x in match.group(1).split(",")) == BUCKETS
    assert 6 + 2 * len(BUCKETS) == FIELDS


def _doc(epoch: str, **routes: float) -> dict[str, Any]:
    """A GET /configuration/metrics answer: `route_class=count` (every field holds the count)."""
    return {
        "epoch": epoch,
        "buckets": list(BUCKETS),
        "fields": FIELDS,
        "routes": {k.replace("_", ":"): [v] * FIELDS for k, v in routes.items()},
    }


def _collector(routes: dict[str, RouteLabels]) -> tuple[RouteMetrics, Configuration]:
    metrics = Metrics()
    collector = RouteMetrics(lua=LuaApi("/nonexistent"), metrics=metrics)
    config = dataclasses.replace(run([ingress_class()]), routes=routes)
    asyncio.run(collector.publish(config))
    return collector, config


def _counts(collector: RouteMetrics) -> dict[tuple[str, str], float]:
    family = next(f for f in collector.collect() if f.name == "ingressctl_requests")
    return {(s.labels["ingress"], s.labels["status"]): s.value for s in family.samples}


def test_the_controller_adds_differences_and_never_goes_down() -> None:
    a, b = RouteLabels("ns", "a", "a.example", "/", "svc"), RouteLabels("ns", "b", "b.example", "/", "svc")
    collector, config = _collector({"ra": a})
    collector.add(_doc("e1", ra_2=5, rb_2=7))  # rb: not published yet, kept for later
    assert _counts(collector) == {("a", "2xx"): 5}
    collector.add(_doc("e1", ra_2=8, ra_5=1, rb_2=9))
    assert _counts(collector) == {("a", "2xx"): 8, ("a", "5xx"): 1}
    asyncio.run(collector.publish(dataclasses.replace(config, routes={"ra": a, "rb": b})))
    collector.add(_doc("e1", ra_2=8, ra_5=1, rb_2=9))
    assert _counts(collector)[("b", "2xx")] == 9  # everything the dict counted for it
    # A new nginx master: a new epoch, its dict counts from zero; ours go on.
    collector.add(_doc("e2", ra_2=2))
    assert _counts(collector)[("a", "2xx")] == 10
    # An entry the dict lost (evicted) and counts again from a smaller value: added as it is.
    collector.add(_doc("e2", ra_2=1))
    assert _counts(collector)[("a", "2xx")] == 11
    # Route b leaves the configuration: its last counts are taken, then its series go.
    asyncio.run(collector.publish(dataclasses.replace(config, routes={"ra": a})))
    collector.add(_doc("e2", ra_2=1, rb_2=4))
    assert ("b", "2xx") not in _counts(collector)
    # A layout the controller does not know is refused whole.
    collector.add({**_doc("e2", ra_2=50), "buckets": [1, 2]})
    assert _counts(collector)[("a", "2xx")] == 11


def test_histograms_are_cumulative_and_end_with_the_count() -> None:
    collector, _ = _collector({"r": RouteLabels("ns", "a", "a.example", "/", "svc")})
    record = [0.0] * FIELDS
    record[0], record[3] = 3, 0.5  # 3 requests, 0.5 s in all
    record[6 + 0], record[6 + 4], record[6 + len(BUCKETS) - 1] = 1, 1, 1  # 5 ms, 100 ms, 10 s
    collector.add({"epoch": "e", "buckets": list(BUCKETS), "fields": FIELDS, "routes": {"r:2": record}})
    family = next(f for f in collector.collect() if f.name == "ingressctl_request_duration_seconds")
    buckets = [(s.labels["le"], s.value) for s in family.samples if s.name.endswith("_bucket")]
    assert buckets[0] == ("0.005", 1) and buckets[4] == ("0.1", 2) and buckets[-2] == ("10.0", 3)
    assert buckets[-1] == ("+Inf", 3)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)


def test_concurrent_scrapes_read_one_at_a_time() -> None:
    """Two scrapes at once: the answers are added in the order they were read, never an older one last."""
    labels = RouteLabels("ns", "a", "a.example", "/", "svc")
    collector, _ = _collector({"ra": labels})
    answers = iter([_doc("e", ra_2=5), _doc("e", ra_2=9)])

    class Lua:
        async def metrics(self) -> dict[str, Any]:
            answer = next(answers)
            await asyncio.sleep(0.05 if answer["routes"]["ra:2"][0] == 5 else 0)  # the older answer is slower
            return answer

    collector.lua = Lua()  # type: ignore[assignment]

    async def both() -> None:
        await asyncio.gather(collector.refresh(), collector.refresh())

    asyncio.run(both())
    assert _counts(collector) == {("a", "2xx"): 9}


def test_endpoints_ready_per_service_port_without_canary_routes() -> None:
    collector, config = _collector({})
    backends = (
        Backend("ns/main:80", (Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80))),
        Backend("ns/canary:http", ()),
        Backend("ns/main:80~ns/canary:http~ns/canary-ing", ()),  # translate/canary.py's route backend
    )
    asyncio.run(collector.publish(dataclasses.replace(config, backends=backends)))
    family = next(f for f in collector.collect() if f.name == "ingressctl_backend_endpoints_ready")
    got = {(s.labels["namespace"], s.labels["service"], s.labels["port"]): s.value for s in family.samples}
    assert got == {("ns", "main", "80"): 2, ("ns", "canary", "http"): 0}
