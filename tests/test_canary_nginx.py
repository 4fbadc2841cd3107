"""Canary Ingresses through the real controller, real nginx with our Lua balancer, and real backends on
127.43.0.x: header, then cookie, then weight; `always`/`never`; an exact header value; a header pattern;
weight 0 and 100 exact; canary-weight-total; a canary without a main Ingress reported; an invalid canary
rejected alone; and a weight change under a bounded load: no reload, the new split measured within a
second of the change."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from tests.annotation_backends import echo_pods
from tests.harness import (
    Controller,
    backend,
    endpoint_slice,
    free_port,
    ingress,
    pods,
    rule,
    service,
    wait_for,
    write_manifests,
)
from tests.timing import Lag

PORT = free_port()
A = "nginx.ingress.kubernetes.io/"
STABLE, CANARY, FAILING = "127.43.0.1", "127.43.0.2", "127.43.0.3"


def services(manifests: Path) -> None:
    docs = []
    for name, addresses in (("stable", [STABLE]), ("preview", [CANARY]), ("empty", [])):
        docs += [service(name, target=PORT), endpoint_slice(name, addresses, port=PORT)]
    write_manifests(manifests, "services.yaml", docs)


def main(host: str) -> dict[str, Any]:
    return ingress(host.split(".")[0], rules=[rule(host, ("/", "Prefix", backend("stable")))])


def canary(host: str, svc: str = "preview", **annotations: str) -> dict[str, Any]:
    notes = {A + "canary": "true", **{A + k.replace("_", "-"): v for k, v in annotations.items()}}
    return ingress(host.split(".")[0] + "-canary", rules=[rule(host, ("/", "Prefix", backend(svc)))], annotations=notes)


def pods_of(ctl: Controller, host: str, count: int, **kw: Any) -> list[str | None]:
    return [ctl.get(host, **kw).pod for _ in range(count)]


def to(ctl: Controller, host: str, headers: dict[str, str] | None = None) -> str | None:
    response = ctl.get(host, headers=headers or {})
    assert response.status == 200, (host, headers, response.status)
    return response.pod


def test_header_cookie_weight_precedence(controller: Controller, manifests: Path) -> None:
    with pods([STABLE, CANARY], PORT):
        services(manifests)
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                main("header.test"),
                canary("header.test", canary_by_header="X-Canary", canary_by_cookie="ck", canary_weight="0"),
                main("value.test"),
                canary("value.test", canary_by_header="X-Canary", canary_by_header_value="v2", canary_weight="0"),
                main("pattern.test"),
                canary("pattern.test", canary_by_header="X-Canary", canary_by_header_pattern="^v[0-9]+$"),
                main("all.test"),
                canary("all.test", canary_by_cookie="ck", canary_weight="100"),
                main("half.test"),
                canary("half.test", canary_weight="100", canary_weight_total="200"),
                main("bad.test"),
                canary("bad.test", canary_weight="x"),
                canary("lonely.test", canary_weight="100"),
                main("slow.test"),
                canary("slow.test", canary_by_header="X-Canary", canary_by_header_pattern=r"\d*\d*\d*\d*x"),
                main("empty.test"),
                canary("empty.test", "empty", canary_weight="100"),
            ],
        )
        wait_for(lambda: controller.get("all.test").pod == CANARY, what="canary served")

        # Weight 0 is exact: nothing reaches the canary without a header or cookie.
        assert set(pods_of(controller, "header.test", 40)) == {STABLE}
        # Header first: always / never; any other value falls through to the cookie, then the weight.
        assert to(controller, "header.test", {"X-Canary": "always"}) == CANARY
        assert to(controller, "header.test", {"X-Canary": "never", "Cookie": "ck=always"}) == STABLE
        assert to(controller, "header.test", {"X-Canary": "maybe", "Cookie": "ck=always"}) == CANARY
        assert to(controller, "header.test", {"X-Canary": "maybe"}) == STABLE
        # Then the cookie: always / never.
        assert to(controller, "header.test", {"Cookie": "other=1; ck=always"}) == CANARY
        assert to(controller, "header.test", {"Cookie": "ck=never"}) == STABLE

        # An exact header value replaces always/never.
        assert to(controller, "value.test", {"X-Canary": "v2"}) == CANARY
        assert to(controller, "value.test", {"X-Canary": "always"}) == STABLE
        assert to(controller, "value.test", {"X-Canary": "v22"}) == STABLE

        # A header pattern (PCRE in the balancer).
        assert to(controller, "pattern.test", {"X-Canary": "v12"}) == CANARY
        assert to(controller, "pattern.test", {"X-Canary": "vx"}) == STABLE
        assert to(controller, "pattern.test") == STABLE

        # A pattern that backtracks polynomially stops at lua_regex_match_limit: the request goes to the
        # main Service at once (ingress-nginx's rule for a pattern error), not after seconds of matching.
        started = time.monotonic()
        assert to(controller, "slow.test", {"X-Canary": "1" * 4000}) == STABLE
        assert time.monotonic() - started < 1.0
        wait_for(lambda: "canary header pattern" in controller.log(), what="the pattern error logged")

        # Weight 100 is exact: everything goes to the canary, except what the cookie keeps away.
        assert set(pods_of(controller, "all.test", 40)) == {CANARY}
        assert set(pods_of(controller, "all.test", 10, headers={"Cookie": "ck=never"})) == {STABLE}

        # canary-weight-total: 100 of 200, about half.
        half = pods_of(controller, "half.test", 200)
        assert 60 <= half.count(CANARY) <= 140, half.count(CANARY)

        # A canary Service without a ready endpoint leaves the traffic to the main one.
        assert set(pods_of(controller, "empty.test", 10)) == {STABLE}

        # An invalid canary is rejected alone (its main Ingress serves on); a canary without a
        # main Ingress serves nothing; both are reported.
        assert set(pods_of(controller, "bad.test", 10)) == {STABLE}
        assert controller.get("lonely.test").status == 404
        log = controller.log()
        assert "default/bad-canary" in log and "canary-weight" in log
        assert "default/lonely-canary" in log and "no main Ingress serves host lonely.test path /" in log


def test_retries_stay_with_the_backend_chosen_first(controller: Controller, manifests: Path) -> None:
    """nginx retries (proxy-next-upstream of the main Ingress) run the balancer again: a request sent
    to the canary by the weight is retried on the canary's other endpoints, never on the main Service."""
    with pods([STABLE, CANARY], PORT), echo_pods((FAILING, PORT, {"fail": True})):
        docs = [service("stable", target=PORT), endpoint_slice("stable", [STABLE], port=PORT)]
        docs += [service("preview", target=PORT), endpoint_slice("preview", [FAILING, CANARY], port=PORT)]
        write_manifests(manifests, "services.yaml", docs)
        retrying = main("retry.test")
        retrying["metadata"]["annotations"] = {A + "proxy-next-upstream": "error timeout http_502"}
        write_manifests(manifests, "ingresses.yaml", [retrying, canary("retry.test", canary_weight="50")])
        wait_for(lambda: controller.get("retry.test").pod == CANARY, what="canary served")
        answers = [to(controller, "retry.test") for _ in range(60)]
        assert set(answers) == {STABLE, CANARY}, answers

        # The access log's $upstream_addr lists every peer a request tried (flushed within 1 s).
        def tried() -> list[list[str]]:
            lines = [line for line in controller.log().splitlines() if "~default/retry-canary" in line]
            return [re.findall(r"127\.43\.0\.\d+", line) for line in lines if f"{FAILING}:" in line]

        retried = wait_for(lambda: [t for t in tried() if len(t) > 1], what="retried requests in the access log")
        assert all(peers[-1] == CANARY for peers in retried), retried


