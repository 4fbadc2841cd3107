"""Smoke test of the benchmark (bench/): every section's building blocks in a tiny configuration,
asserting that the figures are sane (not that the targets are met). Runs in well under a minute."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import coalesce, dataplane, downtime, handshakes, propagation, scale
from bench.common import parse_wrk, percentile
from bench.run import table

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:8080/
  1 threads and 32 connections
  12000 requests in 1.00s, 1.75MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  11990.12
Transfer/sec:      1.75MB
status 200 11993
status 502 7
"""


def test_parsers_and_statistics() -> None:
    r = parse_wrk(WRK_OUTPUT)
    assert (r.requests, r.seconds, r.rps) == (12000, 1.0, 11990.12)
    assert r.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 1}
    assert (r.non_2xx_3xx, r.non_2xx, r.errors) == (7, 7, 4)
    assert percentile([float(x) for x in range(1, 101)], 99) == 99
    assert percentile([5.0], 50) == 5
    steps = propagation.plan([f"127.0.0.{i}" for i in range(1, 7)], 9)
    previous = {"127.0.0.1", "127.0.0.2"}
    for step in steps:  # each step adds, removes or replaces exactly one endpoint
        assert step and len(set(step) ^ previous) in (1, 2)
        previous = set(step)


def test_section_1_data_plane(tmp_path: Path) -> None:
    rows, raw = dataplane.run(tmp_path, dataplane.Options(seconds=1, repeats=1, warmup=1, access_log=(False,)))
    mode = raw["modes"]["access log off"]
    for variant in ("ingressctl", "baseline"):
        assert 100 < mode[f"{variant}_rps"] < 1_000_000
        assert 1 < mode[f"{variant}_cpu_us"] < 10_000
    assert 0.3 < mode["cpu_ratio_paired_median"] < 5
    assert 1 < mode["floor_cpu_us"] < 10_000 and 0.3 < mode["floor_ratio_paired_median"] < 5
    assert {r["variant"] for r in mode["runs"]} == {"ingressctl", "baseline", "floor", "metrics", *dataplane.ALGORITHMS}
    for name in dataplane.ALGORITHMS:  # the balancing variants, beside round robin
        got = mode["algorithms"][name]
        assert 1 < got["cpu_us"] < 10_000 and 0.3 < got["to_round_robin_paired_median"] < 5
    assert 1 < mode["metrics_cpu_us"] < 10_000 and 0.3 < mode["metrics_ratio_paired_median"] < 5
    assert mode["failures"] == 0
    assert "CPU/request" in table(rows) and "affinity: CPU" in table(rows)


def test_section_2_propagation(tmp_path: Path) -> None:
    _rows, raw = propagation.run(tmp_path, propagation.Options(changes=5, burst=5, burst_seconds=0.25, api=False))
    got = raw["manifests"]
    assert got["changes"] == 5 and len(got["latencies_ms"]) == 5
    assert 0 < got["p50_ms"] <= got["p99_ms"] <= got["max_ms"] < 5000
    assert 0 < got["burst_final_ms"] < 5000
    assert got["reloads"] == 0 and got["workers_unchanged"]


def test_section_3_scale(tmp_path: Path) -> None:
    opts = scale.Options(sizes=(50,), repeats=1, reloads=1, endpoint_changes=1, budget_seconds=120)
    _rows, raw = scale.run(tmp_path, opts)
    got = raw["sizes"]["50"]
    # 50 hosts, the catch-all, the configuration API, the no-endpoints servers (HTTP, TLS, HTTP/2)
    assert got["servers"] == 55
    # Locations: 5 per host, the catch-all's, the configuration API's (backends, certificates, metrics,
    # digest, /).
    assert got["locations"] == 50 * 5 + 1 + 5
    assert 0 < got["translate_render_s"] < 5 and got["conf_bytes"] > 10_000
    assert 10 < got["controller_peak_rss_mb"] < 1000 and 0 < got["nginx_t_s"] < 30
    assert len(got["change_to_serving_s"]) == 1 and 0 < got["nginx_pss_mb"] < 2000
    assert got["endpoint_update_reloads"] == 0 and 0 < got["endpoint_update_s"][0] < 5


def test_section_4_zero_downtime(tmp_path: Path) -> None:
    _rows, raw = downtime.run(tmp_path, downtime.Options(rolls=1, reloads=1, tail=0.5))
    rolling, reloading = raw["rolling"], raw["reloading"]
    assert rolling["replaced_endpoints"] == 3 and rolling["reloads"] == 0 and rolling["requests"] > 100
    assert reloading["reloads"] == 1 and reloading["requests"] > 100
    # Every answer's status was counted (wrk's Lua hook), and the roll lost nothing: no reload ran,
    # so no connection may fail in any way.
    assert sum(rolling["statuses"].values()) == rolling["requests"], rolling
    assert rolling["non_2xx"] == 0 and not any(rolling["socket_errors"].values()), rolling
    assert sum(reloading["statuses"].values()) == reloading["requests"], reloading
    assert reloading["non_2xx"] == 0 and reloading["socket_errors"]["connect"] == 0, reloading


@pytest.mark.parametrize("changes", [50])
def test_section_5_coalescing(tmp_path: Path, changes: int) -> None:
    _rows, raw = coalesce.run(tmp_path, coalesce.Options(changes=changes, sample=5, quiet=0.5))
    assert 1 <= raw["reloads"] <= 10
    assert 0 < raw["last_change_to_final_s"] <= raw["first_change_to_final_s"] < 60


def test_section_7_handshakes(tmp_path: Path) -> None:
    opts = handshakes.Options(hosts=3, seconds=1, repeats=1, warmup=1, connections=4)
    rows, raw = handshakes.run(tmp_path, opts)
    assert raw["failures"] == 0
    assert raw["lua_handshakes_per_s"] > 0 and raw["static_handshakes_per_s"] > 0
    assert len(raw["runs"]) == 3 and {r["variant"] for r in raw["runs"]} == {"static", "lua", "floor"}
    assert "CPU/handshake" in table(rows)
