"""Section 7: the cost of serving certificates from the Lua store (issue 14), per TLS handshake.

Two nginx processes side by side, the same http{} TLS settings as ingressctl's template and the
same HOSTS hosts, each with its own EC P-256 certificate; each answers `return 200` so that a
request is little more than its handshake:

- static: the layout before issue 14, one `ssl_certificate` file per server block (an SSL context
  per server; nginx picks it by SNI);
- lua: ingressctl's layout, one SSL context in the default server whose `ssl_client_hello_by_lua`
  sets the certificate from the Lua store (lua/ingressctl/certificates.lua, the real module),
  filled through the real configuration API on a unix socket;
- floor, for reference: the lua layout with an empty `ssl_client_hello_by_lua` (every host gets the
  context's own certificate): what the Lua phase alone costs per handshake on this nginx build.

wrk opens a new connection per request (`Connection: close`: a full TLS 1.3 handshake each, no
resumption) with the SNI of one host, resolved to 127.0.0.1 through a private /etc/hosts (wrk runs
in its own mount namespace, as root; nothing on the machine changes). Runs alternate A/B (the order
rotates every repeat); reported: median handshakes/s, median worker CPU per handshake
(utime+stime from /proc) and the medians of the paired CPU ratios lua / static and floor / static.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    CLK_TCK,
    NGINX,
    REPO,
    NginxProcess,
    Procs,
    Row,
    cpu_ticks,
    free_port,
    median,
    parse_wrk,
    wait_for,
    wrk_args,
)
from ingressctl.certs import self_signed_pem
from ingressctl.config import Certificate, GlobalOptions

log = logging.getLogger("bench.handshakes")
HOST = "h000.bench.example.com"


@dataclass(frozen=True)
class Options:
    hosts: int = 100
    seconds: float = 4.0
    repeats: int = 5
    connections: int = 16
    warmup: float = 2.0


@dataclass(frozen=True)
class Run:
    variant: str
    handshakes_per_s: float
    cpu_us_per_handshake: float
    requests: int
    failures: int


HTTP = """daemon off;
master_process on;
worker_processes auto;
pid @DIR@/nginx.pid;
error_log stderr warn;
events {
    worker_connections 16384;
}
http {
    access_log off;
    server_tokens off;
    ssl_protocols @PROTOCOLS@;
    ssl_ciphers "@CIPHERS@";
    ssl_session_cache shared:bench_ssl:10m;
    ssl_session_timeout 10m;
@HTTP@
}
"""

LUA_HTTP = """    lua_package_path "@LUA@/?.lua;;";
    lua_shared_dict ingressctl 8m;
    lua_shared_dict ingressctl_certificates 64m;
    init_by_lua_block {
        require("ingressctl.configuration")
        require("ingressctl.certificates")
    }
    server {
        listen "unix:@DIR@/api.sock";
        location = /configuration/certificates {
            client_max_body_size 0;
            client_body_buffer_size 64m;
            content_by_lua_block {
                require("ingressctl.certificates").call()
            }
        }
    }
