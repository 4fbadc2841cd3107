"""Bad input loses nothing: invalid Ingresses are rejected alone with their reason, malformed
files are skipped (their last good content kept), a configuration nginx refuses keeps the
running one, and everything else keeps serving and updating."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import (
    QUIET,
    REPO,
    Controller,
    backend,
    endpoint_slice,
    ingress,
    pods,
    rule,
    running_controller,
    service,
    wait_for,
    write_manifests,
)

PORT = 18971


def _good(manifests: Path, addresses: list[str], host: str = "good.example.com") -> None:
    write_manifests(
        manifests,
        "good.yaml",
        [
            service("good", target=PORT),
            endpoint_slice("good", addresses, port=PORT),
            ingress("good", rules=[rule(host, ("/", "Prefix", backend("good")))]),
        ],
    )


HOSTILE = {
    "semicolon-path": rule("bad.example.com", ("/x;return 200", "Prefix", backend("good"))),
    "brace-path": rule("bad.example.com", ("/x{", "Exact", backend("good"))),
    "newline-host": rule("bad.example.com\n", ("/", "Prefix", backend("good"))),
    "quote-host": rule('bad".example.com', ("/", "Prefix", backend("good"))),
    "dollar-path": rule("bad.example.com", ("/$host", "Prefix", backend("good"))),
    "dotdot-path": rule("bad.example.com", ("/a/../b", "Prefix", backend("good"))),
    "service-name": rule("bad.example.com", ("/", "Prefix", backend("good;drop"))),
}


def test_invalid_ingresses_are_rejected_alone(controller: Controller, manifests: Path) -> None:
    with pods(["127.0.4.1", "127.0.4.2"], PORT):
        _good(manifests, ["127.0.4.1"])
        write_manifests(manifests, "bad.yaml", [ingress(name, rules=[r]) for name, r in HOSTILE.items()])
        wait_for(lambda: controller.get("good.example.com").status == 200, what="good served")
        wait_for(
            lambda: all(f"Ingress default/{n}:" in controller.log() for n in HOSTILE), what="all rejections logged"
        )
        log = controller.log()
        assert "Ingress default/semicolon-path: spec.rules[0].http.paths[0].path:" in log
        assert "Ingress default/newline-host: spec.rules[0].host:" in log
        assert "Ingress default/service-name: spec.rules[0].http.paths[0].backend.service.name:" in log
        assert controller.get("bad.example.com").status == 404
        conf = (controller.work_dir / "nginx.conf").read_text()
        assert "bad.example.com" not in conf and "/x;return" not in conf
        # Everything else keeps updating.
        _good(manifests, ["127.0.4.2"])
        wait_for(lambda: controller.get("good.example.com").pod == "127.0.4.2", what="good updated")
        assert controller.log().count("rejected: Ingress default/semicolon-path") == 1, "reported once, not per sync"


def test_malformed_yaml_is_skipped_and_last_good_content_kept(controller: Controller, manifests: Path) -> None:
    with pods(["127.0.4.3"], PORT):
        _good(manifests, ["127.0.4.3"])
        wait_for(lambda: controller.get("good.example.com").status == 200, what="good served")
        write_manifests(manifests, "broken.yaml", "kind: Ingress\nmetadata: {name: [unclosed\n")
        write_manifests(
            manifests,
            "other.yaml",
            [ingress("other", rules=[rule("other.example.com", ("/", "Prefix", backend("good")))])],
        )
        wait_for(lambda: controller.get("other.example.com").status == 200, what="rest of the folder applies")
        assert "broken.yaml" in controller.log()
        # A good file that becomes malformed keeps its last good content.
        reloads, updates = controller.reloads(), controller.backend_updates()
        write_manifests(manifests, "good.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: good\n  oops: [\n")
        wait_for(
            lambda: any("skipping malformed" in line and "good.yaml" in line for line in controller.log().splitlines()),
            what="the malformed good.yaml read and skipped",
        )
        time.sleep(QUIET)
        assert (controller.reloads(), controller.backend_updates()) == (reloads, updates)
        assert controller.get("good.example.com").pod == "127.0.4.3"
        assert controller.health("/readyz") == 200


def refusing_templates(tmp_path: Path, host: str) -> Path:
    """The real templates, but the server block for `host` carries a directive nginx does not know:
    a configuration that passes every check of ours and that nginx itself refuses to load."""
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    server = templates / "server.conf.j2"
    marker = "    server {\n"
    text = server.read_text()
    assert marker in text
    injected = f'{{% if server.host == "{host}" %}}\n        ingressctl_test_refused on;\n{{% endif %}}\n'
    server.write_text(text.replace(marker, marker + injected))
    return templates


def test_config_refused_by_nginx_keeps_the_running_one(tmp_path: Path, manifests: Path) -> None:
    # With --skip-reload-test a reload is its own test: the master refuses a configuration it cannot
    # load and keeps running the old one; the controller reads why from the [emerg] log, traces it to
    # the Ingress whose server block holds the refused line, rejects that Ingress alone and applies
    # the rest.
    templates = refusing_templates(tmp_path, "refused.example.com")
    env = {"INGRESSCTL_TEMPLATES_DIR": str(templates)}
    with (
        pods(["127.0.4.4", "127.0.4.5"], PORT),
        running_controller(tmp_path, manifests, env=env, extra_args=["--skip-reload-test"]) as ctl,
    ):
        _good(manifests, ["127.0.4.4"])
        wait_for(lambda: ctl.get("good.example.com").status == 200, what="good served")
        errors = ctl.metric("ingressctl_nginx_reload_errors_total")
        master = ctl.master_pid()
        _good(manifests, ["127.0.4.4"], host="refused.example.com")
        # Reported at once (not after the 60 s live timeout), with nginx's own words, on the Ingress.
        wait_for(
            lambda: "nginx refused the configuration of Ingress default/good" in ctl.log(),
            timeout=15,
            what="refusal traced",
        )
        assert 'unknown directive "ingressctl_test_refused"' in ctl.log()
        assert ctl.metric("ingressctl_nginx_reload_errors_total") == errors + 1
        assert ctl.get("refused.example.com").status == 404
        assert ctl.master_pid() == master, "the same nginx, never restarted"
        assert "ingressctl_test_refused" not in (ctl.work_dir / "nginx.conf").read_text()
        _good(manifests, ["127.0.4.5"], host="new.example.com")
        wait_for(lambda: ctl.get("new.example.com").pod == "127.0.4.5", what="recovers on the next change")
        assert ctl.metric("ingressctl_nginx_reload_errors_total") == errors + 1


def test_first_start_is_tested_by_nginx_t(tmp_path: Path, manifests: Path) -> None:
    # Before anything serves, `nginx -t` checks the first configuration: a refusal is reported and
    # nothing starts with it.
    flag = tmp_path / "fail-test"
    flag.touch()
    wrapper = tmp_path / "nginx-wrapper"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-t" ] && [ -e "{flag}" ]; then\n'
        '  echo "nginx: [emerg] injected failure for the test" >&2; exit 1\n'
        "fi\n"
        'exec nginx "$@"\n'
    )
    wrapper.chmod(0o755)
    _good(manifests, ["127.0.4.4"])
    ctl = Controller(manifests=manifests, work_dir=tmp_path / "work", extra_args=["--nginx-binary", str(wrapper)])
    try:
        ctl.start(wait_ready=False)
        wait_for(lambda: "injected failure for the test" in ctl.log(), what="failure reported")
        assert "nginx -t rejected the new configuration" in ctl.log()
        assert not (ctl.work_dir / "nginx.pid").exists()
        assert ctl.health("/readyz") != 200
        flag.unlink()
        with pods(["127.0.4.4"], PORT):
            _good(manifests, ["127.0.4.4"], host="new.example.com")
            wait_for(lambda: ctl.get("new.example.com").pod == "127.0.4.4", what="starts on the next change")
    finally:
        ctl.stop()


def test_render_command(manifests: Path) -> None:
    def render(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ingressctl", "render", "--manifests", str(manifests), *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=False,
        )

    _good(manifests, ["127.0.4.6"])
    ok = render()
    assert ok.returncode == 0, ok.stderr
    assert 'server_name "good.example.com";' in ok.stdout
    assert 'set $ingressctl_backend "default/good:80";' in ok.stdout
    backends = render("--backends")
    assert '"address": "127.0.4.6"' in backends.stdout
    write_manifests(manifests, "bad.yaml", [ingress("bad", rules=[HOSTILE["semicolon-path"]])])
    bad = render()
    assert bad.returncode == 1
    assert "error: Ingress default/bad: spec.rules[0].http.paths[0].path:" in bad.stderr
    assert 'server_name "good.example.com";' in bad.stdout


def test_longest_valid_names_do_not_break_the_reload(controller: Controller, manifests: Path) -> None:
    """Valid input must never break nginx for everyone: a 253-character host (nginx -t fails with a
    small server_names_hash_bucket_size) and 254-character paths (nginx stops matching locations
    longer than 255) are served next to the others."""
    host = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    path = "/" + "p" * 253
    with pods(["127.0.4.7"], PORT):
        _good(manifests, ["127.0.4.7"])
        write_manifests(
            manifests,
            "long.yaml",
            [
                ingress(
                    "long",
                    rules=[
                        rule(host, ("/", "Prefix", backend("good"))),
                        rule("x.example.com", (path, "Exact", backend("good"))),
                        rule("y.example.com", (path, "Prefix", backend("good"))),
                    ],
                )
            ],
        )
        wait_for(lambda: controller.get(host).status == 200, what="longest host served")
        assert controller.get("x.example.com", path).status == 200
        assert controller.get("y.example.com", path).status == 200
        assert controller.get("y.example.com", path + "/more").status == 200
        assert controller.get("y.example.com", path + "x").status == 404
        assert controller.get("good.example.com").status == 200
