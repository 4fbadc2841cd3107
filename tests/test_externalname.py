"""ExternalName Services through real nginx and a real DNS server (dnslib) on 127.0.6.53: the
controller resolves the name, honours the answer's TTL, and a changed answer moves traffic without a
reload. Loopback answers are refused by default (and permitted here only by --externalname-allow-cidr);
link-local/metadata answers and the Service range stay refused."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import AAAA, QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from ingressctl.sources.externalname import REFUSED, Policy
from tests.harness import (
    backend,
    free_port,
    ingress,
    pods,
    rule,
    running_controller,
    wait_for,
    write_manifests,
)

PORT = 18973
HOST = "ext.example"
NAME = "app.ext.test"


class Zone(BaseResolver):  # type: ignore[misc]
    """Answers A/AAAA for the names it holds, with their TTL; counts the questions per name."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[list[str], int]] = {}
        self.queries: dict[str, int] = {}
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        with self.lock:
            self.queries[name] = self.queries.get(name, 0) + 1
            addresses, ttl = self.records.get(name, ([], 0))
        if name not in self.records:
            reply.header.rcode = 3  # NXDOMAIN
        for address in addresses:
            is_v6 = ":" in address
            if request.q.qtype == (QTYPE.AAAA if is_v6 else QTYPE.A):
                rtype = QTYPE.AAAA if is_v6 else QTYPE.A
                reply.add_answer(RR(request.q.qname, rtype, rdata=(AAAA if is_v6 else A)(address), ttl=ttl))
        return reply

    def set(self, name: str, addresses: list[str], ttl: int) -> None:
        with self.lock:
            self.records[name] = (addresses, ttl)


@pytest.fixture
def zone() -> Iterator[tuple[Zone, int]]:
    resolver = Zone()
    port = free_port()
    server = DNSServer(resolver, address="127.0.6.53", port=port)
    server.start_thread()
    try:
        yield resolver, port
    finally:
        server.stop()
        server.server.server_close()


def _setup(manifests: Path, external_name: str = NAME) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "default", "name": "ext"},
        "spec": {"type": "ExternalName", "externalName": external_name, "ports": [{"port": PORT}]},
    }
    write_manifests(
        manifests, "app.yaml", [service, ingress("web", rules=[rule(HOST, ("/", "Prefix", backend("ext", PORT)))])]
    )


def _controller(tmp_path: Path, manifests: Path, dns_port: int, *extra: str) -> Any:
    args = ["--externalname-dns-server", f"127.0.6.53:{dns_port}", *extra]
    return running_controller(tmp_path, manifests, extra_args=args)


def test_resolved_followed_without_reload(tmp_path: Path, manifests: Path, zone: tuple[Zone, int]) -> None:
    resolver, dns_port = zone
    resolver.set(NAME, ["127.0.6.1"], ttl=1)
    _setup(manifests)
    with (
        pods(["127.0.6.1", "127.0.6.2"], PORT),
        _controller(tmp_path, manifests, dns_port, "--externalname-allow-cidr", "127.0.6.0/24") as ctl,
    ):
        wait_for(lambda: ctl.get(HOST).pod == "127.0.6.1", timeout=15, what="served by the resolved address")
        ctl.settle()  # the reload that served it is counted once its hand-over is over
        reloads = ctl.reloads()
        resolver.set(NAME, ["127.0.6.2"], ttl=30)
        wait_for(lambda: ctl.get(HOST).pod == "127.0.6.2", timeout=10, what="the new answer (TTL 1 s) served")
        assert ctl.reloads() == reloads  # a Lua update, no reload
        # TTL 30 s is honoured: no new question for a while (one A and one AAAA per lookup).
        asked = resolver.queries[NAME]
        for _ in range(20):
            assert ctl.get(HOST).pod == "127.0.6.2"
        time.sleep(3)
        assert resolver.queries[NAME] == asked
        # The name goes away (NXDOMAIN after the TTL): no endpoint, 503. Shortened by a Service update.
        _setup(manifests, "gone.ext.test")
        wait_for(lambda: ctl.get(HOST).status == 503, timeout=10, what="503 for an unresolvable name")
        assert resolver.queries.get("gone.ext.test", 0) >= 1


def test_loopback_answer_refused_by_default(tmp_path: Path, manifests: Path, zone: tuple[Zone, int]) -> None:
    resolver, dns_port = zone
    resolver.set(NAME, ["127.0.6.1", "169.254.169.254"], ttl=1)
    _setup(manifests)
    with pods(["127.0.6.1"], PORT) as started, _controller(tmp_path, manifests, dns_port) as ctl:
        wait_for(lambda: "refused addresses 127.0.6.1, 169.254.169.254" in ctl.log(), timeout=10, what="refusal")
        assert ctl.get(HOST).status == 503
        assert started[0].requests == 0


def test_bad_name_rejected_with_reason(tmp_path: Path, manifests: Path, zone: tuple[Zone, int]) -> None:
    _, dns_port = zone
    _setup(manifests, "bad_name..test")
    with _controller(tmp_path, manifests, dns_port) as ctl:
        assert ctl.get(HOST).status == 503
        wait_for(lambda: "externalName 'bad_name..test' is not a DNS-1123 host name" in ctl.log(), what="reason")


def test_policy() -> None:
    cluster = ipaddress.ip_network("10.96.0.0/12")
    policy = Policy(refused=(*REFUSED, cluster))
    for refused in (
        "127.0.0.1",
        "127.9.9.9",
        "169.254.169.254",
        "169.254.1.1",
        "100.100.100.200",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "0.0.0.0",
        "10.96.0.10",
        "224.0.0.1",
    ):
        assert not policy.permits(refused), refused
    for permitted in ("203.0.113.5", "10.0.0.1", "2001:db8::1", "192.168.1.1"):
        assert policy.permits(permitted), permitted
    allowing = Policy(refused=(*REFUSED, cluster), allowed=(ipaddress.ip_network("127.0.6.0/24"),))
    assert allowing.permits("127.0.6.9") and not allowing.permits("127.0.7.1")
    assert not allowing.permits("169.254.169.254")
