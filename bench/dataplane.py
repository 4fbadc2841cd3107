"""Section 1: the data-plane cost of the Lua balancer.

wrk through nginx as ingressctl renders it (the real controller, Lua balancer, 3 backends on
127.0.0.x with upstream keepalive) against a hand-written baseline nginx.conf with a static
`upstream` block to the same backends (bench/baseline.nginx.conf), same worker count. Runs
alternate A/B (the order flips every repeat) and are repeated; we report medians of requests/s
and of nginx worker CPU per request (utime+stime of the worker PIDs from /proc), and the median of
the paired CPU ratios. Once with the access log off in both, once with it on in both (ingressctl's
default).

A third variant runs in the same rotation, for reference: the floor. It is the baseline config with
its static servers replaced by the smallest possible `balancer_by_lua` (round robin over the same
backends from a Lua table, `set_current_peer`, nothing else). Its ratio to the baseline is what the
Lua balancer phase alone costs on this nginx and Lua module build, whatever a balancer does in it.

The other balancing algorithms run in the same rotation, on the same controller's nginx, each on a
host of its own whose Service has the same 3 backends: `load-balance: ewma` (its routes also run the
log phase that feeds it), `upstream-hash-by: $request_uri`, `affinity: cookie` with wrk sending one
session's cookie (the steady state of a sticky session: read the cookie, look its key up on the ring),
and `canary`: a round robin route with a canary Ingress of weight 50 in front of it (its own Service,
the same backends), so each request also makes the canary choice (ingressctl.canary).
Their CPU/request is reported next to round robin's (paired per repeat) and the baseline's; for
reference, ingress-nginx's ewma measured about 1.54x the static upstream on this machine.

The per-route request metrics (issue 14; the ConfigMap's enable-metrics, on by default) are measured
in the same rotation: "ingressctl" runs with them off (the balancer's cost, comparable with earlier
results), "metrics" is a second controller with the same configuration and them on; the paired ratio
metrics / ingressctl is their cost.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    CLK_TCK,
    NginxProcess,
    Poller,
    Procs,
    Row,
    addresses,
    backend_nginx,
    cpu_ticks,
    free_port,
    manifest_text,
    median,
    pin,
    run_wrk,
    wait_for,
    write_atomic,
)
from tests.harness import Controller, backend, endpoint_slice, ingress, ingress_class, rule, service

log = logging.getLogger("bench.dataplane")
HOST = "bench.example.com"
TARGET_RATIO = 1.05
TARGET_METRICS_RATIO = 1.05  # metrics on / off, CPU per request
INGRESS_NGINX_EWMA = 1.54  # ingress-nginx's ewma over a static upstream, measured here (issue 13)


@dataclass(frozen=True)
class Variant:
    """A balancing variant: the annotations of its Ingress, the extra request headers wrk sends, and
    for a canary the annotations of a canary Ingress in front of it (its own Service, same backends)."""

    annotations: dict[str, str]
    headers: tuple[str, ...] = ()
    canary: dict[str, str] | None = None


ALGORITHMS: dict[str, Variant] = {
    "ewma": Variant({"load-balance": "ewma"}),
    "hash": Variant({"upstream-hash-by": "$request_uri"}),
    "affinity": Variant({"affinity": "cookie"}, ("Cookie: INGRESSCOOKIE=0123456789abcdef",)),
    "canary": Variant({}, canary={"canary": "true", "canary-weight": "50"}),
}
CPUS = os.cpu_count() or 1  # worker_processes auto, in both configurations
MEASURED_CPUS = {CPUS - 1}
LOAD_CPUS = set(range(CPUS - 1)) or {0}


@dataclass(frozen=True)
class Options:
    seconds: float = 4.0
    repeats: int = 5
    connections: int = 32
    warmup: float = 2.0
    access_log: tuple[bool, ...] = (False, True)  # the modes to measure
    # For experiments: e.g. INGRESSCTL_LUA_DIR / INGRESSCTL_TEMPLATES_DIR to try a variant.
    controller_env: tuple[tuple[str, str], ...] = ()
    # Pin the measured nginx workers to the last CPU, wrk and the backends to the others (on 2
    # cores: one core each), so nginx runs saturated on its own core. Off by default (the
    # published table is unpinned); pinned runs gave higher ratios with no smaller spread here.
    pin: bool = False
    algorithms: tuple[str, ...] = tuple(ALGORITHMS)  # the balancing variants measured beside round robin


@dataclass(frozen=True)
class Run:
    variant: str
    rps: float
    cpu_us_per_request: float
    requests: int
    failures: int


def _host(variant: str) -> str:
    return f"{variant}.{HOST}" if variant in ALGORITHMS else HOST


def _measure(variant: str, port: int, workers: Callable[[], list[int]], opts: Options, seconds: float) -> Run:
    pids = workers()
    if opts.pin:
        pin(pids, MEASURED_CPUS)
    before = cpu_ticks(pids)
    result = run_wrk(
        f"http://127.0.0.1:{port}/",
        host=_host(variant),
        seconds=seconds,
        connections=opts.connections,
        cpus=LOAD_CPUS if opts.pin else None,
        headers=ALGORITHMS[variant].headers if variant in ALGORITHMS else (),
    )
    after = cpu_ticks(pids)
    if workers() != pids:
        raise RuntimeError(f"{variant}: nginx workers changed during the run (a reload?)")
    cpu_us = (after - before) / CLK_TCK * 1e6
    return Run(
        variant=variant,
        rps=result.rps,
        cpu_us_per_request=cpu_us / max(1, result.requests),
        requests=result.requests,
        failures=result.non_2xx_3xx + result.errors,
    )


def baseline_conf(backends: list[str], port: int, http_port: int, *, access_log: bool) -> str:
    text = (Path(__file__).parent / "baseline.nginx.conf").read_text()
    servers = "\n".join(f"        server {a}:{port};" for a in backends)
    log_line = "access_log @DIR@/access.log baseline buffer=32k flush=1s;" if access_log else "access_log off;"
    return text.replace("@SERVERS@", servers).replace("@HTTP_PORT@", str(http_port)).replace("@ACCESS_LOG@", log_line)


# The floor: load the Lua module, make the peer list in init_worker, pick in balancer_by_lua.
FLOOR_MODULES = """load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
"""
FLOOR_INIT = """    init_worker_by_lua_block {
        local set_current_peer = require("ngx.balancer").set_current_peer
        local peers, i = { @PEERS@ }, 0
        package.loaded.bench_floor = function()
            i = i % #peers + 1
            local peer = peers[i]
            return set_current_peer(peer[1], peer[2])
        end
    }
