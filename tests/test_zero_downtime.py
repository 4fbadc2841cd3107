"""Traffic straight through endpoint rolls and reloads: no settle(), no retries.

Client threads send requests the whole time, on fresh connections and on keep-alive ones, while
the test replaces every endpoint of the Service one by one (the way a Deployment rolls: the new
pod is added, then the old one is removed, then stopped) and, in the second test, changes hosts so
that nginx reloads. Every request must get a 2xx and every connect() must succeed.

A reload does close connections: the old workers close idle keep-alive connections (and ones they
accepted but had not read a request from yet) when told to quit. A client sees such a request
fail before any byte of answer came back, and must retry it, as real clients do on a reused
connection. Those read errors are counted and reported, separately for fresh and reused
connections; without a reload there must be none.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness import (
    Controller,
    Pod,
    backend,
    endpoint_slice,
    ingress,
    rule,
    service,
    unix_request,
    wait_for,
    write_manifests,
)

PORT = 18991
HOST = "roll.example.com"
# Bounds of every load loop: requests per client thread, and seconds.
MAX_REQUESTS = 100_000
MAX_SECONDS = 60.0
# A request or an answer that makes no progress for this long is a failure (a timeout).
TIMEOUT = 5.0


@dataclass
class Tally:
    """What the clients saw. Lists hold the errors' descriptions (the first ones are reported)."""

    statuses: Counter[int] = field(default_factory=Counter)
    pods: Counter[str] = field(default_factory=Counter)
    connect_errors: list[str] = field(default_factory=list)
    # The connection was closed before any byte of the answer: on a fresh one, or a reused one.
    closed_fresh: list[str] = field(default_factory=list)
    closed_reused: list[str] = field(default_factory=list)
    other_errors: list[str] = field(default_factory=list)  # timeouts, broken answers
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def non_2xx(self) -> dict[int, int]:
        return {s: n for s, n in self.statuses.items() if not 200 <= s < 300}

    def report(self) -> str:
        return (
            f"{self.requests} answers {dict(self.statuses)}, pods {dict(self.pods)}; "
            f"connect errors {len(self.connect_errors)} {self.connect_errors[:3]}; "
            f"closed before an answer: fresh connections {len(self.closed_fresh)} {self.closed_fresh[:3]}, "
            f"reused keep-alive connections {len(self.closed_reused)} {self.closed_reused[:3]}; "
            f"other errors {len(self.other_errors)} {self.other_errors[:3]}"
        )


def _client(port: int, *, keepalive: bool, stop: threading.Event, tally: Tally) -> None:
    deadline = time.monotonic() + MAX_SECONDS
    conn: http.client.HTTPConnection | None = None
    served = 0  # answers on the current connection
    headers = {"Host": HOST} if keepalive else {"Host": HOST, "Connection": "close"}
    for _ in range(MAX_REQUESTS):
        if stop.is_set() or time.monotonic() > deadline:
            break
        if conn is None:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            except OSError as exc:
                with tally.lock:
                    tally.connect_errors.append(repr(exc))
                time.sleep(0.01)
                continue
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            conn.sock = sock
            served = 0
        try:
            conn.request("GET", "/", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            with tally.lock:
                (tally.closed_reused if served else tally.closed_fresh).append(repr(exc))
            conn.close()
            conn = None
            continue
        except (OSError, http.client.HTTPException) as exc:
            with tally.lock:
                tally.other_errors.append(repr(exc))
            conn.close()
            conn = None
            continue
        served += 1
        try:
            pod = str(json.loads(body)["pod"])
        except (ValueError, KeyError, TypeError):
            pod = "?"
        with tally.lock:
            tally.statuses[resp.status] += 1
            tally.pods[pod] += 1
        if not keepalive or resp.will_close:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


@contextmanager
def traffic(ctl: Controller, *, fresh: int = 2, keepalive: int = 2) -> Iterator[Tally]:
    """Client threads sending requests until the block ends (bounded by MAX_REQUESTS and MAX_SECONDS)."""
    tally, stop = Tally(), threading.Event()
    threads = [
        threading.Thread(
            target=_client, args=(ctl.http_port,), kwargs={"keepalive": k, "stop": stop, "tally": tally}, daemon=True
        )
        for k in [False] * fresh + [True] * keepalive
    ]
    for thread in threads:
        thread.start()
    try:
        yield tally
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads), "a client thread did not stop"


def _manifests(manifests: Path, addresses: list[str], hosts: list[str]) -> None:
    write_manifests(
        manifests,
        "roll.yaml",
        [
            service("roll", target=PORT),
            endpoint_slice("roll", addresses, port=PORT),
            ingress("roll", rules=[rule(h, ("/", "Prefix", backend("roll"))) for h in hosts]),
        ],
    )


def _stored(ctl: Controller) -> set[str]:
    """The endpoint addresses the Lua store holds for the Service."""
    state = json.loads(unix_request(ctl.work_dir / "api" / "lua-api.sock", "GET", "/configuration/backends").body)
    return {
        e["address"] for b in state["document"]["backends"] if b["name"] == "default/roll:80" for e in b["endpoints"]
    }