def test_weight_change_under_load_is_reload_free_and_measured_within_a_second(
    controller: Controller, manifests: Path, lag: Lag
) -> None:
    with pods([STABLE, CANARY], PORT):
        services(manifests)
        write_manifests(manifests, "ingresses.yaml", [main("w.test"), canary("w.test", canary_weight="0")])
        wait_for(lambda: controller.get("w.test").pod == STABLE, what="main served")
        controller.settle()
        reloads = controller.reloads()

        results: list[tuple[float, str | None]] = []
        stop = threading.Event()

        def load() -> None:  # bounded: at most 20 s and 20,000 requests
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline and len(results) < 20_000:
                results.append((time.monotonic(), controller.get("w.test").pod))

        worker = threading.Thread(target=load, name="canary-load")
        worker.start()
        try:
            time.sleep(0.5)
            for weight in (30, 100, 0):
                changed = time.monotonic()
                write_manifests(
                    manifests, "ingresses.yaml", [main("w.test"), canary("w.test", canary_weight=str(weight))]
                )
                settled = _new_split(results, since=changed, weight=weight)
                print(f"weight {weight}: new split from {settled - changed:.3f} s after the change")
                lag.within(settled - changed, 1.0, f"weight {weight} reaching the balancer")
        finally:
            stop.set()
            worker.join(timeout=30)
        assert not worker.is_alive()
        assert controller.reloads() == reloads, "a canary weight change must not reload nginx"
        assert len(results) < 20_000 and {pod for _, pod in results} == {STABLE, CANARY}


def _new_split(results: list[tuple[float, str | None]], *, since: float, weight: int) -> float:
    """When the answers after `since` switched to `weight`, waiting up to 5 s: for 0 and 100 after the
    last answer of the other kind, the next 200 all of one kind (exact); for a weight coming from 0,
    at the first canary answer, the next 200 within 12 points of it."""

    def found() -> float | None:
        after = [(t, pod) for t, pod in list(results) if t >= since]
        if weight in (0, 100):
            other = STABLE if weight == 100 else CANARY
            first = max((i + 1 for i, (_, pod) in enumerate(after) if pod == other), default=0)
        else:
            first = next((i for i, (_, pod) in enumerate(after) if pod == CANARY), len(after))
        window = [pod for _, pod in after[first : first + 200]]
        if len(window) < 200 or first >= len(after):
            return None
        share = 100 * window.count(CANARY) / len(window)
        assert share == weight if weight in (0, 100) else abs(share - weight) <= 12, (weight, share)
        return after[first][0]

    return float(wait_for(found, timeout=5, interval=0.1, what=f"the split of weight {weight}"))