"""
FLOOR_UPSTREAM = """        server 0.0.0.1:1;
        balancer_by_lua_block {
            package.loaded.bench_floor()
        }"""


def floor_conf(backends: list[str], port: int, http_port: int, *, access_log: bool) -> str:
    """baseline_conf with a minimal balancer_by_lua instead of the static servers."""
    text = baseline_conf(backends, port, http_port, access_log=access_log)
    servers = "\n".join(f"        server {a}:{port};" for a in backends)
    peers = ", ".join(f'{{ "{a}", {port} }}' for a in backends)
    text = text.replace(servers, FLOOR_UPSTREAM)
    text = text.replace("http {\n", "http {\n" + FLOOR_INIT.replace("@PEERS@", peers), 1)
    return FLOOR_MODULES + text


def _manifests(
    folder: Path,
    backends: list[str],
    port: int,
    *,
    access_log: bool,
    metrics: bool = False,
    algorithms: tuple[str, ...] = (),
) -> None:
    docs: list[dict[str, Any]] = [
        ingress_class(),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ingressctl", "namespace": "default"},
            "data": {
                "enable-access-log": "true" if access_log else "false",
                "enable-metrics": "true" if metrics else "false",
            },
        },
        service("bench", target=port),
        endpoint_slice("bench", backends, port=port),
        ingress("bench", rules=[rule(HOST, ("/", "Prefix", backend("bench")))]),
    ]
    for name in algorithms:  # a Service each: balancing is decided per backend
        variant = ALGORITHMS[name]
        services = [f"bench-{name}"] + ([f"bench-{name}-canary"] if variant.canary is not None else [])
        for svc, notes in zip(services, (variant.annotations, variant.canary or {}), strict=False):
            docs += [
                service(svc, target=port),
                endpoint_slice(svc, backends, port=port),
                ingress(
                    svc,
                    rules=[rule(_host(name), ("/", "Prefix", backend(svc)))],
                    annotations={f"nginx.ingress.kubernetes.io/{k}": v for k, v in notes.items()},
                ),
            ]
    write_atomic(folder, "bench.yaml", manifest_text(docs))


def _new_workers(ctl: Controller, old: set[int]) -> bool:
    """nginx runs a full set of workers, none of them from before the reload."""
    workers = set(ctl.worker_pids())
    return len(workers) == CPUS and not old & workers


def _spread(port: int, expected: set[str], host: str = HOST) -> bool:
    """Round robin answers from every backend; another algorithm (host) answers from any of them."""
    poller = Poller(port, host)
    try:
        answers = {poller.get()[1] for _ in range(4 * len(expected))}
        return answers == expected if host == HOST else bool(answers) and answers <= expected
    finally:
        poller.close()


def run(tmp: Path, opts: Options) -> tuple[list[Row], dict[str, Any]]:
    backend_port = free_port()
    backends = addresses(101, 3)
    raw: dict[str, Any] = {"options": opts.__dict__, "backends": backends, "modes": {}}
    rows: list[Row] = []
    with Procs() as procs:
        pods = backend_nginx(backends, backend_port, name="dp-backends").start()
        procs.add(pods.stop)
        if opts.pin:
            pin([pods.pid, *pods.worker_pids()], LOAD_CPUS)
        current = opts.access_log[0]
        # Two controllers, the same configuration but for enable-metrics: off ("ingressctl", which
        # also serves the balancing variants' hosts) and on ("metrics": round robin only).
        controllers: dict[str, Controller] = {}
        for name, metrics in (("ingressctl", False), ("metrics", True)):
            folder = tmp / f"manifests-{name}"
            folder.mkdir()
            algorithms = () if metrics else opts.algorithms
            _manifests(folder, backends, backend_port, access_log=current, metrics=metrics, algorithms=algorithms)
            controllers[name] = procs.controller(
                Controller(
                    manifests=folder,
                    work_dir=tmp / f"work-{name}",
                    extra_args=["--configmap", "default/ingressctl"],
                    env=dict(opts.controller_env),
                )
            )
            controllers[name].start()
        ctl, with_metrics = controllers["ingressctl"], controllers["metrics"]
        for access_log in opts.access_log:
            mode = "access log on" if access_log else "access log off"
            if access_log != current:
                for c in controllers.values():
                    old = set(c.worker_pids())
                    assert c.manifests is not None
                    metrics = c is with_metrics
                    _manifests(
                        c.manifests,
                        backends,
                        backend_port,
                        access_log=access_log,
                        metrics=metrics,
                        algorithms=() if metrics else opts.algorithms,
                    )
                    wait_for(
                        functools.partial(_new_workers, c, old),
                        timeout=30,
                        what=f"reload with the {mode}, old workers gone",
                    )
                current = access_log
            http_port = free_port()
            base = NginxProcess(
                baseline_conf(backends, backend_port, http_port, access_log=access_log), name="baseline"
            )
            base.start()
            procs.add(base.stop)
            floor_port = free_port()
            floor = NginxProcess(floor_conf(backends, backend_port, floor_port, access_log=access_log), name="floor")
            floor.start()
            procs.add(floor.stop)
            served = [("ingressctl", ctl.http_port), ("baseline", http_port), ("floor", floor_port)]
            served += [("metrics", with_metrics.http_port), *((name, ctl.http_port) for name in opts.algorithms)]
            if "canary" in opts.algorithms:  # the canary route is live (not a plain round robin route)
                wait_for(
                    lambda: "~default/bench-canary-canary" in (ctl.work_dir / "nginx.conf").read_text(),
                    timeout=15,
                    what="the canary route in nginx.conf",
                )
            for name, port in served:
                wait_for(
                    functools.partial(_spread, port, set(backends), _host(name)),
                    timeout=15,
                    what=f"{name} spreads over 3 backends",
                )
            variants: dict[str, tuple[int, Callable[[], list[int]]]] = {
                "ingressctl": (ctl.http_port, ctl.worker_pids),
                "baseline": (http_port, base.worker_pids),
                "floor": (floor_port, floor.worker_pids),
                "metrics": (with_metrics.http_port, with_metrics.worker_pids),
                **{name: (ctl.http_port, ctl.worker_pids) for name in opts.algorithms},
            }
            if len(ctl.worker_pids()) != len(base.worker_pids()):
                raise RuntimeError(f"worker counts differ: {ctl.worker_pids()} vs {base.worker_pids()}")
            for name, (port, workers) in variants.items():
                _measure(name, port, workers, opts, opts.warmup)  # warm-up, not recorded
            runs: list[Run] = []
            pairs: list[float] = []
            floor_pairs: list[float] = []
            metrics_pairs: list[float] = []
            # algorithm -> paired ratios to round robin (ingressctl) and to the baseline
            algorithm_pairs: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in opts.algorithms}
            names = list(variants)
            for i in range(opts.repeats):
                order = names[i % len(names) :] + names[: i % len(names)]  # each goes first in turn
                if i % 2:
                    order.reverse()
                got = {name: _measure(name, *variants[name], opts, opts.seconds) for name in order}
                runs += [got[name] for name in order]
                base_us = got["baseline"].cpu_us_per_request
                pairs.append(got["ingressctl"].cpu_us_per_request / base_us)
                floor_pairs.append(got["floor"].cpu_us_per_request / base_us)
                metrics_pairs.append(got["metrics"].cpu_us_per_request / got["ingressctl"].cpu_us_per_request)
                for name, (to_rr, to_base) in algorithm_pairs.items():
                    to_rr.append(got[name].cpu_us_per_request / got["ingressctl"].cpu_us_per_request)
                    to_base.append(got[name].cpu_us_per_request / base_us)
            base.stop()
            floor.stop()
            summary = _summary(runs, pairs, floor_pairs, metrics_pairs)
            summary["algorithms"] = {
                name: {
                    "cpu_us": median([r.cpu_us_per_request for r in runs if r.variant == name]),
                    "rps": median([r.rps for r in runs if r.variant == name]),
                    "to_round_robin_paired_median": median(to_rr),
                    "to_round_robin": to_rr,
                    "to_baseline_paired_median": median(to_base),
                    "to_baseline": to_base,
                }
                for name, (to_rr, to_base) in algorithm_pairs.items()
            }
            raw["modes"][mode] = {"runs": [r.__dict__ for r in runs], **summary}
            rows += _rows(mode, summary)
    return rows, raw


def _summary(
    runs: list[Run], pairs: list[float], floor_pairs: list[float], metrics_pairs: list[float]
) -> dict[str, Any]:
    def med(variant: str, attr: str) -> float:
        return median([getattr(r, attr) for r in runs if r.variant == variant])

    return {
        "ingressctl_rps": med("ingressctl", "rps"),
        "baseline_rps": med("baseline", "rps"),
        "ingressctl_cpu_us": med("ingressctl", "cpu_us_per_request"),
        "baseline_cpu_us": med("baseline", "cpu_us_per_request"),
        "cpu_ratio_paired_median": median(pairs),
        "cpu_ratios": pairs,
        "floor_cpu_us": med("floor", "cpu_us_per_request"),
        "floor_ratio_paired_median": median(floor_pairs),
        "floor_ratios": floor_pairs,
        "metrics_rps": med("metrics", "rps"),
        "metrics_cpu_us": med("metrics", "cpu_us_per_request"),
        "metrics_ratio_paired_median": median(metrics_pairs),
        "metrics_ratios": metrics_pairs,
        "failures": sum(r.failures for r in runs),
    }


def _rows(mode: str, s: dict[str, Any]) -> list[Row]:
    section = f"1 data plane ({mode})"
    ratio = s["cpu_ratio_paired_median"]
    metrics = s["metrics_ratio_paired_median"]
    return [
        Row(
            section,
            "requests/s ingressctl (metrics off) / baseline (median)",
            f"{s['ingressctl_rps']:.0f} / {s['baseline_rps']:.0f}",
        ),
        Row(
            section,
            "worker CPU µs/request ingressctl (metrics off) / baseline (median)",
            f"{s['ingressctl_cpu_us']:.1f} / {s['baseline_cpu_us']:.1f}",
        ),
        Row(
            section,
            "CPU/request ratio (median of paired runs)",
            f"{ratio:.3f}x (runs {min(s['cpu_ratios']):.2f}-{max(s['cpu_ratios']):.2f})",
            f"<= {TARGET_RATIO}x",
            ratio <= TARGET_RATIO,
        ),
        Row(
            section,
            "floor: minimal balancer_by_lua / baseline (CPU, paired median)",
            f"{s['floor_ratio_paired_median']:.3f}x (runs {min(s['floor_ratios']):.2f}-{max(s['floor_ratios']):.2f})",
        ),
        Row(
            section,
            "metrics on / off: requests/s, worker CPU µs/request (medians)",
            f"{s['metrics_rps']:.0f} / {s['ingressctl_rps']:.0f}, "
            f"{s['metrics_cpu_us']:.1f} / {s['ingressctl_cpu_us']:.1f}",
        ),
        Row(
            section,
            "metrics on / off: CPU/request ratio (median of paired runs)",
            f"{metrics:.3f}x (runs {min(s['metrics_ratios']):.2f}-{max(s['metrics_ratios']):.2f})",
            f"<= {TARGET_METRICS_RATIO}x",
            metrics <= TARGET_METRICS_RATIO,
        ),
        *_algorithm_rows(section, s.get("algorithms", {})),
        Row(section, "failed requests (non-2xx/3xx + socket errors)", str(s["failures"]), "0", s["failures"] == 0),
    ]


def _algorithm_rows(section: str, algorithms: dict[str, Any]) -> list[Row]:
    rows = []
    for name, a in algorithms.items():
        rows.append(
            Row(
                section,
                f"{name}: CPU µs/request; / round robin, / baseline (paired medians)",
                f"{a['cpu_us']:.1f}; {a['to_round_robin_paired_median']:.3f}x, {a['to_baseline_paired_median']:.3f}x "
                f"(runs {min(a['to_baseline']):.2f}-{max(a['to_baseline']):.2f})",
                f"< {INGRESS_NGINX_EWMA}x baseline (ingress-nginx's ewma)",
                a["to_baseline_paired_median"] < INGRESS_NGINX_EWMA,
            )
        )
    return rows
