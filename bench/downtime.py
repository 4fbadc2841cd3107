"""Section 4: zero-downtime under steady wrk load.

(a) Rolling endpoints: every endpoint of the backend is replaced one by one, ROLLS times: a new
"pod" (its own nginx on a fresh 127.0.0.x) starts and is added, and once it answers the old one
is removed from the EndpointSlice; once the controller has posted the removal to the balancer and
the old one no longer answers, its nginx is stopped (gracefully, as a terminating pod would be).
Target: zero failed requests.
(b) RELOADS nginx reloads caused by host changes of another Ingress (spaced past the controller's
minimum reload interval), each confirmed by the reload counter and the new host serving.
Target: zero non-2xx responses; connection errors are counted and reported separately.

wrk counts every status with a Lua script (bench/common.STATUS_SCRIPT); it runs with an upper
bound on its duration and is stopped with SIGINT (it then prints its totals) once the changes are
done and a tail of steady load has passed.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BackgroundWrk,
    NginxProcess,
    Poller,
    Procs,
    Row,
    WrkResult,
    addresses,
    backend_nginx,
    free_port,
    manifest_text,
    serves,
    status_script,
    wait_for,
    write_atomic,
)
from bench.propagation import CONFIRM
from tests.harness import Controller, backend, endpoint_slice, ingress, ingress_class, rule, service

log = logging.getLogger("bench.downtime")
HOST = "zd.example.com"
MAX_WRK_SECONDS = 180


@dataclass(frozen=True)
class Options:
    rolls: int = 5
    reloads: int = 10
    connections: int = 16
    tail: float = 1.0  # seconds of steady load before and after the changes


class Pods:
    """One nginx per endpoint address, so a removed endpoint can really go away."""

    def __init__(self, port: int, procs: Procs) -> None:
        self.port, self.procs = port, procs
        self.running: dict[str, NginxProcess] = {}

    def start(self, address: str) -> None:
        pod = backend_nginx([address], self.port, name=f"pod-{address}").start()
        self.running[address] = pod
        self.procs.add(pod.stop)

    def stop(self, address: str) -> None:
        self.running.pop(address).stop()


def _slice(folder: Path, endpoints: Sequence[str], port: int) -> None:
    write_atomic(folder, "slice.yaml", manifest_text([endpoint_slice("zd", list(endpoints), port=port)]))


def _answers(poller: Poller, address: str, *, present: bool) -> bool:
    """present: `address` answered within CONFIRM requests; else: it did not answer in CONFIRM."""
    seen = {poller.get()[1] for _ in range(CONFIRM)}
    return (address in seen) == present


def _posted_since(ctl: Controller, updates: int) -> bool:
    return ctl.backend_updates() > updates


def _nginx_errors(ctl: Controller) -> list[str]:
    """nginx's error and warning lines (its error_log goes to the controller's log), to explain failures."""
    return [line for line in ctl.log().splitlines() if "[error]" in line or "[warn]" in line or "[crit]" in line][:50]


def _reloaded(ctl: Controller, before: int) -> bool:
    return ctl.reloads() > before


def _stop_wrk(load: BackgroundWrk) -> WrkResult:
    assert load.proc is not None
    load.proc.send_signal(signal.SIGINT)
    return load.result()


def _under_load(ctl: Controller, folder: Path, opts: Options, changes: Callable[[], None]) -> tuple[WrkResult, float]:
    """Runs changes() under steady wrk load with a quiet tail before and after; returns wrk's
    result and how long the changes took."""
    with BackgroundWrk(
        f"http://127.0.0.1:{ctl.http_port}/",
        host=HOST,
        seconds=MAX_WRK_SECONDS,
        connections=opts.connections,
        script=status_script(folder.parent),
    ) as load:
        time.sleep(opts.tail)
        started = time.monotonic()
        changes()
        elapsed = time.monotonic() - started
        time.sleep(opts.tail)
        return _stop_wrk(load), elapsed


def _roll(ctl: Controller, folder: Path, pods: Pods, opts: Options, port: int, fresh: list[str]) -> dict[str, Any]:
    current = sorted(pods.running)
    steps = 0

    def roll() -> None:
        nonlocal current, steps
        poller = Poller(ctl.http_port, HOST)
        try:
            for _ in range(opts.rolls):
                for old in list(current):
                    new = fresh.pop(0)
                    pods.start(new)
                    current = [*current, new]
                    _slice(folder, current, port)
                    wait_for(functools.partial(_answers, poller, new, present=True), timeout=10, what=f"{new} serves")
                    current = [a for a in current if a != old]
                    updates = ctl.backend_updates()
                    _slice(folder, current, port)
                    # Like a terminating pod, the old one stops only after the removal reached the
                    # balancer; not seeing it in a few answers alone can happen by chance before.
                    wait_for(functools.partial(_posted_since, ctl, updates), timeout=10, what=f"{old} removal applied")
                    wait_for(functools.partial(_answers, poller, old, present=False), timeout=10, what=f"{old} gone")
                    pods.stop(old)
                    steps += 1
        finally:
            poller.close()

    result, rolled = _under_load(ctl, folder, opts, roll)
    return {"replaced_endpoints": steps, "roll_seconds": rolled, **_figures(result)}


def _reloads(ctl: Controller, folder: Path, opts: Options) -> dict[str, Any]:
    done = 0
    reloads = ctl.reloads()

    def change_hosts() -> None:
        nonlocal done
        for i in range(opts.reloads):
            host = f"other-{i}.example.com"
            before = ctl.reloads()
            write_atomic(folder, "other.yaml", _other(host))
            wait_for(functools.partial(_reloaded, ctl, before), timeout=60, what=f"reload {i + 1}")
            wait_for(functools.partial(serves, ctl.http_port, host), timeout=60, what=f"{host} serves")
            done += 1
            time.sleep(1.05)  # the controller spaces reloads by at least 1 s

    result, elapsed = _under_load(ctl, folder, opts, change_hosts)
    return {"reloads": ctl.reloads() - reloads, "changes": done, "seconds": elapsed, **_figures(result)}


def _other(host: str) -> str:
    return manifest_text([_ingress("other", host)])


def _ingress(name: str, host: str) -> dict[str, Any]:
    return ingress(name, rules=[rule(host, ("/", "Prefix", backend("zd")))])


def _figures(result: WrkResult) -> dict[str, Any]:
    return {
        "requests": result.requests,
        "rps": result.rps,
        "statuses": result.statuses,
        "non_2xx": result.non_2xx,
        "socket_errors": result.socket_errors,
    }


def run(tmp: Path, opts: Options) -> tuple[list[Row], dict[str, Any]]:
    port = free_port()
    pool = addresses(121, 3 + 3 * opts.rolls)
    folder = tmp / "manifests"
    folder.mkdir()
    raw: dict[str, Any] = {"options": opts.__dict__}
    with Procs() as procs:
        pods = Pods(port, procs)
        for address in pool[:3]:
            pods.start(address)
        write_atomic(
            folder,
            "static.yaml",
            manifest_text([ingress_class(), service("zd", target=port), _ingress("zd", HOST)]),
        )
        _slice(folder, pool[:3], port)
        write_atomic(folder, "other.yaml", _other("other.example.com"))
        ctl = procs.controller(Controller(manifests=folder, work_dir=tmp / "work"))
        ctl.start()
        wait_for(lambda: serves(ctl.http_port, HOST), timeout=20, what="zd served")
        reloads = ctl.reloads()
        raw["rolling"] = _roll(ctl, folder, pods, opts, port, list(pool[3:]))
        raw["rolling"]["reloads"] = ctl.reloads() - reloads
        raw["rolling"]["nginx_errors"] = _nginx_errors(ctl)
        time.sleep(1.1)
        raw["reloading"] = _reloads(ctl, folder, opts)
        raw["reloading"]["nginx_errors"] = _nginx_errors(ctl)[len(raw["rolling"]["nginx_errors"]) :]
    a, b = raw["rolling"], raw["reloading"]
    failed_a = a["non_2xx"] + sum(a["socket_errors"].values())
    rows = [
        Row("4 zero-downtime (a) rolling", f"{a['replaced_endpoints']} endpoints replaced one by one: requests",
            f"{a['requests']} ({a['rps']:.0f}/s), reloads {a['reloads']}"),
        Row("4 zero-downtime (a) rolling", "non-2xx / socket errors (connect, read, write, timeout)",
            f"{a['non_2xx']} / {_errors(a)}", "0 failed", failed_a == 0),
        Row("4 zero-downtime (b) reloads", f"{b['reloads']} reloads (host changes) under wrk: requests",
            f"{b['requests']} ({b['rps']:.0f}/s)"),
        Row("4 zero-downtime (b) reloads", "non-2xx responses", str(b["non_2xx"]), "0", b["non_2xx"] == 0),
        Row("4 zero-downtime (b) reloads", "socket errors (connect, read, write, timeout)", _errors(b),
            "reported"),
    ]  # fmt: skip
    return rows, raw


def _errors(figures: dict[str, Any]) -> str:
    e = figures["socket_errors"]
    return f"{sum(e.values())} ({e['connect']}, {e['read']}, {e['write']}, {e['timeout']})"
