"""Section 3: scale. Synthetic clusters of N Ingresses (one host and two Prefix paths each, one
Service with 3 endpoints each), for each N:

- translate + render time, in this process, on the same objects (median of `repeats`);
- nginx.conf size, location count and lines per location (is the config lean?);
- the real controller on a manifests folder: time to ready and its peak RSS (VmHWM);
- `nginx -t` time on the live nginx.conf;
- time from an Ingress host change to the new host serving (a reload), three times, and how
  many `nginx -t` durations that is (2 = the test plus one parse by the reload);
- nginx memory, master + workers, PSS, after those 3 reloads once the old workers are gone;
- time from an endpoint-only change to the new endpoint serving (no reload; must stay flat).

Only the probe Ingress (number 0) points at real backends; the others' endpoints are addresses
nothing listens on, which nginx never contacts. Phases that cannot fit in the section's time
budget (predicted from the measured `nginx -t` time) are skipped and reported as skipped.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    NGINX,
    Poller,
    Procs,
    Row,
    addresses,
    backend_nginx,
    children,
    fmt_ms,
    free_port,
    manifest_text,
    pss_kb,
    serves,
    status_kb,
    wait_for,
    wait_quiet_workers,
    write_atomic,
)
from bench.propagation import observe
from ingressctl.cache import Cache
from ingressctl.certs import self_signed
from ingressctl.config import GlobalOptions
from ingressctl.dataplane.paths import Paths, lua_dir
from ingressctl.dataplane.render import Renderer
from ingressctl.model import Event, EventType
from ingressctl.plan import make_plan
from ingressctl.translate import Settings, Translator
from tests.harness import Controller, backend, endpoint_slice, ingress, ingress_class, rule, service

log = logging.getLogger("bench.scale")
CPUS = os.cpu_count() or 1
PER_FILE = 500  # Ingresses (with their Service and EndpointSlice) per manifest file
TARGET_TRANSLATE = 0.5
TARGET_RSS_MB = 250
TARGET_ENDPOINT = 0.050


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...] = (1000, 5000, 10000)
    repeats: int = 3
    reloads: int = 3
    endpoint_changes: int = 3
    budget_seconds: float = 540.0  # for the whole section


def objects(n: int, probe: list[str], port: int) -> list[dict[str, Any]]:
    """Ingress i: host h<i>.scale.example, Prefix /api and /web -> Service s<i> (3 endpoints)."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        eps = probe if i == 0 else [f"127.{k}.{i // 250}.{i % 250 + 1}" for k in (1, 2, 3)]
        out += [
            service(f"s{i}", target=port),
            endpoint_slice(f"s{i}", eps, port=port),
            _ingress(i, f"h{i}.scale.example"),
        ]
    return out


def _ingress(i: int, host: str) -> dict[str, Any]:
    paths = (("/api", "Prefix", backend(f"s{i}")), ("/web", "Prefix", backend(f"s{i}")))
    return ingress(f"i{i}", rules=[rule(host, *paths)])


def translate_render(objs: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    """Cold: a fresh Translator and Renderer on the whole cluster (what a start pays). Warm: one
    Ingress's host changed after a full translation (what each change pays, with the memo)."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in [ingress_class(), *objs]:
        by_kind.setdefault(obj["kind"], []).append(obj)
    cache = Cache()
    cache.load([Event(EventType.REPLACED, kind, objects=tuple(v)) for kind, v in by_kind.items()])
    settings = Settings(
        fallback_certificate=self_signed(),
        options=GlobalOptions(http_port=18080, https_port=18443, listen_address="127.0.0.1"),
    )
    paths = Paths(work="/var/run/ingressctl", lua=str(lua_dir()))
    cold_t: list[float] = []
    cold_r: list[float] = []
    text = ""
    for _ in range(repeats):
        translator, renderer = Translator(settings), Renderer(paths=paths)
        started = time.perf_counter()
        config = translator.full(cache.snapshot())
        middle = time.perf_counter()
        text = renderer.render(config.static).text
        cold_t.append(middle - started)
        cold_r.append(time.perf_counter() - middle)
    warm: list[float] = []
    plan: list[float] = []
    for k in range(repeats):
        cache.apply(Event(EventType.MODIFIED, "Ingress", _ingress(1, f"h1-v{k}.scale.example")))
        started = time.perf_counter()
        new = translator.full(cache.snapshot())
        planned = time.perf_counter()
        make_plan(config, new)  # the controller plans every sync against what runs
        plan.append(time.perf_counter() - planned)
        renderer.render(new.static)
        warm.append(time.perf_counter() - started)
        config = new
    locations = len(re.findall(r"^\s+location ", text, re.M))
    return {
        "translate_s": statistics.median(cold_t),
        "render_s": statistics.median(cold_r),
        "translate_render_s": statistics.median(a + b for a, b in zip(cold_t, cold_r, strict=True)),
        "translate_render_change_s": statistics.median(warm),
        "plan_change_s": statistics.median(plan),
        "conf_bytes": len(text.encode()),
        "locations": locations,
        "servers": len(re.findall(r"^\s+server \{", text, re.M)),
        "lines_per_location": _lines_in_locations(text) / max(1, locations),
    }


def _lines_in_locations(text: str) -> int:
    count, inside = 0, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("location ") and stripped.endswith("{"):
            inside = True
        elif inside and stripped == "}":
            inside = False
        elif inside and stripped:
            count += 1
    return count


def write_cluster(folder: Path, objs: list[dict[str, Any]]) -> None:
    """The probe (Ingress 0) in files of its own, so changing it rewrites a small file."""
    write_atomic(folder, "class.yaml", manifest_text([ingress_class()]))
    write_atomic(folder, "probe-ingress.yaml", manifest_text([objs[2]]))
    write_atomic(folder, "probe-rest.yaml", manifest_text(objs[:1]))
    write_atomic(folder, "probe-slice.yaml", manifest_text(objs[1:2]))
    rest = objs[3:]
    for start in range(0, len(rest), 3 * PER_FILE):
        write_atomic(
            folder, f"part-{start // (3 * PER_FILE):04d}.yaml", manifest_text(rest[start : start + 3 * PER_FILE])
        )


def _logged(ctl: Controller, pattern: str, count: int) -> list[int]:
    """The last `count` integers the pattern captures in the controller's log (empty: not yet)."""
    found = [int(x) for x in re.findall(pattern, ctl.log())]
    return found[-count:] if len(found) >= count else []


def _log_time(stamp: str) -> float:
    """A logging asctime ("2026-11-29 15:14:07,473", local time) as a Unix time."""
    day, clock = stamp.split(" ")
    whole, millis = clock.split(",")
    return time.mktime(time.strptime(f"{day} {whole}", "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


def nginx_test(work: Path) -> float:
    started = time.monotonic()
    subprocess.run([NGINX, "-t", "-q", "-p", str(work), "-c", str(work / "nginx.conf")], check=True, timeout=600)
    return time.monotonic() - started


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, predicted: float) -> bool:
        return predicted < self.left()


def one_size(tmp: Path, n: int, opts: Options, budget: Budget, *, port: int, pool: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"ingresses": n}
    objs = objects(n, pool[:1], port)
    out.update(translate_render(objs, opts.repeats))
    folder = tmp / f"manifests-{n}"
    folder.mkdir()
    write_cluster(folder, objs)
    with Procs() as procs:
        # At scale the reload is its own test (one parse instead of two per host change).
        ctl = procs.controller(
            Controller(manifests=folder, work_dir=tmp / f"work-{n}", extra_args=["--skip-reload-test"])
        )
        started = time.monotonic()
        ctl.start(wait_ready=False)
        ctl.wait_ready(timeout=max(60.0, budget.left()))
        out["controller_ready_s"] = time.monotonic() - started
        wait_for(lambda: serves(ctl.http_port, "h0.scale.example", path="/api"), timeout=30, what="probe serves")
        out["nginx_t_s"] = nginx_test(ctl.work_dir)
        probe_host = "h0.scale.example"
        reload_cost = 2.5 * out["nginx_t_s"] + 1
        if budget.allows(opts.reloads * reload_cost + 10):
            changes: list[float] = []
            for k in range(1, opts.reloads + 1):
                host = f"h0-v{k}.scale.example"
                time.sleep(max(0.0, 1.05 - (time.monotonic() - started)))  # min reload interval
                changed = write_atomic(folder, "probe-ingress.yaml", manifest_text([_ingress(0, host)]))
                wait_for(
                    functools.partial(serves, ctl.http_port, host, path="/api"),
                    timeout=max(60.0, 4 * reload_cost),
                    interval=0.005,
                    what=f"{host} serves",
                )
                changes.append(time.monotonic() - changed)
                probe_host = host
                started = time.monotonic()
            out["change_to_serving_s"] = changes
            # SIGHUP -> new configuration live, as the controller logs it: one parse by the master.
            sighup = wait_for(
                lambda: _logged(ctl, r"nginx reload \d+ done in (\d+) ms", opts.reloads),
                timeout=30,
                what="reloads logged",
            )
            out["sighup_to_live_ms"] = sighup[-opts.reloads :]
            out["reload_over_nginx_t"] = statistics.median(sighup[-opts.reloads :]) / 1000 / out["nginx_t_s"]
            master = ctl.master_pid()
            out["workers_after_reloads"] = wait_quiet_workers(master, CPUS, timeout=60)
            out["nginx_pss_mb"] = pss_kb([master, *children(master)]) / 1024
        else:
            out["reloads_skipped"] = f"predicted {opts.reloads * reload_cost:.0f} s > {budget.left():.0f} s left"
        reloads = ctl.reloads()
        poller = Poller(ctl.http_port, probe_host, path="/api")
        procs.add(poller.close)
        current = {pool[0]}
        updates: list[float] = []
        written: list[float] = []  # wall-clock time of each write, to place the controller's log lines
        for k in range(opts.endpoint_changes):
            new = {pool[(k + 1) % len(pool)]}
            slice_text = manifest_text([endpoint_slice("s0", sorted(new), port=port)])
            changed = write_atomic(folder, "probe-slice.yaml", slice_text)
            written.append(time.time())
            updates.append(observe(poller, changed, current, new).latency)
            current = new
            time.sleep(0.2)
        out["endpoint_update_s"] = updates
        # The controller's own share, from its log: the sync (update + POST to the Lua API), and the
        # time from the write to "applied" (source pick-up, debounce and sync).
        pattern = r"^(\S+ \S+) INFO \S+ configuration applied \(backends only, no reload\) in (\d+) ms"
        wait_for(lambda: len(re.findall(pattern, ctl.log(), re.M)) >= opts.endpoint_changes, timeout=30, what="log")
        applied = re.findall(pattern, ctl.log(), re.M)
        out["endpoint_sync_ms"] = [int(ms) for _, ms in applied[-opts.endpoint_changes :]]
        stamps = [_log_time(at) for at, _ in applied]
        out["endpoint_write_to_applied_ms"] = [
            round((min((t for t in stamps if t >= w - 0.001), default=float("nan")) - w) * 1000, 1) for w in written
        ]
        # Its breakdown: cache snapshot + endpoint translation, and apply (diff, delta to the Lua API).
        parts = re.findall(r"endpoint-only sync: snapshot \+ translate ([\d.]+) ms, apply ([\d.]+) ms", ctl.log())
        out["endpoint_sync_translate_apply_ms"] = [[float(a), float(b)] for a, b in parts[-opts.endpoint_changes :]]
        out["endpoint_update_reloads"] = ctl.reloads() - reloads
        assert ctl.process is not None
        out["controller_peak_rss_mb"] = status_kb(ctl.process.pid, "VmHWM") / 1024
    return out


def run(tmp: Path, opts: Options) -> tuple[list[Row], dict[str, Any]]:
    budget = Budget(opts.budget_seconds)
    port = free_port()
    pool = addresses(161, 2)
    raw: dict[str, Any] = {"options": opts.__dict__, "sizes": {}}
    rows: list[Row] = []
    with Procs() as procs:
        pods = backend_nginx(pool, port, name="scale-backends").start()
        procs.add(pods.stop)
        previous: tuple[int, float] | None = None  # (size, seconds it took)
        for n in opts.sizes:
            # Predict this size's time from the previous one (it grows at least linearly).
            predicted = previous[1] * n / previous[0] if previous else 0.0
            if budget.left() < max(30.0, predicted):
                why = f"predicted {predicted:.0f} s from {previous[0] if previous else 0}, {budget.left():.0f} s left"
                raw["sizes"][str(n)] = {"skipped": why}
                rows.append(Row(f"3 scale {n}", "skipped (section time budget)", why))
                continue
            log.info("scale: %d Ingresses (%.0f s of budget left)", n, budget.left())
            started = time.monotonic()
            try:
                got = one_size(tmp, n, opts, budget, port=port, pool=pool)
            except (AssertionError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
                raw["sizes"][str(n)] = {"error": f"{type(exc).__name__}: {exc}"}
                rows.append(Row(f"3 scale {n}", "failed", f"{type(exc).__name__}: {exc}"[:160], ok=False))
                break
            previous = (n, time.monotonic() - started)
            got["seconds"] = previous[1]
            raw["sizes"][str(n)] = got
            rows += _rows(n, got, last=n == max(opts.sizes))
    return rows, raw


def _rows(n: int, s: dict[str, Any], *, last: bool) -> list[Row]:
    section = f"3 scale {n}"
    tr = s["translate_render_s"]
    warm = s["translate_render_change_s"]
    rss = s["controller_peak_rss_mb"]
    ep = max(s["endpoint_update_s"])
    rows = [
        Row(section, "translate + render, cold start (translate / render)",
            f"{tr:.3f} s ({s['translate_s']:.3f} / {s['render_s']:.3f})"),
        Row(section, "translate + plan + render after one Ingress change (memo warm; plan)",
            f"{warm:.3f} s ({s['plan_change_s'] * 1000:.1f} ms)",
            f"< {TARGET_TRANSLATE} s" if last else "", warm < TARGET_TRANSLATE if last else None),
        Row(section, "nginx.conf size / servers / locations / lines per location",
            f"{s['conf_bytes'] / 1e6:.1f} MB / {s['servers']} / {s['locations']} / {s['lines_per_location']:.1f}"),
        Row(section, "controller start -> ready / peak RSS", f"{s['controller_ready_s']:.1f} s / {rss:.0f} MB",
            f"RSS < {TARGET_RSS_MB} MB" if last else "", rss < TARGET_RSS_MB if last else None),
        Row(section, "nginx -t", f"{s['nginx_t_s']:.2f} s"),
    ]  # fmt: skip
    if "change_to_serving_s" in s:
        changes = s["change_to_serving_s"]
        rows += [
            Row(section, "host change -> serving (3 reloads: min / median / max)",
                f"{min(changes):.2f} / {statistics.median(changes):.2f} / {max(changes):.2f} s"),
            Row(section, "reload (SIGHUP -> live) in nginx -t durations", f"{s['reload_over_nginx_t']:.2f}",
                "~1 parse, not 2" if last else "", s["reload_over_nginx_t"] < 1.5 if last else None),
            Row(section, "nginx PSS after 3 reloads (master + workers)",
                f"{s['nginx_pss_mb']:.0f} MB ({s['workers_after_reloads']} workers)"),
        ]  # fmt: skip
    else:
        rows.append(Row(section, "reload phases", f"skipped: {s['reloads_skipped']}"))
    rows.append(
        Row(section, "endpoint-only change, controller log: write -> applied / sync alone",
            " / ".join(f"{x:.0f}" for x in s["endpoint_write_to_applied_ms"]) + " ms / "
            + " / ".join(f"{x}" for x in s["endpoint_sync_ms"]) + " ms")
    )  # fmt: skip
    if s.get("endpoint_sync_translate_apply_ms"):
        rows.append(
            Row(section, "endpoint-only sync: snapshot + translate / apply (delta to the Lua API)",
                " , ".join(f"{a:.1f} / {b:.1f}" for a, b in s["endpoint_sync_translate_apply_ms"]) + " ms")
        )  # fmt: skip
    rows.append(
        Row(section, f"endpoint-only change -> served (max of {len(s['endpoint_update_s'])}), reloads",
            f"{fmt_ms(ep)}, {s['endpoint_update_reloads']} reloads", f"< {fmt_ms(TARGET_ENDPOINT)}, 0 reloads",
            ep < TARGET_ENDPOINT and s["endpoint_update_reloads"] == 0)
    )  # fmt: skip
    return rows
