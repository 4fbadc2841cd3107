"""End to end through the Kubernetes API: `ingressctl run` (real nginx, real Lua balancer) as a
subprocess with no --manifests, fed by the fake API server over HTTP through kubernetes-asyncio."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.certs import make_cert, tls_secret
from tests.fakeapi.threaded import ThreadedFakeApi, threaded_fake_api
from tests.harness import (
    QUIET,
    Controller,
    backend,
    endpoint_slice,
    free_port,
    ingress,
    ingress_class,
    pods,
    rule,
    running_controller,
    service,
    wait_for,
)
from tests.timing import Lag

# The backends' port: free now, so concurrent runs of the suite on one machine do not collide.
PORT = free_port()
LB = [{"ip": "203.0.113.10"}]
LEASE = ["--lease-duration", "3", "--lease-renew-deadline", "2", "--lease-retry-period", "0.5"]


def lb_service(addresses: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "lb", "namespace": "ingressctl"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
        "status": {"loadBalancer": {"ingress": addresses}},
    }


@pytest.fixture
def cluster() -> Iterator[ThreadedFakeApi]:
    with threaded_fake_api(bookmark_interval=1.0) as api:
        api.create(ingress_class())
        api.create(lb_service(LB))
        yield api


@contextlib.contextmanager
def api_controller(tmp_path: Path, api: ThreadedFakeApi, name: str, *flags: str) -> Iterator[Controller]:
    kubeconfig = api.write_kubeconfig(tmp_path / f"kubeconfig-{name}")
    (tmp_path / name).mkdir()
    with running_controller(
        tmp_path / name,
        None,
        extra_args=["--kubeconfig", str(kubeconfig), "--publish-service", "ingressctl/lb", *LEASE, *flags],
        env={"POD_NAMESPACE": "ingressctl", "POD_NAME": name},
    ) as ctl:
        yield ctl


def status_of(api: ThreadedFakeApi, name: str) -> Any:
    return (api.get("Ingress", "default", name).get("status") or {}).get("loadBalancer", {}).get("ingress")


def lease_holder(api: ThreadedFakeApi) -> Any:
    return api.get("Lease", "ingressctl", "ingressctl-leader")["spec"]["holderIdentity"]


def web(name: str, host: str, **kwargs: Any) -> dict[str, Any]:
    return ingress(name, rules=[rule(host, ("/", "Prefix", backend("web")))], **kwargs)


def test_serving_follows_the_api(tmp_path: Path, cluster: ThreadedFakeApi) -> None:
    api = cluster
    with pods(["127.0.9.1", "127.0.9.2"], PORT), api_controller(tmp_path, api, "c1") as ctl:
        # New host served, and its status written.
        api.create(service("web", target=PORT))
        api.create(endpoint_slice("web", ["127.0.9.1"], port=PORT))
        api.create(web("web", "a.example.com"))
        wait_for(lambda: ctl.get("a.example.com").pod == "127.0.9.1", what="new host served")
        wait_for(lambda: status_of(api, "web") == LB, what="status written")

        # Endpoints changed: no reload, the balancer follows.
        reloads = ctl.reloads()
        api.update(endpoint_slice("web", ["127.0.9.2"], port=PORT))
        wait_for(lambda: ctl.get("a.example.com").pod == "127.0.9.2", what="new endpoint used")
        assert ctl.reloads() == reloads

        # TLS from a Secret, then rotated.
        cert, key = make_cert("a.example.com")
        api.create(tls_secret("a-tls", cert, key))
        api.update(web("web", "a.example.com", tls=[{"hosts": ["a.example.com"], "secretName": "a-tls"}]))
        wait_for(
            lambda: (ctl.get("a.example.com", tls=True).peer_cert or {}).get("subject") == "CN=a.example.com",
            what="certificate from the Secret",
        )
        first = ctl.get("a.example.com", tls=True).peer_cert
        new_cert, new_key = make_cert("a.example.com")
        api.update(tls_secret("a-tls", new_cert, new_key))
        wait_for(
            lambda: (
                (ctl.get("a.example.com", tls=True).peer_cert or {}).get("der") not in (None, first and first["der"])
            ),
            what="rotated certificate",
        )

        # Another class is never served and never gets status.
        api.create(web("theirs", "b.example.com", class_name="other"))
        api.create(web("marker", "c.example.com"))  # once this is served, "theirs" was seen too
        wait_for(lambda: ctl.get("c.example.com").status == 200, what="marker served")
        assert ctl.get("b.example.com").status == 404
        wait_for(lambda: status_of(api, "marker") == LB, what="marker status")
        assert status_of(api, "theirs") is None
        assert api.count(method="PUT", path_contains="/ingresses/theirs/") == 0

        # A rejected (here: degraded) Ingress gets one Warning Event, however many syncs follow.
        api.create(ingress("broken", rules=[rule("bad.example.com", ("/", "Prefix", backend("missing")))]))
        wait_for(lambda: any(e["involvedObject"]["name"] == "broken" for e in api.list("Event")), what="event")
        for i in range(3):  # more syncs
            syncs = ctl.metric("ingressctl_syncs_total")
            api.update(endpoint_slice("web", ["127.0.9.1", "127.0.9.2"][: 1 + i % 2], port=PORT))
            wait_for(lambda syncs=syncs: ctl.metric("ingressctl_syncs_total") > syncs, what=f"sync {i + 1}")
        time.sleep(QUIET)  # the last sync's write-back, if any, has happened
        broken = [e for e in api.list("Event") if e["involvedObject"]["name"] == "broken"]
        assert len(broken) == 1 and broken[0]["type"] == "Warning" and broken[0]["count"] == 1
        assert broken[0]["involvedObject"]["uid"] == api.get("Ingress", "default", "broken")["metadata"]["uid"]
        assert broken[0]["message"].startswith("spec.rules[0]") and "default/missing" in broken[0]["message"]

        # An invalid Ingress is rejected alone, with an Event naming the field.
        api.create(ingress("hostile", rules=[rule("h.example.com", ("/x;return 200", "Prefix", backend("web")))]))
        wait_for(lambda: any(e["involvedObject"]["name"] == "hostile" for e in api.list("Event")), what="event")
        (hostile,) = [e for e in api.list("Event") if e["involvedObject"]["name"] == "hostile"]
        assert hostile["message"].startswith("spec.rules[0].http.paths[0].path") and "rejected" in hostile["message"]
        assert ctl.get("h.example.com", "/x;return%20200").status == 404
        assert ctl.get("c.example.com").status == 200

        # The Service goes away (503) and comes back.
        api.delete("Service", "default", "web")
        wait_for(lambda: ctl.get("c.example.com").status == 503, what="Service deleted")
        api.create(service("web", target=PORT))
        wait_for(lambda: ctl.get("c.example.com").status == 200, what="Service back")

        # Deleted -> 404.
        api.delete("Ingress", "default", "web")
        wait_for(lambda: ctl.get("a.example.com").status == 404, what="deleted Ingress not served")


@pytest.mark.slow
def test_watch_faults_and_an_api_outage_keep_serving(tmp_path: Path, cluster: ThreadedFakeApi, lag: Lag) -> None:
    api = cluster
    with pods(["127.0.9.11", "127.0.9.12"], PORT), api_controller(tmp_path, api, "c1") as ctl:
        api.create(service("web", target=PORT))
        api.create(endpoint_slice("web", ["127.0.9.11"], port=PORT))
        api.create(web("web", "a.example.com"))
        wait_for(lambda: ctl.get("a.example.com").pod == "127.0.9.11", what="served")

        # A dropped stream and a 410 in the middle of changes.
        api.drop_watches()
        api.create(web("two", "two.example.com"))
        wait_for(lambda: ctl.get("two.example.com").status == 200, what="change after a dropped stream")
        api.stall()
        api.create(web("three", "three.example.com"))
        api.delete("Ingress", "default", "two")
        api.update(endpoint_slice("web", ["127.0.9.12"], port=PORT))
        api.compact(expire_watches=True)
        api.stall(False)
        wait_for(lambda: ctl.get("three.example.com").status == 200, what="change after 410")
        wait_for(lambda: ctl.get("two.example.com").status == 404, what="delete after 410")
        wait_for(lambda: ctl.get("a.example.com").pod == "127.0.9.12", what="endpoints after 410")

        # The API goes away: traffic keeps flowing; changes made meanwhile show up when it is back.
        api.stop()
        api.create(web("four", "four.example.com"))
        api.update(endpoint_slice("web", ["127.0.9.11"], port=PORT))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert ctl.get("a.example.com").pod == "127.0.9.12"
            assert ctl.health("/healthz") == 200 and ctl.health("/readyz") == 200
            time.sleep(0.25)
        api.restart()
        back = time.monotonic()
        # Each informer retries on its own backoff, capped at 5 s (jittered): all are back within seconds.
        wait_for(lambda: ctl.get("four.example.com").status == 200, timeout=30, what="caught up after the outage")
        wait_for(lambda: ctl.get("a.example.com").pod == "127.0.9.11", timeout=30, what="endpoints after the outage")
        lag.within(time.monotonic() - back, 8, "catching up after the outage")


def test_one_leader_writes_status_and_hands_over_on_crash_and_on_stop(
    tmp_path: Path, cluster: ThreadedFakeApi, lag: Lag
) -> None:
    api = cluster
    api.create(service("web", target=PORT))
    api.create(endpoint_slice("web", ["127.0.9.21"], port=PORT))
    api.create(web("web", "a.example.com"))
    with (
        pods(["127.0.9.21"], PORT),
        api_controller(tmp_path, api, "c1") as c1,
        api_controller(tmp_path, api, "c2") as c2,
    ):
        for ctl in (c1, c2):  # every replica serves
            wait_for(lambda ctl=ctl: ctl.get("a.example.com").pod == "127.0.9.21", what="served")
        wait_for(lambda: status_of(api, "web") == LB, what="status written")
        time.sleep(1)
        assert api.count(method="PUT", path_contains="/ingresses/web/status") == 1  # by one replica only
        holder = api.get("Lease", "ingressctl", "ingressctl-leader")["spec"]["holderIdentity"]
        leader, follower = (c1, c2) if holder == "c1" else (c2, c1)

        assert leader.process is not None
        leader.process.send_signal(signal.SIGKILL)  # a crash: the Lease is not released
        killed = time.monotonic()
        wait_for(
            lambda: api.get("Lease", "ingressctl", "ingressctl-leader")["spec"]["holderIdentity"] != holder,
            timeout=20,
            what="takeover",
        )
        lag.within(time.monotonic() - killed, 3 + 0.5 + 1.5, "takeover (lease duration + retry period + slack)")
        api.update_status(lb_service([{"ip": "198.51.100.7"}]))
        wait_for(lambda: status_of(api, "web") == [{"ip": "198.51.100.7"}], what="new leader writes")
        assert follower.get("a.example.com").pod == "127.0.9.21"

        # A graceful stop (SIGTERM) releases the Lease: a third replica takes over at once.
        with api_controller(tmp_path, api, "c3") as c3:
            wait_for(lambda: c3.get("a.example.com").pod == "127.0.9.21", what="c3 serves")
            follower.stop()
            stopped = time.monotonic()
            wait_for(lambda: lease_holder(api) == "c3", timeout=10, what="c3 leads")
            lag.within(time.monotonic() - stopped, 1.5, "takeover after a release (well before the 3 s lease expiry)")
