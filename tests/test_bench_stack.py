"""bench/stack.py and the side-by-side results: the image stack's nginx wrapper (build/rootfs's nginx
seeing the host's /tmp and lua/, PID kept), its target rows, and how its rows merge into the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import stack
from bench.run import _merged
from tests.harness import free_port, wait_for


def test_target_rows_from_raw_figures() -> None:
    sections = {
        "3": {"sizes": {"10000": {"nginx_t_s": 1.2, "change_to_serving_s": [2.0, 2.7, 2.2], "nginx_pss_mb": 1300}}},
        "1": {
            "modes": {
                "access log off": {"cpu_ratio_paired_median": 1.04, "ingressctl_cpu_us": 10.5, "floor_cpu_us": 10.0}
            }
        },
    }
    rows = {r.metric: (r.value, r.ok) for r in stack.target_rows(sections)}
    assert rows["10k Ingresses: nginx -t"] == ("1.20 s", True)
    assert rows["10k: host change -> serving (median)"] == ("2.20 s", True)
    assert rows["10k: nginx PSS after 3 reloads"] == ("1300 MB", False)
    assert rows["data plane (access log off): CPU/request vs static upstream"] == ("1.040x", True)
    assert rows["data plane (access log off): our balancer vs the floor variant (CPU medians)"] == ("1.050x", False)
    skipped = stack.target_rows({"3": {"sizes": {"10000": {"skipped": "budget"}}}})
    assert [(r.value, r.ok) for r in skipped] == [("not measured: budget", False)]
    assert stack.target_rows({"3": {"sizes": {"50": {}}}}) == []  # a quick run has no 10k size


def test_image_rows_sort_after_the_hosts_and_are_replaced_together(tmp_path: Path) -> None:
    def row(section: str, value: str) -> dict[str, object]:
        return {"section": section, "metric": "m", "value": value, "target": "", "ok": None}

    out = tmp_path / "latest.json"
    old = {
        "date": "d0",
        "machine": {"commit": "c0"},
        "quick": False,
        "sections": {"1": {}, "3": {}},
        "stacks": {"image": {"sections": {"1": {}}}},
        "rows": [row("1 data plane", "old"), row("3 scale", "old"), row("[image] 1 data plane", "old")],
    }
    out.write_text(json.dumps(old))
    new = {"date": "d1", "machine": {"commit": "c1"}, "quick": False, "sections": {"3": {}}, "rows": []}
    # Host only (--stack host --only 3): the image stack's figures stay.
    host_only = _merged(out, {**new, "rows": [row("3 scale", "new")]}, [3])
    assert [(r["section"], r["value"]) for r in host_only["rows"]] == [
        ("1 data plane", "old"),
        ("3 scale", "new"),
        ("[image] 1 data plane", "old"),
    ]
    assert host_only["stacks"] == old["stacks"]
    # Both stacks: the image rows are all new, after the host's.
    both = _merged(
        out,
        {**new, "stacks": {"image": {}}, "rows": [row("[image] targets", "new"), row("3 scale", "new")]},
        [3],
    )
    assert [(r["section"], r["value"]) for r in both["rows"]] == [
        ("1 data plane", "old"),
        ("3 scale", "new"),
        ("[image] targets", "new"),
    ]


def test_the_wrapper_runs_the_images_nginx_with_the_hosts_tmp(tmp_path: Path) -> None:
    why = stack.available()
    if why:
        pytest.skip(why)
    env = stack.image_environment(tmp_path)
    wrapper = env["INGRESSCTL_NGINX_BINARY"]
    assert env["INGRESSCTL_LUA_DIR"] == "/app/lua"
    version = subprocess.run([wrapper, "-v"], capture_output=True, text=True, timeout=30, check=True)
    assert "nginx/1.26" in version.stderr
    # A config under the host's /tmp, the repository's Lua code at /app/lua: nginx in the rootfs
    # loads both, serves on 127.0.0.1, and its PID is the wrapper's (exec all the way).
    work = Path(os.environ.get("TMPDIR", "/tmp")).resolve() / f"ingressctl-stack-{os.getpid()}"
    work.mkdir()
    port = free_port()
    (work / "nginx.conf").write_text(
        "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
        "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n"
        f"daemon off; pid {work}/nginx.pid; error_log stderr warn;\n"
        "events {}\n"
        f'http {{ lua_package_path "/app/lua/?.lua;;"; init_by_lua_block {{ require("ingressctl.balancer") }}\n'
        f"  server {{ listen 127.0.0.1:{port};\n"
        "    location / { content_by_lua_block { ngx.say(ngx.config.nginx_version) } } } }\n"
    )
    process = subprocess.Popen([wrapper, "-p", str(work), "-c", str(work / "nginx.conf")], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (work / "nginx.pid").exists(), timeout=15, what="nginx in the rootfs started")
        assert int((work / "nginx.pid").read_text()) == process.pid
        body = wait_for(
            lambda: (
                subprocess.run(
                    ["curl", "-sf", f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=5
                ).stdout
            ),
            what="served",
        )
        assert body.strip().startswith("1026")  # 1.26.x
    finally:
        process.terminate()
        process.wait(timeout=15)
        shutil.rmtree(work, ignore_errors=True)
