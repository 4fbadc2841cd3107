"""Section 2: endpoint propagation, from the change at the source to the first request served by
the new endpoint set, while a client polls nginx.

Each change adds, removes or replaces one endpoint of a Service (the backends are one nginx that
answers with its own address on 127.0.0.x). A change is *served* when every added endpoint has
answered and every removed one has stopped answering: its latency is the latest of (first answer
of an added endpoint) and (first answer after the last answer of a removed endpoint), confirmed by
CONFIRM further answers without a removed endpoint. Then a burst: BURST changes within one second,
and the time from the last write until the final set alone answers. nginx reloads during the run
must be 0 (the controller's metric, and the worker PIDs stay the same).

The change is made through a `Changer`: a manifests-folder write, or (when the Kubernetes API
source exists) an update on the fake API server.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.common import (
    Poller,
    Procs,
    Row,
    addresses,
    backend_nginx,
    fmt_ms,
    free_port,
    manifest_text,
    median,
    percentile,
    wait_for,
    write_atomic,
)
from tests.harness import Controller, backend, endpoint_slice, ingress, ingress_class, rule, service

log = logging.getLogger("bench.propagation")
HOST = "propagation.example.com"
CONFIRM = 12  # answers without a removed endpoint that confirm it is gone (3 endpoints at most)
TIMEOUT = 10.0
TARGET_P99 = 0.100


@dataclass(frozen=True)
class Options:
    changes: int = 60
    burst: int = 20
    burst_seconds: float = 1.0
    api: bool = True  # also through the Kubernetes API source (fake API server), when it exists


class Changer(Protocol):
    """Makes an endpoint change at the source; returns time.monotonic() when it was made."""

    def set_endpoints(self, endpoints: Sequence[str]) -> float: ...


class ManifestsChanger:
    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port

    def set_endpoints(self, endpoints: Sequence[str]) -> float:
        text = manifest_text([endpoint_slice("prop", list(endpoints), port=self.port)])
        return write_atomic(self.folder, "slice.yaml", text)


def static_docs(port: int) -> list[dict[str, Any]]:
    return [
        ingress_class(),
        service("prop", target=port),
        ingress("prop", rules=[rule(HOST, ("/", "Prefix", backend("prop")))]),
    ]


def plan(pool: Sequence[str], count: int) -> list[list[str]]:
    """A sequence of endpoint sets, each one add, remove or replace away from the previous one,
    cycling through the pool so addresses come back after a while."""
    current = list(pool[:2])
    spare = [a for a in pool if a not in current]
    steps: list[list[str]] = []
    for i in range(count):
        kind = ("add", "remove", "replace")[i % 3]
        if kind == "add" or (kind == "replace" and len(current) == 0):
            current = [*current, spare.pop(0)]
        elif kind == "remove" and len(current) > 1:
            spare.append(current.pop(0))
        else:
            old = current.pop(0)
            current = [*current, spare.pop(0)]
            spare.append(old)
        steps.append(list(current))
    return steps


@dataclass(frozen=True)
class Observed:
    latency: float
    requests: int


def observe(poller: Poller, changed_at: float, before: set[str], after: set[str]) -> Observed:
    """Polls until the change from `before` to `after` is served; returns the latency."""
    added, removed = after - before, before - after
    first_seen: dict[str, float] = {}
    first_clean: float | None = None  # start of the current run of answers without a removed endpoint
    clean = 0
    requests = 0
    while time.monotonic() < changed_at + TIMEOUT:
        status, body = poller.get()
        now = time.monotonic()
        requests += 1
        if status != 200:
            raise RuntimeError(f"HTTP {status} while propagating {sorted(before)} -> {sorted(after)}: {body}")
        if body in removed:
            first_clean, clean = None, 0
            continue
        if first_clean is None:
            first_clean = now
        clean += 1
        if body in added:
            first_seen.setdefault(body, now)
        if set(first_seen) == added and (not removed or clean >= CONFIRM):
            points = [*first_seen.values(), *([first_clean] if removed else [])]
            return Observed(max(points) - changed_at, requests)
    raise RuntimeError(f"change {sorted(before)} -> {sorted(after)} not served after {TIMEOUT}s")


def settle(poller: Poller, changed_at: float, final: set[str]) -> float:
    """After a burst: time from the last change until a run of answers from exactly `final` starts."""
    run_start: float | None = None
    seen: set[str] = set()
    count = 0
    while time.monotonic() < changed_at + TIMEOUT:
        status, body = poller.get()
        now = time.monotonic()
        if status != 200 or body not in final:
            run_start, seen, count = None, set(), 0
            continue
        if run_start is None:
            run_start = now
        seen.add(body)
        count += 1
        if seen == final and count >= CONFIRM:
            return run_start - changed_at
    raise RuntimeError(f"final state {sorted(final)} not served after {TIMEOUT}s")


def measure(
    changer: Changer, poller: Poller, pool: Sequence[str], opts: Options, *, reloads: Callable[[], int]
) -> dict[str, Any]:
    """Runs the changes and the burst through one source; returns the raw figures."""
    steps = plan(pool, opts.changes)
    current = set(pool[:2])
    changer.set_endpoints(sorted(current))
    wait_for(lambda: _exactly(poller, current), timeout=TIMEOUT, what="initial endpoints")
    reloads_before = reloads()
    latencies: list[float] = []
    pause = random.Random(5)
    for step in steps:
        # A pause of random length, so changes do not fall into step with the source's poll period.
        time.sleep(pause.uniform(0.02, 0.12))
        changed_at = changer.set_endpoints(step)
        latencies.append(observe(poller, changed_at, current, set(step)).latency)
        current = set(step)
    # The burst: opts.burst changes spread over opts.burst_seconds, no waiting in between.
    burst = plan(list(reversed(pool)), opts.burst)
    started = time.monotonic()
    last = started
    for i, step in enumerate(burst):
        if i:  # evenly spread; no pause after the last change, which starts the clock
            time.sleep(max(0.0, started + i * opts.burst_seconds / opts.burst - time.monotonic()))
        last = changer.set_endpoints(step)
    burst_span = last - started
    final_latency = settle(poller, last, set(burst[-1]))
    return {
        "latencies_ms": [round(x * 1000, 2) for x in latencies],
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "median_ms": median(latencies) * 1000,
        "changes": len(latencies),
        "burst_changes": len(burst),
        "burst_span_s": burst_span,
        "burst_final_ms": final_latency * 1000,
        "reloads": reloads() - reloads_before,
    }


def _exactly(poller: Poller, expected: set[str]) -> bool:
    return {poller.get()[1] for _ in range(4 * len(expected))} == expected


def rows_for(source: str, raw: dict[str, Any]) -> list[Row]:
    section = f"2 propagation ({source})"
    p99 = raw["p99_ms"] / 1000
    return [
        Row(
            section,
            f"change -> served, {raw['changes']} changes: p50 / p99 / max",
            f"{fmt_ms(raw['p50_ms'] / 1000)} / {fmt_ms(p99)} / {fmt_ms(raw['max_ms'] / 1000)}",
            "p99 < 100 ms" + (" (API source)" if source != "fake API" else ""),
            p99 < TARGET_P99 if source == "fake API" else None,
        ),
        Row(
            section,
            f"burst of {raw['burst_changes']} in {raw['burst_span_s']:.2f} s: last change -> final set served",
            fmt_ms(raw["burst_final_ms"] / 1000),
            "< 100 ms" if source == "fake API" else "",
            raw["burst_final_ms"] < TARGET_P99 * 1000 if source == "fake API" else None,
        ),
        Row(section, "nginx reloads during the run", str(raw["reloads"]), "0", raw["reloads"] == 0),
    ]


def measure_controller(
    procs: Procs, ctl: Controller, changer: Changer, pool: list[str], opts: Options
) -> dict[str, Any]:
    """Starts ctl, measures changer's changes while a client polls, and checks nginx's workers
    stayed the same (no reload, whatever the reload counter says)."""
    ctl.start()
    poller = Poller(ctl.http_port, HOST)
    procs.add(poller.close)
    workers = ctl.worker_pids()
    got = measure(changer, poller, pool, opts, reloads=ctl.reloads)
    got["workers_unchanged"] = ctl.worker_pids() == workers
    if not got["workers_unchanged"]:
        got["reloads"] = max(got["reloads"], 1)
    return got


def run(tmp: Path, opts: Options) -> tuple[list[Row], dict[str, Any]]:
    port = free_port()
    pool = addresses(111, 6)
    raw: dict[str, Any] = {"options": opts.__dict__}
    rows: list[Row] = []
    folder = tmp / "manifests"
    folder.mkdir()
    with Procs() as procs:
        pods = backend_nginx(pool, port, name="prop-backends").start()
        procs.add(pods.stop)
        write_atomic(folder, "static.yaml", manifest_text(static_docs(port)))
        changer = ManifestsChanger(folder, port)
        changer.set_endpoints(pool[:2])
        ctl = procs.controller(Controller(manifests=folder, work_dir=tmp / "work"))
        got = measure_controller(procs, ctl, changer, pool, opts)
        raw["manifests"] = got
        rows += rows_for("manifests folder", got)
    if not opts.api:
        return rows, raw
    try:
        from bench import propagation_kube
    except ImportError as exc:
        raw["fake_api"] = f"not measured: {exc}"
        rows.append(Row("2 propagation (fake API)", "not measured", "the Kubernetes API source is not on this branch"))
    else:
        got = propagation_kube.run(tmp, opts, pool=pool)
        raw["fake_api"] = got
        rows += rows_for("fake API", got)
    return rows, raw
