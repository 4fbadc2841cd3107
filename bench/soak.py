"""Section 6: soak under endpoint churn (issue 15). For a set time the EndpointSlice of one Service
is rewritten RATE times a second (3 of 6 endpoints in rotation: every change is a real one) while
wrk sends traffic to its Ingress; the controller's and nginx's RSS are read at the start, after the
warm-up and at the end (and sampled in between for the raw figures).

Targets: RSS growth from the end of the warm-up to the end < 5% (memory bounded by the cluster's
size, not by the number of changes), 0 failed requests (non-2xx or socket errors), 0 reloads.
Through the manifests folder (atomic rewrites of one file) and through the Kubernetes API source
(updates on the fake API server, tests/fakeapi, watched by the controller over HTTP).

The duration is per source: `Options.seconds`, set by `bench/run.py --soak-minutes M` or the
environment variable INGRESSCTL_SOAK_MINUTES (both: minutes per source).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BackgroundWrk,
    Poller,
    Procs,
    Row,
    addresses,
    backend_nginx,
    free_port,
    manifest_text,
    status_kb,
    status_script,
    wait_for,
    write_atomic,
)
from bench.propagation_kube import LEASE
from tests.fakeapi.threaded import ThreadedFakeApi
from tests.harness import Controller, backend, endpoint_slice, ingress, ingress_class, rule, service

log = logging.getLogger("bench.soak")
HOST = "soak.example.com"
TARGET_GROWTH = 0.05
COMPACT_EVERY = 300.0  # seconds: the fake API forgets its history as often as kube-apiserver does
SAMPLE_EVERY = 5.0


@dataclass(frozen=True)
class Options:
    seconds: float = 90.0  # of churn per source
    warmup: float = 0.25  # share of `seconds` before the warm-up reading ...
    min_warmup: float = 10.0  # ... and at least this many seconds
    rate: float = 30.0  # endpoint changes per second
    connections: int = 8  # wrk's


def endpoints(pool: Sequence[str], i: int) -> list[str]:
    """The i-th endpoint set: 3 of the pool, consecutive sets always differ."""
    return [pool[(i + k) % len(pool)] for k in range(3)]


def static_docs(port: int) -> list[dict[str, Any]]:
    return [
        ingress_class(),
        service("soak", target=port),
        ingress("soak", rules=[rule(HOST, ("/", "Prefix", backend("soak")))]),
    ]


def rss_kb(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += status_kb(pid, "VmRSS")
        except OSError:
            continue  # a worker that just went away
    return total


@dataclass(frozen=True)
class Reading:
    at: float  # seconds since the churn started
    changes: int
    controller_kb: int
    nginx_kb: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "at_s": round(self.at, 1),
            "changes": self.changes,
            "controller_kb": self.controller_kb,
            "nginx_kb": self.nginx_kb,
        }


def _serves_only(poller: Poller, wanted: set[str]) -> bool:
    return {poller.get()[1] for _ in range(4 * len(wanted))} == wanted


def soak(
    ctl: Controller,
    change: Callable[[list[str]], None],
    pool: Sequence[str],
    opts: Options,
    *,
    housekeeping: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Churns for opts.seconds under wrk load (`housekeeping` runs every COMPACT_EVERY seconds);
    returns the raw figures."""
    assert ctl.process is not None
    controller, master = ctl.process.pid, ctl.master_pid()
    workers = ctl.worker_pids()

    def reading(started: float, changes: int) -> Reading:
        nginx = rss_kb([master, *ctl.worker_pids()])
        return Reading(time.monotonic() - started, changes, rss_kb([controller]), nginx)

    reloads = ctl.reloads()
    updates = ctl.backend_updates()
    warmup = max(opts.min_warmup, opts.seconds * opts.warmup)
    samples: list[Reading] = []
    with BackgroundWrk(
        f"http://127.0.0.1:{ctl.http_port}/",
        host=HOST,
        seconds=opts.seconds + 30,
        connections=opts.connections,
        script=status_script(ctl.work_dir.parent),
    ) as load:
        time.sleep(1.0)  # wrk connected
        started = time.monotonic()
        start = reading(started, 0)
        samples.append(start)
        warm: Reading | None = None
        changes = 0
        next_sample = started + SAMPLE_EVERY
        next_housekeeping = started + COMPACT_EVERY
        while (now := time.monotonic()) < started + opts.seconds:
            changes += 1
            change(endpoints(pool, changes))
            if warm is None and now >= started + warmup:
                warm = reading(started, changes)
                samples.append(warm)
            elif now >= next_sample:
                samples.append(reading(started, changes))
                next_sample = now + SAMPLE_EVERY
            if now >= next_housekeeping:
                housekeeping()
                next_housekeeping = now + COMPACT_EVERY
            # Paced by the schedule, not by sleeps after each write: a slow write is caught up.
            time.sleep(max(0.0, started + changes / opts.rate - time.monotonic()))
        last = endpoints(pool, changes)
        # The last set serves, alone (every change went through), then a quiet second of load.
        poller = Poller(ctl.http_port, HOST)
        try:
            wait_for(lambda: _serves_only(poller, set(last)), timeout=10, what="the last endpoint set served")
        finally:
            poller.close()
        time.sleep(1.0)
        end = reading(started, changes)
        samples.append(end)
        assert load.proc is not None
        load.proc.send_signal(signal.SIGINT)  # wrk prints its totals
        result = load.result()
    assert warm is not None
    return {
        "seconds": round(end.at, 1),
        "changes": changes,
        "changes_per_s": round(changes / end.at, 1),
        "backend_updates": ctl.backend_updates() - updates,
        "last_set": last,
        "reloads": ctl.reloads() - reloads,
        "workers_unchanged": ctl.worker_pids() == workers,
        "start": start.as_dict(),
        "warm": warm.as_dict(),
        "end": end.as_dict(),
        "samples": [s.as_dict() for s in samples],
        "controller_growth": (end.controller_kb - warm.controller_kb) / warm.controller_kb,
        "nginx_growth": (end.nginx_kb - warm.nginx_kb) / warm.nginx_kb,
        "requests": result.requests,
        "rps": result.rps,
        "statuses": result.statuses,
        "non_2xx": result.non_2xx,
        "socket_errors": result.socket_errors,
        "failed": result.non_2xx + result.errors,
    }


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def rows_for(source: str, raw: dict[str, Any]) -> list[Row]:
    section = f"6 soak ({source})"
    start, warm, end = raw["start"], raw["warm"], raw["end"]
    minutes = raw["seconds"] / 60
    reloads = raw["reloads"] if raw["workers_unchanged"] else max(raw["reloads"], 1)
    rows = [
        Row(
            section,
            f"{raw['changes']} endpoint changes in {minutes:.1f} min ({raw['changes_per_s']}/s) under wrk "
            f"({raw['requests']} requests)",
            f"{raw['backend_updates']} Lua updates",
        )
    ]
    for what, key, growth in (
        ("controller RSS", "controller_kb", raw["controller_growth"]),
        ("nginx RSS (master + workers)", "nginx_kb", raw["nginx_growth"]),
    ):
        rows.append(
            Row(
                section,
                f"{what}, MB: start / after warm-up ({warm['at_s']:.0f} s) / end",
                f"{_mb(start[key])} / {_mb(warm[key])} / {_mb(end[key])} ({growth:+.1%})",
                "growth after warm-up < 5%",
                growth < TARGET_GROWTH,
            )
        )
    rows.append(Row(section, "failed requests (non-2xx + socket errors)", str(raw["failed"]), "0", raw["failed"] == 0))
    rows.append(Row(section, "nginx reloads", str(reloads), "0", reloads == 0))
    return rows


