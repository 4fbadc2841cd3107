"""Balancing through the real controller, real nginx and real backends on 127.44.0.x: upstream-hash-by
(and its subsets), cookie affinity (balanced and persistent, attributes, re-pinning, change-on-failure),
ewma (also behind a canary route); settings changes reach the balancer without a reload; N -> N+1
endpoints moves about 1/(N+1) of 400 sessions, all to the new endpoint. Also the translation
(per-backend decision, documents sent to Lua, ewma's log phase under `nginx -t`) and Python's and Lua's
hash expression grammars compared on generated input."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingressctl.cache import Cache
from ingressctl.config import CHASH, EWMA, ROUND_ROBIN, STICKY_BALANCED, STICKY_PERSISTENT, Certificate
from ingressctl.dataplane.luaapi import BackendsEncoder
from ingressctl.model import Event, EventType
from ingressctl.translate import Settings, Translator
from ingressctl.translate.annotations.balancing import hash_by
from ingressctl.translate.validate import Invalid
from tests.certs import make_cert
from tests.harness import (
    Controller,
    Pod,
    backend,
    endpoint_slice,
    ingress,
    ingress_class,
    lua_nginx,
    pods,
    request,
    rule,
    service,
    unix_request,
    wait_for,
    write_manifests,
)
from tests.test_annotations_translate import ing, nginx_test, render
from tests.test_annotations_translate import run as run_translate
from tests.test_canary_translate import canary, main
from tests.test_canary_translate import run as canary_run

PORT = 18944
A = "nginx.ingress.kubernetes.io/"
# The balancer's log phase (ewma); http{} has a log phase of its own for metrics (enable-metrics).
BALANCER_LOG = 'require("ingressctl.balancer").log()'
ADDRESSES = [f"127.44.0.{i}" for i in range(11, 17)]


def _docs(addresses: list[str], annotations: dict[str, str], *, host: str = "lb.example.com") -> list[dict[str, Any]]:
    return [
        service("app", target=PORT),
        endpoint_slice("app", addresses, port=PORT),
        service("plain", target=PORT),
        endpoint_slice("plain", addresses, port=PORT),
        ingress(
            "app",
            rules=[rule(host, ("/", "Prefix", backend("app")))],
            annotations={A + k: v for k, v in annotations.items()},
        ),
        ingress("plain", rules=[rule("plain.example.com", ("/", "Prefix", backend("plain")))]),
    ]


def _serve(ctl: Controller, manifests: Path, addresses: list[str], annotations: dict[str, str]) -> None:
    write_manifests(manifests, "app.yaml", _docs(addresses, annotations))
    wait_for(lambda: request(ctl.http_port, host="lb.example.com").status == 200, what="host served")


def _lua_backend(ctl: Controller, name: str = "default/app:80") -> dict[str, Any]:
    state = json.loads(unix_request(ctl.work_dir / "api" / "lua-api.sock", "GET", "/configuration/backends").body)
    found: dict[str, Any] = next((b for b in state["document"]["backends"] if b["name"] == name), {})
    return found


def _get(ctl: Controller, path: str = "/", *, cookie: str | None = None, **headers: str) -> tuple[str | None, str]:
    """(the pod that answered, the Set-Cookie header or "")."""
    if cookie is not None:
        headers["Cookie"] = cookie
    resp = request(ctl.http_port, host="lb.example.com", path=path, headers=headers)
    assert resp.status == 200, resp.body
    return resp.pod, resp.headers.get("set-cookie", "")


def test_upstream_hash_by_keeps_each_key_on_one_endpoint(controller: Controller, manifests: Path) -> None:
    with pods(ADDRESSES[:3], PORT):
        _serve(controller, manifests, ADDRESSES[:3], {"upstream-hash-by": "$arg_user"})
        wait_for(lambda: _lua_backend(controller).get("algorithm") == CHASH, what="chash backend")
        controller.settle()
        reloads = controller.reloads()
        chosen = {}
        for user in range(30):
            answers = {_get(controller, f"/?user=u{user}")[0] for _ in range(3)}
            assert len(answers) == 1, f"user u{user} went to {answers}"
            chosen[user] = answers.pop()
        assert len(set(chosen.values())) == 3, "keys spread over every endpoint"
        # Round robin next to it is unchanged: it rotates.
        rotation = [request(controller.http_port, host="plain.example.com").pod for _ in range(6)]
        assert set(rotation) == set(ADDRESSES[:3])

        # Another expression (header and fixed text) is a Lua update: no reload.
        _serve(controller, manifests, ADDRESSES[:3], {"upstream-hash-by": "tenant-${http_x_tenant}"})
        wait_for(lambda: _lua_backend(controller).get("hash_by") == "tenant-${http_x_tenant}", what="new key")
        for tenant in ("a", "b", "c", "d"):
            answers = {_get(controller, f"/?user=u{n}", **{"X-Tenant": tenant})[0] for n in range(6)}
            assert len(answers) == 1, f"tenant {tenant} went to {answers}"
        # Subsets of 2: a key's requests spread over exactly the 2 endpoints of its subset.
        subset = {"upstream-hash-by": "$http_x_tenant", "upstream-hash-by-subset": "true"}
        _serve(controller, manifests, ADDRESSES[:3], {**subset, "upstream-hash-by-subset-size": "2"})
        wait_for(lambda: _lua_backend(controller).get("subset_size") == 2, what="subsets")
        for tenant in ("a", "b", "c"):
            assert len({_get(controller, **{"X-Tenant": tenant})[0] for _ in range(24)}) == 2, tenant
        assert controller.reloads() == reloads
        assert BALANCER_LOG not in (controller.work_dir / "nginx.conf").read_text()


def _session_pods(ctl: Controller, keys: list[str]) -> dict[str, str | None]:
    out = {}
    for key in keys:
        pod, set_cookie = _get(ctl, cookie=f"INGRESSCOOKIE={key}")
        assert set_cookie == "", f"a balanced session keeps its cookie: {set_cookie}"
        out[key] = pod
    return out


def test_balanced_affinity_moves_about_one_share_when_scaling(controller: Controller, manifests: Path) -> None:
    annotations = {
        "affinity": "cookie",
        "session-cookie-max-age": "172800",
        "session-cookie-expires": "3600",
        "session-cookie-samesite": "Strict",
    }
    with pods(ADDRESSES[:5], PORT):
        _serve(controller, manifests, ADDRESSES[:4], annotations)
        wait_for(lambda: _lua_backend(controller).get("algorithm") == STICKY_BALANCED, what="sticky backend")
        controller.settle()
        reloads = controller.reloads()

        # A new client gets a cookie with ingress-nginx's attributes, and stays on its endpoint.
        pod, set_cookie = _get(controller)
        match = re.fullmatch(
            r"INGRESSCOOKIE=([0-9a-f]{16}); Path=/; "
            r"Expires=[A-Z][a-z]{2}, \d\d-[A-Z][a-z]{2}-\d\d \d\d:\d\d:\d\d GMT; "
            r"Max-Age=172800; SameSite=Strict; HttpOnly",
            set_cookie,
        )
        assert match, set_cookie
        assert {_get(controller, cookie=f"INGRESSCOOKIE={match.group(1)}")[0] for _ in range(10)} == {pod}
        # A cookie that is not ours is replaced.
        assert _get(controller, cookie="INGRESSCOOKIE=../../etc")[1].startswith("INGRESSCOOKIE=")

        # 400 sessions; 4 -> 5 endpoints moves about 1/5 of them, every one to the new endpoint.
        rng = random.Random(44)
        keys = [f"{rng.getrandbits(64):016x}" for _ in range(400)]
        before = _session_pods(controller, keys)
        assert set(before.values()) == set(ADDRESSES[:4])
        _serve(controller, manifests, ADDRESSES[:5], annotations)
        wait_for(lambda: len(_lua_backend(controller)["endpoints"]) == 5, what="fifth endpoint")
        after = _session_pods(controller, keys)
        moved = [k for k in keys if after[k] != before[k]]
        assert {after[k] for k in moved} == {ADDRESSES[4]}
        assert 0.4 / 5 * len(keys) <= len(moved) <= 1.6 / 5 * len(keys), len(moved)

        # An endpoint leaves: its sessions are re-pinned (200, same cookie), the others stay.
        _serve(controller, manifests, ADDRESSES[1:5], annotations)
        wait_for(lambda: len(_lua_backend(controller)["endpoints"]) == 4, what="endpoint left")
        final = _session_pods(controller, keys)
        assert all(final[k] == after[k] for k in keys if after[k] != ADDRESSES[0])
        assert all(final[k] in ADDRESSES[1:5] for k in keys)
        assert controller.reloads() == reloads


def test_persistent_affinity_and_cookie_settings_without_reload(controller: Controller, manifests: Path) -> None:
    annotations = {"affinity": "cookie", "affinity-mode": "persistent", "session-cookie-name": "route"}
    with pods(ADDRESSES[:4], PORT):
        _serve(controller, manifests, ADDRESSES[:3], annotations)
        wait_for(lambda: _lua_backend(controller).get("algorithm") == STICKY_PERSISTENT, what="persistent backend")
        controller.settle()
        reloads = controller.reloads()
        sessions = {}
        for _ in range(12):  # new sessions go round robin
            pod, set_cookie = _get(controller)
            cookie = set_cookie.split(";")[0]
            assert re.fullmatch(r"route=[0-9a-f]{16}", cookie), set_cookie
            sessions[cookie] = pod
        assert set(sessions.values()) == set(ADDRESSES[:3])
        # Scaling up moves no session.
        _serve(controller, manifests, ADDRESSES[:4], annotations)
        wait_for(lambda: len(_lua_backend(controller)["endpoints"]) == 4, what="fourth endpoint")
        assert all(_get(controller, cookie=c) == (p, "") for c, p in sessions.items())
        # The endpoint of some sessions leaves: they are re-pinned with a new cookie, and stay there.
        _serve(controller, manifests, ADDRESSES[1:4], annotations)
        wait_for(lambda: len(_lua_backend(controller)["endpoints"]) == 3, what="endpoint left")
        for cookie, pod in sessions.items():
            now, set_cookie = _get(controller, cookie=cookie)
            if pod == ADDRESSES[0]:
                assert now in ADDRESSES[1:4] and set_cookie.startswith("route="), (now, set_cookie)
                assert _get(controller, cookie=set_cookie.split(";")[0]) == (now, "")
            else:
                assert (now, set_cookie) == (pod, "")
        # Cookie settings change in the balancer, not in nginx.conf.
        changed = {
            **annotations,
            "session-cookie-name": "sticky.id-2",
            "session-cookie-path": "/shop",
            "session-cookie-domain": ".Example.com",
            "session-cookie-secure": "true",
            "session-cookie-samesite": "None",
            "session-cookie-conditional-samesite-none": "true",
        }
        _serve(controller, manifests, ADDRESSES[1:4], changed)
        wait_for(lambda: _lua_backend(controller)["cookie"].get("name") == "sticky.id-2", what="new cookie name")
        pod, new = _get(controller)
        attributes = "; Path=/shop; Domain=.example.com; SameSite=None; Secure; HttpOnly"
        assert re.fullmatch(r"sticky\.id-2=[0-9a-f]{16}" + re.escape(attributes), new), new
        assert _get(controller, cookie=new.split(";")[0]) == (pod, ""), "a name with . and - is read back"
        old_chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/59.0.3071.115 Safari/537.36"
        old = _get(controller, **{"User-Agent": old_chrome})[1]
        without = attributes.replace("; SameSite=None", "")
        assert re.fullmatch(r"sticky\.id-2=[0-9a-f]{16}" + re.escape(without), old), old
        assert controller.reloads() == reloads


def test_the_endpoints_own_cookies_are_kept(controller: Controller, manifests: Path) -> None:
    pod = Pod(ADDRESSES[0], PORT, headers={"Set-Cookie": "app=1; Path=/"})
    try:
        _serve(controller, manifests, ADDRESSES[:1], {"affinity": "cookie"})
        wait_for(lambda: _lua_backend(controller).get("algorithm") == STICKY_BALANCED, what="sticky backend")
        controller.settle()
        conn = http.client.HTTPConnection("127.0.0.1", controller.http_port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Host": "lb.example.com"})
            resp = conn.getresponse()
            resp.read()
            cookies = resp.msg.get_all("Set-Cookie") or []
        finally:
            conn.close()
        assert len(cookies) == 2 and cookies[0].startswith("INGRESSCOOKIE=") and cookies[1] == "app=1; Path=/", cookies
    finally:
        pod.stop()


def test_change_on_failure_moves_the_session(controller: Controller, manifests: Path) -> None:
    # ADDRESSES[5] is in the Service but nothing listens there: connections are refused.
    dead = ADDRESSES[5]
    annotations = {"affinity": "cookie", "affinity-mode": "persistent"}
    with pods(ADDRESSES[:2], PORT):
        _serve(controller, manifests, [*ADDRESSES[:2], dead], annotations)
        wait_for(lambda: len(_lua_backend(controller).get("endpoints", [])) == 3, what="three endpoints")
        controller.settle()
        # New sessions never land on the dead endpoint's refusal: nginx retries the next one.
        assert all(_get(controller)[0] in ADDRESSES[:2] for _ in range(9))
        # The persistent cookie of the dead endpoint: md5(backend name, address:port), its first 16 digits.
        dead_key = hashlib.md5(f"default/app:80 {dead}:{PORT}".encode()).hexdigest()[:16]
        pod, set_cookie = _get(controller, cookie=f"INGRESSCOOKIE={dead_key}")
        assert pod in ADDRESSES[:2] and set_cookie == "", "without change-on-failure the session stays"
        _serve(
            controller, manifests, [*ADDRESSES[:2], dead], {**annotations, "session-cookie-change-on-failure": "true"}
        )
        wait_for(lambda: _lua_backend(controller)["cookie"].get("change_on_failure") is True, what="change on failure")
        pod, set_cookie = _get(controller, cookie=f"INGRESSCOOKIE={dead_key}")
        assert pod in ADDRESSES[:2]
        moved = set_cookie.split(";")[0]
        assert moved.startswith("INGRESSCOOKIE=") and moved != f"INGRESSCOOKIE={dead_key}", set_cookie
        assert _get(controller, cookie=moved) == (pod, "")


@contextlib.contextmanager
def _slow_pod(address: str, port: int, delay: float) -> Iterator[None]:
    pod = Pod(address, port, delay=delay)
    try:
        yield
    finally:
        pod.stop()


def test_ewma_sends_most_requests_to_the_faster_endpoint(controller: Controller, manifests: Path) -> None:
    fast, slow = ADDRESSES[0], ADDRESSES[1]
    with pods([fast], PORT), _slow_pod(slow, PORT, 0.05):
        _serve(controller, manifests, [fast, slow], {"load-balance": "ewma"})
        wait_for(lambda: _lua_backend(controller).get("algorithm") == EWMA, what="ewma backend")
        controller.settle()
        conf = (controller.work_dir / "nginx.conf").read_text()
        # The balancer's log phase runs only in the ewma route's location (`/` of lb.example.com).
        assert conf.count(BALANCER_LOG) == 1
        answers = Counter(_get(controller)[0] for _ in range(200))
        assert answers[fast] >= 180, answers
        rotation = Counter(request(controller.http_port, host="plain.example.com").pod for _ in range(20))
        # Round robin next to it is unchanged: each worker alternates.
        assert abs(rotation[fast] - rotation[slow]) <= 4 and rotation[fast] + rotation[slow] == 20, rotation


def test_ewma_learns_behind_a_canary_route(controller: Controller, manifests: Path) -> None:
    """A canary with weight 0 in front of an ewma main backend: the answers still feed its averages
    (without them every score stays 0 and the two endpoints would share the requests)."""
    fast, slow = ADDRESSES[0], ADDRESSES[1]
    with pods([fast], PORT), _slow_pod(slow, PORT, 0.05):
        docs = _docs([fast, slow], {"load-balance": "ewma"})
        docs.append(
            ingress(
                "app-canary",
                rules=[rule("lb.example.com", ("/", "Prefix", backend("plain")))],
                annotations={A + "canary": "true", A + "canary-weight": "0"},
                created="2030-01-01T00:00:00Z",
            )
        )
        write_manifests(manifests, "app.yaml", docs)
        wait_for(lambda: BALANCER_LOG in (controller.work_dir / "nginx.conf").read_text(), what="canary route")
        wait_for(lambda: request(controller.http_port, host="lb.example.com").status == 200, what="host served")
        controller.settle()
        answers = Counter(_get(controller)[0] for _ in range(100))
        assert answers[fast] >= 85, answers


# --- translation ---------------------------------------------------------------------------------


def _translate(objects: list[dict[str, Any]]) -> Any:
    cache = Cache()
    cache.load(Event(EventType.ADDED, o["kind"], o) for o in [ingress_class(), *objects])
    settings_ = Settings(fallback_certificate=Certificate.from_pem(*make_cert("fallback")))
    return Translator(settings_).full(cache.snapshot())


def test_the_oldest_ingress_setting_balancing_decides_per_backend() -> None:
    objects = [
        service("app"),
        endpoint_slice("app", ["10.0.0.1"]),
        ingress(
            "plain", rules=[rule("a.example.com", ("/", "Prefix", backend("app")))], created="2020-01-01T00:00:00Z"
        ),
        ingress(
            "sticky",
            rules=[rule("b.example.com", ("/", "Prefix", backend("app")))],
            annotations={A + "affinity": "cookie", A + "session-cookie-name": "s"},
            created="2021-01-01T00:00:00Z",
        ),
        ingress(
            "hashed",
            rules=[rule("c.example.com", ("/", "Prefix", backend("app")))],
            annotations={A + "upstream-hash-by": "$request_uri"},
            created="2022-01-01T00:00:00Z",
        ),
    ]
    config = _translate(objects)
    [app] = config.backends
    assert app.algorithm == STICKY_BALANCED and app.settings() == {"cookie": {"name": "s"}}
    assert [(p.ref.name, p.reason) for p in config.problems] == [
        (
            "hashed",
            "load-balance, upstream-hash-by and affinity of backend default/app:80 are decided by Ingress "
            "default/sticky (the oldest that sets them); not applied",
        )
    ]
    # The endpoint-only path keeps the decided settings.
    assert [(s.backend, s.balancing.algorithm) for s in config.backend_sources] == [("default/app:80", STICKY_BALANCED)]


def test_documents_carry_settings_only_where_set() -> None:
    objects = [
        service("app"),
        endpoint_slice("app", ["10.0.0.1"]),
        service("other"),
        endpoint_slice("other", ["10.0.0.2"]),
        ingress("plain", rules=[rule("a.example.com", ("/", "Prefix", backend("other")))]),
        ingress(
            "hashed",
            rules=[rule("c.example.com", ("/", "Prefix", backend("app")))],
            annotations={
                A + "upstream-hash-by": "$request_uri",
                A + "upstream-hash-by-subset": "true",
                A + "load-balance": "ewma",
            },
        ),
    ]
    config = _translate(objects)
    document = json.loads(BackendsEncoder().encode(config.backends))["backends"]
    assert document == [
        {
            "name": "default/app:80",
            "algorithm": "chashsubset",
            "hash_by": "$request_uri",
            "subset_size": 3,
            "endpoints": [{"address": "10.0.0.1", "port": 8080}],
        },
        {"name": "default/other:80", "endpoints": [{"address": "10.0.0.2", "port": 8080}]},
    ]
    assert config.backends_document()["backends"] == document
    assert all(not loc.feedback for s in config.static.servers for loc in s.locations)


def test_settings_without_their_switch_are_reported() -> None:
    objects = [
        service("app"),
        endpoint_slice("app", ["10.0.0.1"]),
        ingress(
            "orphan",
            rules=[rule("a.example.com", ("/", "Prefix", backend("app")))],
            annotations={A + "session-cookie-name": "s", A + "upstream-hash-by-subset": "true"},
        ),
    ]
    config = _translate(objects)
    assert config.backends[0].algorithm == ROUND_ROBIN
    assert sorted(p.reason for p in config.problems) == [
        "has no effect without affinity",
        "has no effect without upstream-hash-by",
    ]


def test_the_ewma_log_phase_is_valid_nginx_and_only_on_its_locations() -> None:
    config = run_translate(
        ing("e", "e.example.com", {A + "load-balance": "ewma"}, paths=[("/e", "Prefix", backend("app"))]),
        ing("p", "p.example.com", paths=[("/p", "Prefix", backend("other"))]),
    )
    flagged = {(s.host, loc.path) for s in config.static.servers for loc in s.locations if loc.feedback}
    assert flagged == {("e.example.com", "/e"), ("e.example.com", "/e/")}
    assert render(config).count('require("ingressctl.balancer").log()') == 2
    result = nginx_test(config)
    assert result.ok, result.output


def test_an_ewma_main_backend_behind_a_canary_route_is_fed() -> None:
    """The canary route's location runs the log phase when its main (or canary) backend is ewma."""
    config = canary_run(main(annotations={A + "load-balance": "ewma"}), canary(weight="10"))
    route = next(b for b in config.backends if b.canary is not None)
    assert [b.algorithm for b in config.backends if b.name == route.canary.main] == [EWMA]
    server = next(s for s in config.static.servers if s.host == "a.test")
    assert {loc.path: loc.feedback for loc in server.locations if loc.backend == route.name} == {"/": True}
    assert "log()" in render(config)


