"""Rate and connection limits through the real controller, real nginx and real backends on 127.45.x.y:
each limit is exceeded with a bounded burst of requests and answers its documented status, an
allowlisted client is never limited, limit-rate slows a large response measurably, and a host without
limits next to them keeps answering 200."""

from __future__ import annotations

import concurrent.futures
import http.client
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.annotation_backends import echo_pods
from tests.harness import (
    Controller,
    backend,
    endpoint_slice,
    free_port,
    ingress,
    rule,
    running_controller,
    service,
    wait_for,
    write_manifests,
)
from tests.timing import Lag

PORT = free_port()
A = "nginx.ingress.kubernetes.io/"
POD = "127.45.1.1"
LISTED, UNLISTED = "127.45.2.1", "127.45.2.2"  # client source addresses


def host_ingress(name: str, host: str, annotations: dict[str, str]) -> dict[str, Any]:
    return ingress(
        name,
        rules=[rule(host, ("/", "Prefix", backend("echo")))],
        annotations={A + k: v for k, v in annotations.items()},
    )


def status(ctl: Controller, host: str, path: str = "/", *, source: str = UNLISTED, timeout: float = 10.0) -> int:
    """One request to nginx from the client address `source` (loopback: any 127/8 address binds)."""
    conn = http.client.HTTPConnection("127.0.0.1", ctl.http_port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def burst(ctl: Controller, host: str, count: int, *, source: str = UNLISTED) -> Counter[int]:
    """`count` requests at once, one connection each (bounded by count and each by its timeout): they
    arrive within a fraction of a second even on a loaded machine."""
    ctl.settle()
    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        return Counter(pool.map(lambda _: status(ctl, host, source=source), range(count)))


def served(ctl: Controller, *hosts: str) -> None:
    for host in hosts:
        wait_for(lambda host=host: status(ctl, host, source=LISTED) == 200, what=f"{host} served")


def test_rate_and_connection_limits(tmp_path: Path, manifests: Path) -> None:
    write_manifests(
        manifests,
        "options.yaml",
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "options", "namespace": "default"},
                "data": {"limit-conn-status-code": "429"},
            }
        ],
    )
    write_manifests(
        manifests, "services.yaml", [service("echo", target=PORT), endpoint_slice("echo", [POD], port=PORT)]
    )
    allow = f"{LISTED}/32"
    write_manifests(
        manifests,
        "ingresses.yaml",
        [
            host_ingress("plain", "plain.test", {}),
            host_ingress(
                "rps", "rps.test", {"limit-rps": "2", "limit-burst-multiplier": "1", "limit-whitelist": allow}
            ),
            host_ingress("rpm", "rpm.test", {"limit-rpm": "3", "limit-burst-multiplier": "1"}),
            host_ingress("conn", "conn.test", {"limit-connections": "1", "limit-allowlist": allow}),
        ],
    )
    with (
        echo_pods((POD, PORT, {})),
        running_controller(tmp_path, manifests, extra_args=["--configmap", "default/options"]) as ctl,
    ):
        served(ctl, "plain.test", "rps.test", "conn.test")
        conf = (ctl.work_dir / "nginx.conf").read_text()
        # One zone per Ingress and kind, keyed by the client address (through the allowlist's map).
        assert 'limit_req_zone $binary_remote_addr "zone=default_rpm_rpm:5m" rate=3r/m;' in conf
        assert 'limit_req "zone=default_rpm_rpm" burst=3 nodelay;' in conf
        assert "limit_conn_status 429;" in conf and "limit_req_status" not in conf

        # limit-rps 2 with a burst of 2: of 12 quick requests, the first few pass and the rest get
        # 503 (the default limit-req-status-code); at most 1 + burst + the elapsed seconds * 2 pass.
        started = time.monotonic()
        got = burst(ctl, "rps.test", 12)
        elapsed = time.monotonic() - started
        assert set(got) == {200, 503}, got
        assert 3 <= got[200] <= 3 + int(elapsed * 2) + 1, (got, elapsed)
        # The allowlisted client is never limited; a host without limits neither.
        assert burst(ctl, "rps.test", 12, source=LISTED) == Counter({200: 12})
        assert burst(ctl, "plain.test", 12) == Counter({200: 12})

        # limit-rpm 3 with a burst of 3: within a few seconds, 4 pass at most (1 + burst), the rest 503.
        got = burst(ctl, "rpm.test", 8)
        assert set(got) == {200, 503} and got[200] <= 4, got

        # limit-connections 1: a second request while one is in progress (/slow: 2.5 s) gets the
        # ConfigMap's limit-conn-status-code, 429; the allowlisted client gets through.
        def slow(out: list[int], source: str) -> None:
            out.append(status(ctl, "conn.test", "/slow", source=source))

        for source, expected in ((UNLISTED, [200, 429]), (LISTED, [200, 200])):
            held: list[int] = []
            thread = threading.Thread(target=slow, args=(held, source))
            thread.start()
            try:
                time.sleep(0.5)  # the slow request is with the backend by now (whichever came first wins)
                second = status(ctl, "conn.test", source=source)
            finally:
                thread.join(10)
            assert sorted([*held, second]) == expected
        assert status(ctl, "conn.test") == 200  # the connection ended: served again

        # Changing a limit and dropping the allowlist reloads cleanly: the rate of a zone may change;
        # its key may not (nginx refuses that reload), so the allowlist is part of the zone names.
        reloads = ctl.reloads()
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                host_ingress("plain", "plain.test", {}),
                host_ingress("rps", "rps.test", {"limit-rps": "1", "limit-burst-multiplier": "1"}),
                host_ingress("rpm", "rpm.test", {"limit-rpm": "3", "limit-burst-multiplier": "1"}),
                host_ingress("conn", "conn.test", {"limit-connections": "1", "limit-allowlist": allow}),
            ],
        )
        wait_for(
            lambda: 'zone=default_rps_rps:5m" rate=1r/s;' in (ctl.work_dir / "nginx.conf").read_text(), what="new rate"
        )
        wait_for(lambda: ctl.reloads() > reloads, what="reloaded")
        assert ctl.metric("ingressctl_nginx_reload_errors_total") == 0
        time.sleep(1.1)  # a second's worth of rate for the listed client, now limited too
        got = burst(ctl, "rps.test", 6, source=LISTED)
        assert set(got) == {200, 503} and got[200] <= 3, got


