"""The controller as a process: flags and env vars, health endpoints, and no nginx left behind
whatever way the controller ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingressctl.cli import build_parser
from tests.harness import REPO, Controller, _alive, running_controller, wait_for

RUN_FLAGS = [
    "--manifests",
    "--http-port",
    "--https-port",
    "--health-port",
    "--work-dir",
    "--nginx-binary",
    "--reload-timeout",
    "--controller-class",
    "--ingress-class",
    "--watch-ingress-without-class",
    "--default-ssl-certificate",
    "--default-backend-service",
    "--log-level",
]


def test_help_documents_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ingressctl", "run", "--help"], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    for flag in RUN_FLAGS:
        assert flag in out
        env = "INGRESSCTL_" + flag[2:].upper().replace("-", "_")
        assert env in out, env
    version = subprocess.run(
        [sys.executable, "-m", "ingressctl", "--version"], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert version.stdout.startswith("ingressctl ")


def test_env_vars_set_flags_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGRESSCTL_HTTP_PORT", "8081")
    monkeypatch.setenv("INGRESSCTL_WATCH_INGRESS_WITHOUT_CLASS", "true")
    monkeypatch.setenv("INGRESSCTL_DEFAULT_BACKEND_SERVICE", "kube-system/fallback")
    args = build_parser().parse_args(["run", "--https-port", "8443"])
    assert (args.http_port, args.https_port, args.watch_ingress_without_class) == (8081, 8443, True)
    assert args.default_backend_service == ("kube-system", "fallback")
    assert build_parser().parse_args(["run", "--http-port", "9000"]).http_port == 9000
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--default-ssl-certificate", "no-slash"])


def test_health_endpoints(controller: Controller) -> None:
    assert controller.health("/healthz") == 200
    assert controller.health("/readyz") == 200
    assert controller.metric("ingressctl_ready") == 1


def test_readyz_waits_for_the_first_configuration(tmp_path: Path, manifests: Path) -> None:
    # nginx (real) behind a wrapper that holds the first `nginx -t` for 2 seconds.
    gate = tmp_path / "gate"
    wrapper = tmp_path / "slow-nginx"
    wrapper.write_text(
        f'#!/bin/sh\nif [ "$1" = "-t" ] && [ ! -e "{gate}" ]; then touch "{gate}"; sleep 2; fi\nexec nginx "$@"\n'
    )
    wrapper.chmod(0o755)
    ctl = Controller(manifests=manifests, work_dir=tmp_path / "work", extra_args=["--nginx-binary", str(wrapper)])
    try:
        ctl.start(wait_ready=False)
        wait_for(lambda: ctl.health("/healthz") == 200, what="health server up")
        assert ctl.health("/readyz") == 503
        ctl.wait_ready()
        assert ctl.health("/readyz") == 200
    finally:
        ctl.stop()


def test_sigterm_stops_nginx(tmp_path: Path, manifests: Path) -> None:
    with running_controller(tmp_path, manifests) as ctl:
        master, workers = ctl.master_pid(), ctl.worker_pids()
        assert ctl.process is not None
        ctl.process.send_signal(signal.SIGTERM)
        assert ctl.process.wait(timeout=20) == 0
        wait_for(lambda: not any(_alive(p) for p in (master, *workers)), what="nginx gone")
        # nginx removes its pid file when it exits cleanly (not when it is killed): the controller
        # stopped it, it did not leave it to die.
        assert not (tmp_path / "work" / "nginx.pid").exists()


def test_killed_controller_takes_nginx_down(tmp_path: Path, manifests: Path) -> None:
    with running_controller(tmp_path, manifests) as ctl:
        master, workers = ctl.master_pid(), ctl.worker_pids()
        assert ctl.process is not None
        ctl.process.kill()
        ctl.process.wait(timeout=10)
        wait_for(lambda: not any(_alive(p) for p in (master, *workers)), what="nginx gone after SIGKILL")


def test_controller_exits_when_nginx_dies(tmp_path: Path, manifests: Path) -> None:
    with running_controller(tmp_path, manifests) as ctl:
        workers = ctl.worker_pids()
        os.kill(ctl.master_pid(), signal.SIGKILL)
        assert ctl.process is not None
        assert ctl.process.wait(timeout=20) == 1
        assert "nginx exited unexpectedly" in ctl.log()
        wait_for(lambda: not any(_alive(p) for p in workers), what="orphaned workers stopped")
