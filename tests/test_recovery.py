"""Recovery paths, each fault injected for real into the real `ingressctl run` and its real nginx:
a wrapper nginx binary (a small shared dict, the master killed during an apply, a configuration
that passes `nginx -t` but that the master cannot load), a worker that never finishes draining,
a manifests folder that disappears. Each test asserts what the user sees: what keeps serving,
what the log says, the exit status, and that no nginx process is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    Controller,
    Pod,
    _alive,
    backend,
    endpoint_slice,
    ingress,
    rule,
    service,
    wait_for,
    write_manifests,
)

PORT = 18995


def _wrapper(tmp_path: Path, body: str) -> Path:
    """An nginx binary: a shell script that runs `body` (with $conf set to the -c argument, and
    $testing to 1 for `nginx -t`), then execs the real nginx with the same PID."""
    script = tmp_path / "nginx-wrapper"
    script.write_text(
        "#!/bin/sh\n"
        'conf=""; testing=0; prev=""\n'
        'for a in "$@"; do\n'
        '  [ "$prev" = "-c" ] && conf="$a"\n'
        '  [ "$a" = "-t" ] && testing=1\n'
        '  prev="$a"\n'
        "done\n"
        f"{body}\n"
        'exec nginx "$@"\n'
    )
    script.chmod(0o755)
    return script


def _once_when_testing(tmp_path: Path, flag: Path, commands: str) -> Path:
    """A wrapper that runs `commands` in the first `nginx -t` after `flag` is created (and removes it)."""
    return _wrapper(tmp_path, f'if [ "$testing" = 1 ] && [ -e "{flag}" ]; then\n  rm -f "{flag}"; {commands}\nfi')


@pytest.fixture
def app_pod() -> Iterator[Pod]:
    pod = Pod("127.0.7.1", PORT)
    yield pod
    pod.stop()


def _app(manifests: Path, name: str, addresses: list[str], *, port: int = PORT) -> None:
    write_manifests(
        manifests,
        f"{name}.yaml",
        [
            service(name, target=port),
            endpoint_slice(name, addresses, port=port),
            ingress(name, rules=[rule(f"{name}.example.com", ("/", "Prefix", backend(name)))]),
        ],
    )


def _nginx_pids(ctl: Controller) -> list[int]:
    """The master and its workers now."""
    return [ctl.master_pid(), *ctl.worker_pids()]


@contextlib.contextmanager
def _running(tmp_path: Path, manifests: Path, *extra: str) -> Iterator[tuple[Controller, set[int]]]:
    """The controller with extra flags, and a set for the nginx PIDs the test saw: on the way out
    each is stopped by PID if still alive (the tests assert the controller did it itself). The
    faults are injected by an nginx wrapper when the controller runs `nginx -t`, so these run with
    a test before each reload (--skip-reload-test=false); the default, a reload that is its own
    test, is covered by test_bad_input's refused-reload test."""
    ctl = Controller(manifests=manifests, work_dir=tmp_path / "work", extra_args=["--skip-reload-test=false", *extra])
    seen: set[int] = set()
    try:
        ctl.start()
        seen.update(_nginx_pids(ctl))
        yield ctl, seen
    finally:
        with contextlib.suppress(OSError, ValueError):
            seen.update(_nginx_pids(ctl))
        ctl.stop()
        for pid in seen:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _log_count(ctl: Controller, text: str) -> int:
    return ctl.log().count(text)


# A shared dict far smaller than the 64m the template asks for: set in every nginx.conf the
# controller starts or tests (so reloads keep the size), before nginx reads it.
SMALL_DICT = (
    '[ -n "$conf" ] && sed -i "s/lua_shared_dict ingressctl [0-9]*[km];/lua_shared_dict ingressctl 128k;/" "$conf"'
)


def test_a_full_shared_dict_answers_507_and_the_controller_retries_until_it_fits(
    tmp_path: Path, manifests: Path, app_pod: Pod
) -> None:
    wrapper = _wrapper(tmp_path, SMALL_DICT)
    with _running(tmp_path, manifests, "--nginx-binary", str(wrapper)) as (ctl, _):
        assert "lua_shared_dict ingressctl 128k;" in (ctl.work_dir / "nginx.conf").read_text()
        _app(manifests, "small", [app_pod.address])
        _app(manifests, "big", ["127.0.7.2"])
        wait_for(lambda: ctl.get("small.example.com").pod == app_pod.address, what="small served")
        wait_for(lambda: ctl.get("big.example.com").status == 502, what="big routed (nothing listens)")
        # New workers answer a few ms before the controller sees their digest and counts the reload:
        # read the count once the reload's hand-over is over.
        ctl.settle()
        reloads = ctl.reloads()
        # 6000 endpoints: one stored backend of ~200 KB, more than the whole dict.
        many = [f"127.0.{8 + i // 250}.{1 + i % 250}" for i in range(6000)]
        _app(manifests, "big", many)
        wait_for(lambda: _log_count(ctl, "apply failed, retrying in 1s") >= 3, timeout=20, what="3 retries")
        log = ctl.log()
        assert "answered 507" in log and "no memory" in log, log[-3000:]
        # Meanwhile: the rest keeps being served, by the same nginx, and the controller stays ready.
        assert ctl.get("small.example.com").pod == app_pod.address
        assert ctl.health("/readyz") == 200 and ctl.reloads() == reloads
        # The Service shrinks: the next retry fits, and the retries stop.
        _app(manifests, "big", [app_pod.address])
        wait_for(lambda: ctl.get("big.example.com").pod == app_pod.address, timeout=10, what="big fits again")
        failures = _log_count(ctl, "apply failed")
        time.sleep(2.5)  # two retry delays: none comes
        assert _log_count(ctl, "apply failed") == failures
        assert ctl.get("small.example.com").pod == app_pod.address


