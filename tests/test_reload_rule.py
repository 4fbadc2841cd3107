"""The defining rule, end to end through real nginx: endpoint changes never reload; host/path
changes reload exactly once; bursts coalesce."""

from __future__ import annotations

import time
from pathlib import Path

from tests.harness import (
    QUIET,
    Controller,
    backend,
    endpoint_slice,
    ingress,
    pods,
    rule,
    service,
    wait_for,
    write_manifests,
)
from tests.timing import Lag

PORT = 18931


def _app(manifests: Path, addresses: list[str], *, host: str = "app.example.com") -> None:
    write_manifests(
        manifests,
        "app.yaml",
        [
            service("app", target=PORT),
            endpoint_slice("app", addresses, port=PORT),
            ingress("app", rules=[rule(host, ("/", "Prefix", backend("app")))]),
        ],
    )


def _pods_seen(ctl: Controller, host: str, n: int) -> set[str]:
    return {str(ctl.get(host).pod) for _ in range(n)}


def test_endpoint_changes_never_reload(controller: Controller, manifests: Path) -> None:
    addresses = [f"127.0.0.{i}" for i in range(21, 26)]
    with pods(addresses, PORT):
        _app(manifests, addresses[:2])
        wait_for(lambda: _pods_seen(controller, "app.example.com", 6) == set(addresses[:2]), what="2 pods")
        reloads, workers = controller.reloads(), controller.worker_pids()
        # Scale up, replace, scale down: every step serves the new set with no reload.
        for step in (addresses[:5], addresses[2:5], [addresses[4]], addresses[1:3]):
            _app(manifests, step)
            wait_for(
                lambda step=step: _pods_seen(controller, "app.example.com", 3 * len(step)) == set(step),
                what=f"pods {step}",
            )
        assert controller.reloads() == reloads
        assert controller.worker_pids() == workers
        # Readiness flips: a not-ready endpoint leaves the rotation, without a reload.
        write_manifests(
            manifests,
            "app.yaml",
            [
                service("app", target=PORT),
                endpoint_slice("app", addresses[:3], port=PORT, not_ready=(addresses[0],), terminating=(addresses[1],)),
                ingress("app", rules=[rule("app.example.com", ("/", "Prefix", backend("app")))]),
            ],
        )
        wait_for(lambda: _pods_seen(controller, "app.example.com", 6) == {addresses[2]}, what="ready pod only")
        assert controller.reloads() == reloads
        assert controller.worker_pids() == workers
        # Every change went to the Lua API as a delta; only the start sent every backend.
        log = controller.log()
        assert log.count("backends replaced:") == 1, log
        assert log.count("backends delta:") >= 5 and "backends delta failed" not in log


def test_no_endpoints_answers_503_for_its_routes_only(controller: Controller, manifests: Path) -> None:
    with pods(["127.0.0.31"], PORT):
        write_manifests(
            manifests,
            "two.yaml",
            [
                service("up", target=PORT),
                endpoint_slice("up", ["127.0.0.31"], port=PORT),
                service("down", target=PORT),
                endpoint_slice("down", [], port=PORT),
                ingress(
                    "two",
                    rules=[
                        rule("two.example.com", ("/up", "Prefix", backend("up")), ("/down", "Prefix", backend("down")))
                    ],
                ),
            ],
        )
        wait_for(lambda: controller.get("two.example.com", "/up").status == 200, what="up served")
        assert controller.get("two.example.com", "/down").status == 503
        assert controller.get("two.example.com", "/down/x").status == 503
        assert controller.get("two.example.com", "/up/x").pod == "127.0.0.31"


def test_host_change_reloads_exactly_once(controller: Controller, manifests: Path) -> None:
    with pods(["127.0.0.41"], PORT):
        _app(manifests, ["127.0.0.41"], host="one.example.com")
        wait_for(lambda: controller.get("one.example.com").status == 200, what="one served")
        controller.settle()  # the reload that served it is counted once its hand-over is over
        reloads = controller.reloads()
        _app(manifests, ["127.0.0.41"], host="two.example.com")
        wait_for(lambda: controller.get("two.example.com").status == 200, what="two served")
        time.sleep(QUIET)  # anything still pending would show up as a second reload
        assert controller.reloads() == reloads + 1
        assert controller.get("one.example.com").status == 404


def test_burst_of_50_changes_coalesces(controller: Controller, manifests: Path, lag: Lag) -> None:
    with pods(["127.0.0.51"], PORT):
        _app(manifests, ["127.0.0.51"], host="burst-0.example.com")
        wait_for(lambda: controller.get("burst-0.example.com").status == 200, what="first host")
        controller.settle()  # the reload that served it is counted once its hand-over is over
        reloads = controller.reloads()
        started = time.monotonic()
        for i in range(1, 51):
            _app(manifests, ["127.0.0.51"], host=f"burst-{i}.example.com")
            time.sleep(max(0.0, started + i * 0.019 - time.monotonic()))
        # A precondition: the 50 changes came as a burst (within the 1 s maximum delay and a half).
        lag.within(time.monotonic() - started, 1.5, "writing the burst")
        wait_for(lambda: controller.get("burst-50.example.com").status == 200, what="last host")
        time.sleep(QUIET)
        assert controller.reloads() - reloads <= 2
        assert controller.get("burst-49.example.com").status == 404