def test_a_canary_ingress_balances_its_own_service() -> None:
    """As in ingress-nginx, a canary Ingress's balancing annotations apply to its Service (its other
    annotations are reported as not used)."""
    config = canary_run(main(), canary(weight="10", affinity="cookie", session_cookie_name="c"))
    backends = {b.name: b for b in config.backends}
    assert backends["default/next:80"].algorithm == STICKY_BALANCED
    assert backends["default/next:80"].settings() == {"cookie": {"name": "c"}}
    assert backends["default/app:80"].algorithm == ROUND_ROBIN
    assert not [p for p in config.problems if "not used" in p.reason], config.problems


# --- the hash expression grammar: Python and Lua agree ----------------------------------------------

CHECK = """
local cjson = require("cjson.safe")
ngx.req.read_body()
local parts = require("ingressctl.hashkey").parse(cjson.decode(ngx.req.get_body_data()).value)
ngx.say(cjson.encode({ ok = parts ~= nil }))
"""

_PIECES = st.sampled_from(
    [
        "$",
        "{",
        "}",
        "remote_addr",
        "request_uri",
        "http_",
        "cookie_",
        "arg_",
        "host",
        "x",
        "_",
        "-",
        ".",
        ":",
        "/",
        "9",
        " ",
        ";",
        '"',
        "\\",
        "\n",
        "é",
        "|",
        "#",
        "binary_remote_addr",
        "$remote_addr",
        "${request_uri}",
    ]
)


@pytest.fixture(scope="module")
def lua_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with lua_nginx(tmp_path_factory.mktemp("hashkey"), requires=["ingressctl.hashkey"], location=CHECK) as port:
        yield port


def _python_accepts(value: str) -> bool:
    try:
        hash_by(value)
    except Invalid:
        return False
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_PIECES, max_size=12).map("".join))
@example("$remote_addr")
@example("${http_x_a}-$cookie_b")
@example("$arg_")
@example("a$1")
def test_python_and_lua_accept_the_same_hash_expressions(lua_port: int, value: str) -> None:
    resp = request(lua_port, host="localhost", path="/run", method="POST", body=json.dumps({"value": value}).encode())
    assert resp.status == 200, resp.body
    assert resp.json()["ok"] == _python_accepts(value), value