def test_nginx_killed_during_an_apply_stops_the_controller_and_leaves_no_nginx(
    tmp_path: Path, manifests: Path, app_pod: Pod
) -> None:
    # While the flag file exists, `nginx -t` first kills the master (SIGKILL: it cannot clean up).
    flag = tmp_path / "kill-master"
    wrapper = _once_when_testing(tmp_path, flag, f'kill -9 "$(cat {tmp_path}/work/nginx.pid)"')
    with _running(tmp_path, manifests, "--nginx-binary", str(wrapper)) as (ctl, seen):
        _app(manifests, "app", [app_pod.address])
        wait_for(lambda: ctl.get("app.example.com").pod == app_pod.address, what="served")
        seen.update(_nginx_pids(ctl))
        workers = ctl.worker_pids()
        flag.touch()
        _app(manifests, "other", [app_pod.address])  # a new host: a reload, so `nginx -t`
        assert ctl.process is not None
        code = ctl.process.wait(timeout=30)
        assert not flag.exists(), "the fault was not injected"
        # The controller cannot serve without its nginx: it says so and exits with an error (its
        # Deployment restarts it), and takes the workers the dead master left behind down with it.
        assert code == 1, ctl.log()[-3000:]
        errors = [line for line in ctl.log().splitlines() if " ERROR " in line]
        assert any("nginx" in line for line in errors), errors
        wait_for(lambda: not any(_alive(p) for p in workers), timeout=5, what="the orphaned workers stopped")
        assert "left by the dead master" in ctl.log()


def test_a_worker_that_never_drains_is_killed_after_the_drain_timeout(tmp_path: Path, manifests: Path) -> None:
    options = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "opts", "namespace": "default"}}
    write_manifests(manifests, "options.yaml", [{**options, "data": {"worker-shutdown-timeout": "1"}}])
    with _running(tmp_path, manifests, "--configmap", "default/opts") as (ctl, seen):
        assert "worker_shutdown_timeout 1s;" in (ctl.work_dir / "nginx.conf").read_text()
        master, workers = ctl.master_pid(), ctl.worker_pids()
        seen.update([master, *workers])
        # A stopped worker cannot act on the master's quit: nginx never exits by itself.
        os.kill(workers[0], signal.SIGSTOP)
        assert ctl.process is not None
        ctl.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = ctl.process.wait(timeout=30)
        took = time.monotonic() - started
        assert code == 0, ctl.log()[-2000:]
        # The drain (worker-shutdown-timeout, 1 s) plus 5 s, then SIGKILL: master and workers.
        assert took >= 6, took
        assert "nginx did not stop within 6s; killing it" in ctl.log()
        wait_for(lambda: not any(_alive(p) for p in (master, *workers)), timeout=5, what="nginx gone")


def test_a_work_dir_that_nginx_conf_cannot_hold_is_refused_at_start(tmp_path: Path, manifests: Path) -> None:
    # Every render would be refused (the path is written into nginx.conf, quoted, and a space
    # cannot be): the controller used to run on, never ready, saying it kept a running
    # configuration it did not have. It now stops at once with a clear error.
    ctl = Controller(manifests=manifests, work_dir=tmp_path / "my work")
    try:
        ctl.start(wait_ready=False)
        assert ctl.process is not None
        assert ctl.process.wait(timeout=30) == 2
        assert "--work-dir" in ctl.log() and "cannot be written into nginx.conf" in ctl.log()
        assert not (tmp_path / "my work" / "nginx.pid").exists()
    finally:
        ctl.stop()


def test_a_configuration_the_master_cannot_load_keeps_the_old_one_serving(
    tmp_path: Path, manifests: Path, app_pod: Pod
) -> None:
    # Once: `nginx -t` passes, then the file gets a line the master cannot load. The controller
    # installs it and sends SIGHUP; the master logs the error and keeps its old workers. The
    # controller reads the refusal from nginx's [emerg] log at once (it does not wait out the
    # --reload-timeout) and reports it like a failed test: the refused line is in the last server
    # block, so the Ingress of that host is rejected alone (until it changes), the rest applied.
    flag = tmp_path / "break-after-test"
    wrapper = _once_when_testing(
        tmp_path, flag, 'nginx "$@" || exit 1; echo "not_a_directive_ingressctl_test;" >> "$conf"; exit 0'
    )
    with _running(tmp_path, manifests, "--nginx-binary", str(wrapper), "--reload-timeout", "30") as (ctl, _):
        _app(manifests, "app", [app_pod.address])
        wait_for(lambda: ctl.get("app.example.com").pod == app_pod.address, what="served")
        errors = ctl.metric("ingressctl_nginx_reload_errors_total")
        flag.touch()
        _app(manifests, "later", [app_pod.address])
        wait_for(lambda: not flag.exists(), what="the fault injected")
        traced = "nginx refused the configuration of Ingress default/later"
        wait_for(lambda: traced in ctl.log(), timeout=10, what="the refusal read and traced")
        assert 'unknown directive "not_a_directive_ingressctl_test"' in ctl.log()  # nginx says why
        assert ctl.metric("ingressctl_nginx_reload_errors_total") > errors
        assert "not_a_directive_ingressctl_test" not in (ctl.work_dir / "nginx.conf").read_text(), "last good back"
        # The running configuration serves as before.
        assert ctl.get("app.example.com").pod == app_pod.address
        assert ctl.get("later.example.com").status == 404
        # The next change renders everything again, and it goes live.
        _app(manifests, "third", [app_pod.address])
        wait_for(lambda: ctl.get("third.example.com").pod == app_pod.address, timeout=15, what="third served")
        assert ctl.get("app.example.com").pod == app_pod.address
        assert ctl.health("/readyz") == 200