def test_limit_rate_slows_a_large_response(tmp_path: Path, manifests: Path, lag: Lag) -> None:
    """limit-rate 1000 KB/s after 512 KB: reading 3 MB of a 64 MB answer takes about 2.5 s more than
    on a host without it (which reads it in well under a second)."""
    write_manifests(
        manifests, "services.yaml", [service("echo", target=PORT), endpoint_slice("echo", ["127.45.1.2"], port=PORT)]
    )
    write_manifests(
        manifests,
        "ingresses.yaml",
        [
            host_ingress("plain", "plain.test", {}),
            host_ingress("slowed", "slowed.test", {"limit-rate": "1000", "limit-rate-after": "512"}),
            host_ingress(
                "unbuffered",
                "unbuffered.test",
                {"limit-rate": "1000", "limit-rate-after": "512", "proxy-buffering": "off"},
            ),
        ],
    )
    with echo_pods(("127.45.1.2", PORT, {})), running_controller(tmp_path, manifests) as ctl:
        served(ctl, "plain.test", "slowed.test", "unbuffered.test")

        def read_3mb(host: str) -> float:
            ctl.settle()
            conn = http.client.HTTPConnection("127.0.0.1", ctl.http_port, timeout=15)
            try:
                started = time.monotonic()
                conn.request("GET", "/big", headers={"Host": host})
                resp = conn.getresponse()
                assert resp.status == 200
                left = 3 << 20
                while left > 0:
                    chunk = resp.read(min(left, 65536))
                    assert chunk, "the answer ended early"
                    left -= len(chunk)
                return time.monotonic() - started
            finally:
                conn.close()

        fast, limited = read_3mb("plain.test"), read_3mb("slowed.test")
        lag.within(fast, 1.0, "3 MB without limit-rate")
        assert limited >= 1.5, limited  # (3 MB - 512 KB) / 1000 KB/s = 2.6 s, less nginx's burst
        lag.within(limited, 6.0, "3 MB under limit-rate")
        # As ingress-nginx documents: with proxy-buffering off nginx does not apply limit_rate to a
        # proxied response (a warning says so).
        unbuffered = read_3mb("unbuffered.test")
        lag.within(unbuffered, 1.0, "3 MB under limit-rate with proxy-buffering off")
        assert "limit-rate has no effect with proxy-buffering off" in ctl.log()
