"""Reload reasons: `ingressctl render --manifests A --diff B` (what would change between two folders,
and whether it would reload, from the same plan function the controller executes), and what a
running controller logs and counts for a reload."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.certs import make_cert, tls_secret
from tests.harness import (
    REPO,
    Controller,
    backend,
    endpoint_slice,
    ingress,
    ingress_class,
    rule,
    service,
    wait_for,
    write_manifests,
)


def _folder(path: Path, *, hosts: list[str], addresses: list[str]) -> Path:
    path.mkdir()
    docs = [ingress_class(), service("app"), endpoint_slice("app", addresses)]
    docs += [ingress(h.split(".")[0], rules=[rule(h, ("/", "Prefix", backend("app")))]) for h in hosts]
    write_manifests(path, "all.yaml", docs)
    return path


def _diff(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingressctl", "render", "--manifests", str(a), "--diff", str(b)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_render_diff(tmp_path: Path) -> None:
    base = _folder(tmp_path / "base", hosts=["a.example.com"], addresses=["10.0.0.1"])
    scaled = _folder(tmp_path / "scaled", hosts=["a.example.com"], addresses=["10.0.0.1", "10.0.0.2"])
    more = _folder(tmp_path / "more", hosts=["a.example.com", "b.example.com"], addresses=["10.0.0.1"])

    same = _diff(base, base)
    assert (same.returncode, same.stdout) == (0, "no change: nothing to do\n"), same.stderr

    endpoints = _diff(base, scaled)
    assert (endpoints.returncode, endpoints.stdout) == (0, "backends change: Lua update, no reload\n")

    host = _diff(base, more)
    assert host.returncode == 0, host.stderr
    assert host.stdout.splitlines() == [
        "would reload (host_added)",
        "  host_added: host b.example.com (Ingress default/b)",
    ]

    removed = _diff(more, scaled)
    assert removed.stdout.splitlines() == [
        "would reload (host_removed), backends change too",
        "  host_removed: host b.example.com (Ingress default/b)",
    ]


def test_render_diff_of_a_certificate_renewal(tmp_path: Path) -> None:
    def folder(name: str, cert: tuple[bytes, bytes]) -> Path:
        path = _folder(tmp_path / name, hosts=[], addresses=["10.0.0.1"])
        tls = [{"hosts": ["t.example.com"], "secretName": "t"}]
        rules = [rule("t.example.com", ("/", "Prefix", backend("app")))]
        write_manifests(path, "t.yaml", [tls_secret("t", *cert), ingress("t", rules=rules, tls=tls)])
        return path

    renewed = _diff(folder("old", make_cert("t.example.com")), folder("new", make_cert("t.example.com")))
    assert (renewed.returncode, renewed.stdout) == (0, "certificates change: Lua update, no reload\n"), renewed.stderr


def test_a_reload_logs_its_reasons_and_counts_by_reason(controller: Controller, manifests: Path) -> None:
    """Through the real controller: one log line naming the reasons and objects, one count under
    the main reason (the other reason labels exist at 0)."""
    write_manifests(manifests, "app.yaml", [service("app"), endpoint_slice("app", ["127.0.0.1"])])
    wait_for(lambda: controller.reloads() == 0 and controller.health("/readyz") == 200, what="ready")
    write_manifests(manifests, "b.yaml", [ingress("b", rules=[rule("b.example.com", ("/", "Prefix", backend("app")))])])
    wait_for(lambda: controller.reloads() == 1, what="the host's reload")
    assert controller.metric('ingressctl_nginx_reloads_total{reason="host_added"}') == 1
    assert controller.metric('ingressctl_nginx_reloads_total{reason="path_changed"}') == 0
    line = wait_for(
        lambda: next((x for x in controller.log().splitlines() if "nginx reload 1 done" in x), None),
        what="the reload's log line",
    )
    assert line.endswith("reload (host_added): host_added: host b.example.com (Ingress default/b)")
