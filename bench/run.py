"""`make bench`: runs the benchmark sections of issue 5, prints one table and writes the raw figures
to bench/results/latest.json.

    python bench/run.py            # everything (well under 15 minutes on 2 cores)
    python bench/run.py --quick    # a short smoke run of every section
    python bench/run.py --only 1,3 # selected sections

    python bench/run.py --only 6 --soak-minutes 30   # a longer soak (minutes per source)

Sections: 1 data-plane cost, 2 endpoint propagation, 3 scale, 4 zero-downtime, 5 coalescing,
6 soak under endpoint churn. Every process a section starts is stopped by PID when it ends (also
on Ctrl-C or SIGTERM). With --only, the other sections' figures already in the output file stay.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import Row, tempdir  # noqa: E402

log = logging.getLogger("bench")
Section = Callable[[Path, bool], tuple[list[Row], dict[str, Any]]]
# Section 6's churn per source, in minutes (--soak-minutes sets it too); the default keeps `make bench` short.
SOAK_MINUTES_ENV = "INGRESSCTL_SOAK_MINUTES"


def section_1(tmp: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench import dataplane

    opts = dataplane.Options(seconds=1, repeats=2, warmup=1) if quick else dataplane.Options()
    return dataplane.run(tmp, opts)


def section_2(tmp: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench import propagation

    opts = propagation.Options(changes=10, burst=5) if quick else propagation.Options()
    return propagation.run(tmp, opts)


def section_3(tmp: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench import scale

    opts = scale.Options(sizes=(50, 200), repeats=1) if quick else scale.Options()
    return scale.run(tmp, opts)


def section_4(tmp: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench import downtime

    opts = downtime.Options(rolls=1, reloads=3) if quick else downtime.Options()
    return downtime.run(tmp, opts)


def section_5(tmp: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench import coalesce

    opts = coalesce.Options(changes=200) if quick else coalesce.Options()
    return coalesce.run(tmp, opts)


def section_6(tmp: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench import soak

    minutes = os.environ.get(SOAK_MINUTES_ENV)
    if minutes:
        opts = soak.Options(seconds=float(minutes) * 60)
    else:
        opts = soak.Options(seconds=15) if quick else soak.Options()
    return soak.run(tmp, opts)


SECTIONS: dict[int, tuple[str, Section]] = {
    1: ("data-plane cost", section_1),
    2: ("endpoint propagation", section_2),
    3: ("scale", section_3),
    4: ("zero-downtime", section_4),
    5: ("coalescing", section_5),
    6: ("soak under endpoint churn", section_6),
}


def table(rows: list[Row]) -> str:
    header = ("section", "metric", "value", "target", "")
    cells = [header, *((r.section, r.metric, r.value, r.target, r.verdict()) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c[i].ljust(widths[i]) for i in range(len(header))) + " |" for c in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(), "nginx": nginx, "commit": commit}


def _merged(path: Path, results: dict[str, Any], chosen: list[int]) -> dict[str, Any]:
    """A run of some sections replaces just their figures in the file: the others' stay, with the
    date and commit they were measured at (per section, under "measured")."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return results
    if not isinstance(old, dict) or not isinstance(old.get("sections"), dict):
        return results
    stamp = {"date": results["date"], "commit": results["machine"]["commit"], "quick": results["quick"]}
    before = {"date": old.get("date"), "commit": (old.get("machine") or {}).get("commit"), "quick": old.get("quick")}
    measured = {k: old.get("measured", {}).get(k, before) for k in old["sections"]}
    sections = {**old["sections"], **results["sections"]}
    measured.update(dict.fromkeys(results["sections"], stamp))

    def number(row: dict[str, Any]) -> int:
        head = str(row.get("section", "")).split(" ", 1)[0]
        return int(head) if head.isdigit() else 0

    kept = [r for r in old.get("rows", []) if number(r) not in chosen]
    rows = sorted([*kept, *results["rows"]], key=number)  # stable: each section's rows keep their order
    return {**results, "sections": dict(sorted(sections.items())), "measured": measured, "rows": rows}


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (small sizes, 1 s wrk runs)")
    parser.add_argument("--only", default="", help="comma-separated section numbers (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json", help="JSON output")
    parser.add_argument(
        "--soak-minutes", type=float, help=f"section 6: minutes of churn per source (env {SOAK_MINUTES_ENV})"
    )
    args = parser.parse_args(argv)
    if args.soak_minutes is not None:
        if args.soak_minutes <= 0:
            parser.error("--soak-minutes must be positive")
        os.environ[SOAK_MINUTES_ENV] = str(args.soak_minutes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the fake API server's request log
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # also when started with SIGINT ignored (a background job)
    chosen = sorted({int(x) for x in args.only.split(",") if x.strip()}) or sorted(SECTIONS)
    unknown = [n for n in chosen if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {sorted(SECTIONS)}")
    started = time.monotonic()
    rows: list[Row] = []
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "quick": args.quick,
        "sections": {},
    }
    failed = False
    for number in chosen:
        title, fn = SECTIONS[number]
        log.info("section %d: %s", number, title)
        section_started = time.monotonic()
        try:
            with tempdir(f"s{number}") as tmp:
                got, raw = fn(tmp, args.quick)
        except KeyboardInterrupt:
            log.error("interrupted; every process started so far has been stopped")
            return 130
        except Exception as exc:
            failed = True
            log.error("section %d failed: %s", number, exc)
            got = [Row(f"{number} {title}", "section failed", f"{type(exc).__name__}: {exc}"[:160], ok=False)]
            raw = {"error": traceback.format_exc()}
        raw["seconds"] = round(time.monotonic() - section_started, 1)
        results["sections"][str(number)] = raw
        rows += got
        log.info("section %d done in %.0f s", number, raw["seconds"])
    results["runtime_seconds"] = round(time.monotonic() - started, 1)
    results["rows"] = [r.__dict__ for r in rows]
    if args.only:
        results = _merged(args.out, results, chosen)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp_out, args.out)
    m = results["machine"]
    kind = "quick run" if args.quick else "full run"
    print(f"\ningressctl bench, {results['date']}, {m['cpus']} cores ({m['cpu_model']}), {m['nginx']}")
    print(f"commit {m['commit']}; {kind} in {results['runtime_seconds']:.0f} s; raw figures in {args.out}\n")
    print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