def _roll(
    ctl: Controller,
    manifests: Path,
    *,
    old: list[Pod],
    new_addresses: list[str],
    hosts: Callable[[int], list[str]],
    register: list[Pod],
    after_step: Callable[[int], object] = lambda _: None,
) -> None:
    """Replaces each old pod by a new one: add the new endpoint, remove the old one, stop the old
    pod once the balancer no longer has it. hosts(step) gives the Ingress's hosts at each step;
    after_step(step) runs at the end of each."""
    current = [p.address for p in old]
    for step, (gone, address) in enumerate(zip(old, new_addresses, strict=True)):
        register.append(Pod(address, PORT))
        current.append(address)
        _manifests(manifests, current, hosts(step))
        wait_for(lambda address=address: address in _stored(ctl), what=f"{address} added")
        current.remove(gone.address)
        _manifests(manifests, current, hosts(step))
        wait_for(lambda gone=gone: gone.address not in _stored(ctl), what=f"{gone.address} removed")
        time.sleep(0.2)  # what was already sent to it finishes (the pod's grace period)
        gone.stop()
        after_step(step)


@pytest.fixture
def rolled_pods() -> Iterator[list[Pod]]:
    """Pods the test starts (registered as they start); all stopped at the end (stop() twice is harmless)."""
    started: list[Pod] = []
    yield started
    for pod in started:
        pod.stop()


def _serve(ctl: Controller, manifests: Path, rolled_pods: list[Pod], addresses: list[str]) -> list[Pod]:
    """Starts the first pods and waits until the Service is served by them."""
    pods = [Pod(a, PORT) for a in addresses]
    rolled_pods.extend(pods)
    _manifests(manifests, addresses, [HOST])
    wait_for(lambda: _stored(ctl) == set(addresses), what="first pods stored")
    wait_for(lambda: ctl.get(HOST).status == 200, what="served")
    return pods


def test_endpoint_roll_under_traffic_loses_nothing(
    controller: Controller, manifests: Path, rolled_pods: list[Pod]
) -> None:
    first = _serve(controller, manifests, rolled_pods, ["127.0.6.1", "127.0.6.2", "127.0.6.3"])
    reloads = controller.reloads()
    new_addresses = ["127.0.6.11", "127.0.6.12", "127.0.6.13"]
    with traffic(controller) as tally:
        time.sleep(0.3)
        _roll(
            controller, manifests, old=first, new_addresses=new_addresses, hosts=lambda _: [HOST], register=rolled_pods
        )
        time.sleep(0.3)
    print(f"endpoint roll: {tally.report()}")
    assert controller.reloads() == reloads, "an endpoint roll must not reload"
    assert tally.requests >= 500, tally.report()
    assert not tally.non_2xx, tally.report()
    assert not tally.connect_errors, tally.report()
    # No reload, so nothing closes a client connection: no request may fail at all.
    assert not (tally.closed_fresh or tally.closed_reused or tally.other_errors), tally.report()
    assert set(new_addresses) <= set(tally.pods), tally.report()


def test_reloads_and_a_roll_under_traffic_answer_every_request(
    controller: Controller, manifests: Path, rolled_pods: list[Pod], record_property: Callable[[str, object], None]
) -> None:
    first = _serve(controller, manifests, rolled_pods, ["127.0.6.21", "127.0.6.22", "127.0.6.23"])
    reloads = controller.reloads()
    new_addresses = ["127.0.6.31", "127.0.6.32", "127.0.6.33"]

    def hosts(step: int) -> list[str]:  # one more host per step: a reload each time
        return [HOST, *(f"extra-{i}.example.com" for i in range(step + 1))]

    with traffic(controller) as tally:
        time.sleep(0.3)

        def reloaded(step: int) -> None:  # each step's host goes live (after the 1 s minimum interval)
            wait_for(lambda: controller.reloads() >= reloads + step + 1, timeout=20, what=f"reload {step + 1}")

        _roll(
            controller,
            manifests,
            old=first,
            new_addresses=new_addresses,
            hosts=hosts,
            register=rolled_pods,
            after_step=reloaded,
        )
        time.sleep(0.3)
    reloaded = controller.reloads() - reloads
    print(f"{reloaded} reloads and an endpoint roll: {tally.report()}")
    record_property("reloads", reloaded)
    record_property("closed_fresh", len(tally.closed_fresh))
    record_property("closed_reused", len(tally.closed_reused))
    assert tally.requests >= 500, tally.report()
    assert not tally.non_2xx, tally.report()
    assert not tally.connect_errors, tally.report()
    assert not tally.other_errors, tally.report()
    # Connections a reload closed are counted above; they failed before any answer came back, so
    # a client retries them safely. They cannot outnumber the connections open at a reload by much:
    # each client thread holds one connection at a time.
    assert len(tally.closed_fresh) + len(tally.closed_reused) <= 4 * reloaded * 2, tally.report()
    assert set(new_addresses) <= set(tally.pods), tally.report()
