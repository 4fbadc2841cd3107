"""Smoke test of bench section 6 (bench/soak.py, the soak under endpoint churn) in a tiny
configuration: the figures are sane and complete for both sources (not that the targets are met,
which a few seconds cannot show); and `bench/run.py --only` merges into the results file."""

from __future__ import annotations

import json
from pathlib import Path

from bench import soak
from bench.run import _merged, table


def test_soak_section_both_sources(tmp_path: Path) -> None:
    rows, raw = soak.run(tmp_path, soak.Options(seconds=4, min_warmup=1, rate=20, connections=2))
    for source in ("manifests", "fake_api"):
        got = raw[source]
        assert 40 <= got["changes"] <= 90, got["changes"]  # 20/s for 4 s, paced by the schedule
        assert 0 < got["backend_updates"] <= got["changes"] + 1
        assert got["reloads"] == 0 and got["workers_unchanged"]
        assert got["failed"] == 0 and got["requests"] > 100
        assert got["start"]["at_s"] < got["warm"]["at_s"] < got["end"]["at_s"]
        assert got["warm"]["changes"] < got["end"]["changes"] == got["changes"]
        for reading in (got["start"], got["warm"], got["end"]):
            assert 10_000 < reading["controller_kb"] < 1_000_000
            assert 1_000 < reading["nginx_kb"] < 1_000_000
        assert [s["at_s"] for s in got["samples"]] == sorted(s["at_s"] for s in got["samples"])
    printed = table(rows)
    assert "6 soak (manifests folder)" in printed and "6 soak (fake API)" in printed
    assert printed.count("growth after warm-up < 5%") == 4


def test_only_merges_into_the_results_file(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    old = {
        "date": "then",
        "machine": {"commit": "aaa"},
        "quick": False,
        "sections": {"1": {"x": 1}, "6": {"old": True}},
        "rows": [
            {"section": "1 data plane", "metric": "m1", "value": "v"},
            {"section": "6 soak (fake API)", "metric": "old", "value": "v"},
        ],
    }
    out.write_text(json.dumps(old))
    new = {
        "date": "now",
        "machine": {"commit": "bbb"},
        "quick": False,
        "sections": {"6": {"new": True}},
        "rows": [{"section": "6 soak (manifests folder)", "metric": "new", "value": "v"}],
    }
    got = _merged(out, new, [6])
    assert got["sections"] == {"1": {"x": 1}, "6": {"new": True}}
    assert [r["metric"] for r in got["rows"]] == ["m1", "new"]
    assert got["measured"]["1"]["commit"] == "aaa" and got["measured"]["6"]["commit"] == "bbb"
    assert got["date"] == "now"
    assert _merged(tmp_path / "missing.json", new, [6]) == new
