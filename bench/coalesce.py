"""Section 5: coalescing. CHANGES Ingress changes (each a new Ingress with its own host, one manifest
file each) written within one second; we count the nginx reloads they cause (target: at most 2)
and the time until the final state serves (the last host, and a sample of the others).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    Procs,
    Row,
    addresses,
    backend_nginx,
    free_port,
    manifest_text,
    serves,
    wait_for,
    write_atomic,
)
from tests.harness import Controller, backend, endpoint_slice, ingress, ingress_class, rule, service

log = logging.getLogger("bench.coalesce")
TARGET_RELOADS = 2


@dataclass(frozen=True)
class Options:
    changes: int = 1000
    seconds: float = 1.0
    sample: int = 20
    quiet: float = 2.0  # after the final state serves: time for any late reload to show up


def run(tmp: Path, opts: Options) -> tuple[list[Row], dict[str, Any]]:
    port = free_port()
    (pod,) = addresses(151, 1)
    folder = tmp / "manifests"
    folder.mkdir()
    texts = [
        manifest_text([ingress(f"c{i}", rules=[rule(f"c{i}.example.com", ("/", "Prefix", backend("co")))])])
        for i in range(opts.changes)
    ]
    with Procs() as procs:
        pods = backend_nginx([pod], port, name="co-backend").start()
        procs.add(pods.stop)
        write_atomic(
            folder,
            "static.yaml",
            manifest_text(
                [
                    ingress_class(),
                    service("co", target=port),
                    endpoint_slice("co", [pod], port=port),
                    ingress("probe", rules=[rule("probe.example.com", ("/", "Prefix", backend("co")))]),
                ]
            ),
        )
        ctl = procs.controller(Controller(manifests=folder, work_dir=tmp / "work"))
        ctl.start()
        wait_for(lambda: serves(ctl.http_port, "probe.example.com", expect=pod), timeout=20, what="probe served")
        time.sleep(1.1)  # past the minimum reload interval, so the burst starts from a quiet controller
        reloads = ctl.reloads()
        started = time.monotonic()
        last = started
        for i, text in enumerate(texts):
            if i:  # evenly spread over 95% of the second; no pause after the last write
                time.sleep(max(0.0, started + i * opts.seconds * 0.95 / opts.changes - time.monotonic()))
            last = write_atomic(folder, f"c{i}.yaml", text)
        span = last - started
        last_host = f"c{opts.changes - 1}.example.com"
        wait_for(lambda: serves(ctl.http_port, last_host, expect=pod), timeout=300, interval=0.01, what=last_host)
        sample = random.Random(1).sample(range(opts.changes), min(opts.sample, opts.changes))
        wait_for(
            lambda: all(serves(ctl.http_port, f"c{i}.example.com", expect=pod) for i in sample),
            timeout=60,
            interval=0.01,
            what="sampled hosts",
        )
        final = time.monotonic()
        time.sleep(opts.quiet)
        count = ctl.reloads() - reloads
        applied = [line for line in ctl.log().splitlines() if "configuration applied" in line or "nginx reload" in line]
    raw = {
        "options": opts.__dict__,
        "changes": opts.changes,
        "write_span_s": span,
        "reloads": count,
        "first_change_to_final_s": final - started,
        "last_change_to_final_s": final - last,
        "controller_log": applied[-8:],
    }
    section = "5 coalescing"
    rows = [
        Row(section, f"{opts.changes} Ingress changes written within {span:.2f} s: nginx reloads", str(count),
            f"<= {TARGET_RELOADS}", count <= TARGET_RELOADS),
        Row(section, "first change -> final state serves / last change -> final state",
            f"{final - started:.2f} s / {final - last:.2f} s"),
    ]  # fmt: skip
    return rows, raw