"""


def _server(port: int, name: str, cert: str | None, *, default: bool = False, lua: str = "") -> str:
    lines = [f"    server {{\n        listen 127.0.0.1:{port} ssl{' default_server' if default else ''};"]
    lines.append(f'        server_name "{name}";')
    if cert:
        lines.append(f'        ssl_certificate "@DIR@/{cert}.pem";\n        ssl_certificate_key "@DIR@/{cert}.pem";')
    if lua:
        lines.append(f"        ssl_client_hello_by_lua_block {{\n            {lua}\n        }}")
    lines.append("        return 200;\n    }")
    return "\n".join(lines)


def conf(variant: str, port: int, names: list[str], certs: dict[str, Certificate], default: Certificate) -> str:
    options = GlobalOptions()
    lua = {"lua": 'require("ingressctl.certificates").serve()', "floor": "local _ = 0"}.get(variant, "")
    blocks = [LUA_HTTP] if lua else []
    blocks.append(_server(port, "_", default.name, default=True, lua=lua))
    blocks += [_server(port, n, None if lua else certs[n].name) for n in names]
    text = HTTP.replace("@HTTP@", "\n".join(blocks))
    text = text.replace("@PROTOCOLS@", options.ssl_protocols).replace("@CIPHERS@", options.ssl_ciphers)
    text = text.replace("@LUA@", os.environ.get("INGRESSCTL_LUA_DIR", str(REPO / "lua")))
    if lua:
        modules = "/usr/lib/nginx/modules"
        text = f"load_module {modules}/ndk_http_module.so;\nload_module {modules}/ngx_http_lua_module.so;\n" + text
    return text


def _post(sock: Path, document: dict[str, object]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("localhost", timeout=30)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(sock))
    conn.sock = raw
    try:
        conn.request("POST", "/configuration/certificates", body=json.dumps(document).encode())
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _measure(
    variant: str, port: int, workers: Callable[[], list[int]], hosts_file: Path, opts: Options, seconds: float
) -> Run:
    pids = workers()
    before = cpu_ticks(pids)
    args = wrk_args(f"https://{HOST}:{port}/", host=HOST, seconds=seconds, connections=opts.connections)
    args[-1:-1] = ["-H", "Connection: close"]  # before the URL: a new connection, a full handshake, per request
    # wrk resolves HOST (and sends it as SNI) through a private /etc/hosts in its own mount namespace.
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hosts_file), *args],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    result = parse_wrk(out)
    after = cpu_ticks(pids)
    if workers() != pids:
        raise RuntimeError(f"{variant}: nginx workers changed during the run")
    cpu_us = (after - before) / CLK_TCK * 1e6
    return Run(
        variant=variant,
        handshakes_per_s=result.rps,
        cpu_us_per_handshake=cpu_us / max(1, result.requests),
        requests=result.requests,
        failures=result.non_2xx_3xx + result.errors,
    )


def run(tmp: Path, opts: Options) -> tuple[list[Row], dict[str, Any]]:
    names = [f"h{i:03d}.bench.example.com" for i in range(opts.hosts)]
    certs = {n: Certificate.from_pem(*self_signed_pem(n, [n], days=2)) for n in names}
    default = Certificate.from_pem(*self_signed_pem("default", ["default.invalid"], days=2))
    hosts_file = tmp / "hosts"
    hosts_file.write_text(f"127.0.0.1 localhost {HOST}\n")
    raw: dict[str, Any] = {"options": opts.__dict__, "nginx": NGINX}
    with Procs() as procs:
        variants: dict[str, tuple[int, Callable[[], list[int]]]] = {}
        for variant in ("static", "lua", "floor"):
            port = free_port()
            proc = NginxProcess(conf(variant, port, names, certs, default), name=f"tls-{variant}")
            for cert in (default, *certs.values()):
                if variant == "static" or cert is default:
                    path = proc.dir / f"{cert.name}.pem"
                    path.write_bytes(cert.pem)
                    path.chmod(0o600)
            proc.start()
            procs.add(proc.stop)
            variants[variant] = (port, proc.worker_pids)
            if variant != "static":
                document = {
                    "default": default.name,
                    "hosts": {n: certs[n].name for n in names},
                    "certificates": {c.name: c.pem.decode() for c in (default, *certs.values())},
                    "ciphers": GlobalOptions().ssl_ciphers,
                }
                sock = proc.dir / "api.sock"
                wait_for(sock.exists, timeout=10, what="the configuration API socket")
                status, body = _post(sock, document)
                if status != 201:
                    raise RuntimeError(f"the certificate store answered {status}: {body}")
        for name, (port, workers) in variants.items():
            _measure(name, port, workers, hosts_file, opts, opts.warmup)  # warm-up, not recorded
        runs: list[Run] = []
        pairs: list[float] = []
        floor_pairs: list[float] = []
        names_order = list(variants)
        for i in range(opts.repeats):
            order = names_order[i % 3 :] + names_order[: i % 3]  # each goes first in turn
            if i % 2:
                order.reverse()
            got = {name: _measure(name, *variants[name], hosts_file, opts, opts.seconds) for name in order}
            runs += [got[name] for name in order]
            static_us = got["static"].cpu_us_per_handshake
            pairs.append(got["lua"].cpu_us_per_handshake / static_us)
            floor_pairs.append(got["floor"].cpu_us_per_handshake / static_us)
    summary = _summary(runs, pairs, floor_pairs)
    raw.update(runs=[r.__dict__ for r in runs], **summary)
    return _rows(summary, opts), raw


def _summary(runs: list[Run], pairs: list[float], floor_pairs: list[float]) -> dict[str, Any]:
    def med(variant: str, attr: str) -> float:
        return median([getattr(r, attr) for r in runs if r.variant == variant])

    return {
        "lua_handshakes_per_s": med("lua", "handshakes_per_s"),
        "static_handshakes_per_s": med("static", "handshakes_per_s"),
        "lua_cpu_us": med("lua", "cpu_us_per_handshake"),
        "static_cpu_us": med("static", "cpu_us_per_handshake"),
        "cpu_ratio_paired_median": median(pairs),
        "cpu_ratios": pairs,
        "floor_cpu_us": med("floor", "cpu_us_per_handshake"),
        "floor_ratio_paired_median": median(floor_pairs),
        "floor_ratios": floor_pairs,
        "failures": sum(r.failures for r in runs),
    }


def _rows(s: dict[str, Any], opts: Options) -> list[Row]:
    section = f"7 TLS handshakes ({opts.hosts} hosts)"
    ratio = s["cpu_ratio_paired_median"]
    return [
        Row(
            section,
            "handshakes/s Lua store / static files (median)",
            f"{s['lua_handshakes_per_s']:.0f} / {s['static_handshakes_per_s']:.0f}",
        ),
        Row(
            section,
            "worker CPU µs/handshake Lua store / static files (median)",
            f"{s['lua_cpu_us']:.0f} / {s['static_cpu_us']:.0f}",
        ),
        Row(
            section,
            "CPU/handshake ratio (median of paired runs)",
            f"{ratio:.3f}x (runs {min(s['cpu_ratios']):.2f}-{max(s['cpu_ratios']):.2f})",
        ),
        Row(
            section,
            "floor: empty ssl_client_hello_by_lua / static files (CPU, paired median)",
            f"{s['floor_ratio_paired_median']:.3f}x (runs {min(s['floor_ratios']):.2f}-{max(s['floor_ratios']):.2f})",
        ),
        Row(section, "failed requests (non-2xx/3xx + socket errors)", str(s["failures"]), "0", s["failures"] == 0),
    ]