def _start(procs: Procs, ctl: Controller) -> Controller:
    procs.controller(ctl).start()
    return ctl


def run_manifests(tmp: Path, opts: Options, *, pool: list[str], port: int) -> dict[str, Any]:
    folder = tmp / "manifests"
    folder.mkdir()
    write_atomic(folder, "static.yaml", manifest_text(static_docs(port)))

    def change(endpoints: list[str]) -> None:
        write_atomic(folder, "slice.yaml", manifest_text([endpoint_slice("soak", endpoints, port=port)]))

    change(endpoints(pool, 0))
    with Procs() as procs:
        ctl = _start(procs, Controller(manifests=folder, work_dir=tmp / "work"))
        return soak(ctl, change, pool, opts)


def run_api(tmp: Path, opts: Options, *, pool: list[str], port: int) -> dict[str, Any]:
    with Procs() as procs:
        api = ThreadedFakeApi(bookmark_interval=1.0)
        procs.add(api.close)
        for doc in static_docs(port):
            api.create(doc)

        def change(endpoints: list[str]) -> None:
            api.apply(endpoint_slice("soak", endpoints, port=port))

        change(endpoints(pool, 0))
        (tmp / "api").mkdir()
        kubeconfig = api.write_kubeconfig(tmp / "api" / "kubeconfig")
        ctl = _start(
            procs,
            Controller(
                manifests=None,
                work_dir=tmp / "api" / "work",
                extra_args=["--kubeconfig", str(kubeconfig), *LEASE],
                env={"POD_NAMESPACE": "default", "POD_NAME": "bench"},
            ),
        )
        # The fake keeps every write for watches to replay, as etcd does until it compacts.
        return soak(ctl, change, pool, opts, housekeeping=api.compact)


def run(tmp: Path, opts: Options) -> tuple[list[Row], dict[str, Any]]:
    pool = addresses(131, 6)
    port = free_port()
    raw: dict[str, Any] = {"options": opts.__dict__}
    rows: list[Row] = []
    with Procs() as procs:
        pods = backend_nginx(pool, port, name="soak-backends").start()
        procs.add(pods.stop)
        for source, fn, key in (
            ("manifests folder", run_manifests, "manifests"),
            ("fake API", run_api, "fake_api"),
        ):
            log.info("soak through the %s: %.0f s of churn", source, opts.seconds)
            (tmp / key).mkdir()
            got = fn(tmp / key, opts, pool=pool, port=port)
            raw[key] = got
            rows += rows_for(source, got)
    return rows, raw
