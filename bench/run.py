"""`make bench`: runs the benchmark sections of issue 5, prints one table and writes the raw figures
to bench/results/latest.json.

    python bench/run.py            # everything (well under 15 minutes on 2 cores)
    python bench/run.py --quick    # a short smoke run of every section
    python bench/run.py --only 1,3 # selected sections
    python bench/run.py --stack host  # the host's nginx packages only
    python bench/run.py --only 6 --soak-minutes 30   # a longer soak (minutes per source)

Sections: 1 data-plane cost, 2 endpoint propagation, 3 scale, 4 zero-downtime, 5 coalescing,
6 soak under endpoint churn, 7 TLS handshakes (certificates from the Lua store vs files). Every
process a section starts is stopped by PID when it ends (also on Ctrl-C or SIGTERM). With --only,
the other sections' figures already in the output file stay.
Stacks (bench/stack.py): every section runs on the host's nginx packages; sections 1, 3 and 7 run again
on the image's (build/rootfs, `make rootfs`: Debian 13), in a child process, side by side.
"""

from __future__ import annotations

import argparse
import contextlib
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

from bench import common, stack  # noqa: E402
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


def section_7(tmp: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench import handshakes

    opts = handshakes.Options(seconds=1, repeats=2, warmup=1) if quick else handshakes.Options()
    return handshakes.run(tmp, opts)


SECTIONS: dict[int, tuple[str, Section]] = {
    1: ("data-plane cost", section_1),
    2: ("endpoint propagation", section_2),
    3: ("scale", section_3),
    4: ("zero-downtime", section_4),
    5: ("coalescing", section_5),
    6: ("soak under endpoint churn", section_6),
    7: ("TLS handshakes", section_7),
}


def table(rows: list[Row]) -> str:
    header = ("section", "metric", "value", "target", "")
    cells = [header, *((r.section, r.metric, r.value, r.target, r.verdict()) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c[i].ljust(widths[i]) for i in range(len(header))) + " |" for c in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


IMAGE_SECTIONS = (1, 3, 7)  # the ones whose figures depend on the nginx stack
IMAGE_LABEL = "[image] "  # prefix of the image stack's rows


def machine() -> dict[str, Any]:
    nginx = subprocess.run([common.NGINX, "-v"], capture_output=True, text=True).stderr.strip()
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


def _image_run(args: argparse.Namespace, sections: list[int]) -> dict[str, Any]:
    """The image stack's sections, in a child process (the sections bind the nginx path on import)."""
    log.info("image stack (build/rootfs): sections %s", sections)
    with tempdir("image-results") as tmp:
        out = tmp / "image.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--stack", "image", "--out", str(out)]
        command += ["--only", ",".join(map(str, sections)), *(["--quick"] if args.quick else [])]
        child = subprocess.Popen(command)
        try:
            code = child.wait()
        finally:
            if child.poll() is None:  # interrupted: the child stops its own processes on SIGTERM
                child.terminate()
                child.wait()
        image: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"error": "no results"}
    image["exit_code"] = code
    return image


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
        """Section number; the image stack's rows ("[image] 3 scale ...", "[image] targets") after the host's."""
        section = str(row.get("section", ""))
        image = section.startswith(IMAGE_LABEL)
        head = section.removeprefix(IMAGE_LABEL).split(" ", 1)[0]
        return (100 if image else 0) + (int(head) if head.isdigit() else 99 if image else 0)

    def rerun(row: dict[str, Any]) -> bool:
        if str(row.get("section", "")).startswith(IMAGE_LABEL):
            return "stacks" in results  # the image stack ran again: all of its rows are new
        return number(row) in chosen

    kept = [r for r in old.get("rows", []) if not rerun(r)]
    rows = sorted([*kept, *results["rows"]], key=number)  # stable: each section's rows keep their order
    stacks = results.get("stacks", old.get("stacks"))
    merged = {**results, "sections": dict(sorted(sections.items())), "measured": measured, "rows": rows}
    return {**merged, "stacks": stacks} if stacks else merged


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
    parser.add_argument(
        "--stack",
        choices=("both", "host", "image"),
        default="both",
        help="host packages, the image's (build/rootfs), or both (default; image only where it can run)",
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
    with contextlib.ExitStack() as scratch:
        if args.stack == "image":
            why = stack.available()
            if why:
                parser.error(f"the image stack cannot run: {why}")
            wrapper_dir = scratch.enter_context(tempdir("stack"))
            os.environ.update(stack.image_environment(wrapper_dir))
            common.NGINX = os.environ["INGRESSCTL_NGINX_BINARY"]  # before any section imports it
            chosen = [n for n in chosen if n in IMAGE_SECTIONS]
        return _run(args, chosen)


def _run(args: argparse.Namespace, chosen: list[int]) -> int:
    started = time.monotonic()
    rows: list[Row] = []
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "quick": args.quick,
        "stack": "image" if args.stack == "image" else "host",
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
    image_sections = [n for n in chosen if n in IMAGE_SECTIONS]
    if args.stack == "both" and image_sections:
        why = stack.available()
        if why:
            log.warning("image stack not measured: %s", why)
            results["stacks"] = {"image": {"skipped": why}}
        else:
            image = _image_run(args, image_sections)
            results["stacks"] = {"image": image}
            failed = failed or image.get("exit_code", 1) != 0
            rows += [
                Row(f"{IMAGE_LABEL}{r['section']}", r["metric"], r["value"], r["target"], r["ok"])
                for r in image.get("rows", [])
            ]
    elif args.stack == "image":
        rows += stack.target_rows(results["sections"])
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
