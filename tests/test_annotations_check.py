"""`ingressctl check`: the migration report on a corpus of ingress-nginx Ingresses (tests/corpus/,
written after ingress-nginx's documented examples), as text and JSON, from a folder and from a
cluster (the fake API server through the real kubernetes-asyncio client)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.fakeapi.threaded import threaded_fake_api
from tests.harness import REPO, backend, ingress, ingress_class, rule

CORPUS = REPO / "tests" / "corpus"
NGINX = "nginx.ingress.kubernetes.io/"


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingressctl", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


def _expected(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"served": report["served"], "same": report["same"]}
    if report["annotations"]:
        out["annotations"] = {a["key"].removeprefix(NGINX): a["status"] for a in report["annotations"]}
    if report["problems"]:
        out["problems"] = len(report["problems"])
    if report["notes"]:
        out["notes"] = len(report["notes"])
    return out


def test_corpus_report_matches_expectations() -> None:
    result = check("--manifests", str(CORPUS), "--output", "json")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    got = {f"{r['namespace']}/{r['name']}": _expected(r) for r in doc["ingresses"]}
    expected = yaml.safe_load((CORPUS / "expected.yaml").read_text())
    assert len(got) >= 40
    assert got == expected
    assert doc["same"] is False
    # The summary counts every annotation across the input, by status.
    summary = doc["summary"]
    assert summary["configuration-snippet"] == {"refused": 2}
    assert summary["enable-cors"] == {"supported": 3}
    assert summary["canary"] == {"supported": 2}
    assert sum(sum(v.values()) for v in summary.values()) == sum(len(r["annotations"]) for r in doc["ingresses"])


def test_corpus_report_details() -> None:
    doc = json.loads(check("--manifests", str(CORPUS), "--output", "json").stdout)
    by_name = {r["name"]: r for r in doc["ingresses"]}
    snippet = by_name["server-snippet"]["annotations"][0]
    assert snippet["status"] == "refused" and "server-alias" in snippet["detail"]
    hostile = by_name["vhost-injection"]["annotations"][0]
    assert hostile["status"] == "invalid" and "control" in hostile["detail"]
    assert by_name["legacy-class"]["ingress_class"] == "nginx (legacy annotation)"
    foreign = {a["key"]: a for a in by_name["foreign-ca"]["annotations"]}[NGINX + "proxy-ssl-secret"]
    assert foreign["status"] == "invalid" and "own namespace" in foreign["detail"]
    assert by_name["switched"]["served"] and by_name["switched"]["same"]
    assert not by_name["canary"]["problems"], "a canary with its main Ingress is merged, not a path conflict"
    assert "no main Ingress serves host header.example.com" in by_name["canary-by-header"]["problems"][0]
    assert "Service not found" in by_name["missing-service"]["notes"][0]
    assert "which wins" in by_name["both-prefixes"]["notes"][0]
    assert any("is not a plain path" in p for p in by_name["regex-without-use-regex"]["problems"])


def test_text_report_and_exit_status(tmp_path: Path) -> None:
    result = check("--manifests", str(CORPUS))
    assert result.returncode == 1
    text = result.stdout
    assert "Ingress default/config-snippet: class nginx, not served (class is not ingressctl's); DIFFERS" in text
    assert "  nginx.ingress.kubernetes.io/configuration-snippet: refused: snippet annotations are refused" in text
    assert "Ingress shop/timeouts: class nginx, not served (class is not ingressctl's); same" in text
    assert text.rstrip().endswith("differ")
    header = next(line for line in text.splitlines() if line.startswith("annotation "))
    assert header.split() == ["annotation", "supported", "supported-with-a-difference", "ignored", "refused", "invalid"]
    snippet_row = next(line for line in text.splitlines() if line.startswith("configuration-snippet "))
    assert snippet_row.split() == ["configuration-snippet", "0", "0", "0", "2", "0"]
    # A folder whose Ingresses all behave the same: exit 0.
    good = tmp_path / "good"
    good.mkdir()
    docs = [
        ingress_class(),
        ingress(
            "fine",
            rules=[rule("fine.example.com", ("/", "Prefix", backend("app")))],
            annotations={NGINX + "proxy-body-size": "8m", NGINX + "enable-cors": "true"},
        ),
    ]
    (good / "fine.yaml").write_text(yaml.safe_dump_all(docs))
    ok = check("--manifests", str(good))
    assert ok.returncode == 0, ok.stdout
    assert "1 Ingresses: 1 behave the same, 0 differ" in ok.stdout


def test_against_a_cluster(tmp_path: Path) -> None:
    with threaded_fake_api() as api:
        api.create(ingress_class())
        api.create(
            ingress(
                "snippet",
                namespace="team-a",
                class_name="nginx",
                rules=[rule("a.example.com", ("/", "Prefix", backend("app")))],
                annotations={NGINX + "configuration-snippet": "more_set_headers 'X: y';"},
            )
        )
        api.create(
            ingress(
                "fine",
                namespace="team-b",
                rules=[rule("b.example.com", ("/", "Prefix", backend("app")))],
                annotations={NGINX + "proxy-read-timeout": "30"},
            )
        )
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        result = check("--kubeconfig", str(kubeconfig), "--output", "json")
        assert result.returncode == 1, result.stderr
        doc = json.loads(result.stdout)
        reports = {r["name"]: r for r in doc["ingresses"]}
        assert reports["snippet"]["annotations"][0]["status"] == "refused"
        assert reports["fine"]["served"] and reports["fine"]["same"]
        only_b = check("--kubeconfig", str(kubeconfig), "--namespace", "team-b")
        assert only_b.returncode == 0, only_b.stdout + only_b.stderr
        assert "team-a" not in only_b.stdout
    unreachable = check("--kubeconfig", str(kubeconfig))
    assert unreachable.returncode == 2 and "reading the cluster failed" in unreachable.stderr


def test_the_whole_corpus_runs_in_real_nginx(tmp_path: Path) -> None:
    """Served as ours (its IngressClass names our controller), every accepted Ingress of the corpus
    with all its annotations goes into one nginx.conf that nginx loads; the rejected ones are
    reported alone."""
    from tests.harness import running_controller, wait_for

    with running_controller(tmp_path, CORPUS, extra_args=["--controller-class", "k8s.io/ingress-nginx"]) as ctl:
        conf = (ctl.work_dir / "nginx.conf").read_text()
        for host in ("rewrite.bar.com", "cors.example.com", "admin.example.com", "grpctest.dev.mydomain.com"):
            assert f'server_name "{host}"' in conf
        assert "snippet.example.com" not in conf and "injection.example.com" not in conf
        assert ctl.get("admin.example.com").status == 403, "allowlist of 10/8, 192.168/16, 2001:db8::/32"
        assert ctl.get("old.example.com").headers["location"] == "https://www.google.com"
        wait_for(lambda: "default/config-snippet" in ctl.log(), what="rejections logged")
        assert "Ingress default/vhost-injection" in ctl.log()
