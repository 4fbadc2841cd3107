"""The Kubernetes API source (informers + merging) against the fake API, through the real client."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from ingressctl import apimode
from ingressctl.kubeapi import client as kubeclient
from ingressctl.model import EventType
from ingressctl.sources import kube, kubeflags
from ingressctl.sources.secrets import ReferencedSecrets
from tests.fakeapi import FakeApi
from tests.fakeapi.helpers import (
    FAST,
    Collector,
    api_client,
    config_map,
    endpoint_slice,
    ingress,
    ingress_class,
    opaque_secret,
    service,
    tls_secret,
)
from tests.timing import Lag


def is_tls(obj: Any) -> bool:
    """The Secret types the source watches: TLS, and Opaque (basic auth)."""
    return obj.get("type") in ("kubernetes.io/tls", "Opaque")


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    async with FakeApi.running(bookmark_interval=0.5) as fake:
        yield fake


@pytest.fixture
async def kube_client(api: FakeApi, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    async with api_client(api, tmp_path) as c:
        yield c


def make_source(
    kube_client: client.ApiClient,
    *,
    namespaces: tuple[str, ...] = (),
    configmap: tuple[str, str] | None = ("ingressctl", "config"),
    timing: Any = FAST,
    secrets: ReferencedSecrets | None = None,
) -> kube.KubeSource:
    return kube.KubeSource(
        kube.collections(kube_client, namespaces=namespaces, configmap=configmap),
        timing=timing,
        empty_kinds=kube.empty_kinds(configmap),
        secrets=secrets,
    )


def populate(api: FakeApi) -> None:
    api.create(ingress_class())
    for ns in ("a", "b"):
        for i in range(3):  # more than a page (page_size=2)
            api.create(ingress(f"ing{i}", ns, host=f"h{i}.{ns}.example.com"))
        api.create(service("web", ns))
        api.create(endpoint_slice("web", ["10.0.0.1"], ns))
        api.create(tls_secret("cert", ns))
        api.create(opaque_secret("password", ns))
    api.create(config_map("config", "ingressctl", **{"proxy-body-size": "8m"}))
    api.create(config_map("other", "ingressctl"))


async def test_initial_list_then_synced(api: FakeApi, kube_client: client.ApiClient) -> None:
    populate(api)
    async with Collector(make_source(kube_client)) as events:
        await events.until(events.synced.is_set)
        before_sync = events.events[: len(events.events) - 1]
        assert events.events[-1].type is EventType.SYNCED
        assert all(e.type is EventType.REPLACED for e in before_sync)
        assert sorted(e.kind for e in before_sync) == sorted(
            ["Ingress", "IngressClass", "Service", "EndpointSlice", "Secret", "Secret", "ConfigMap", "Endpoints"]
        )
        assert events.names("Ingress") == [f"{ns}/ing{i}" for ns in "ab" for i in range(3)]
        # Only kubernetes.io/tls and Opaque (basic auth's users): never service account tokens and the like.
        assert events.names("Secret") == ["a/cert", "a/password", "b/cert", "b/password"]
        assert events.names("ConfigMap") == ["ingressctl/config"]  # only ours
        assert events.names("IngressClass") == ["ingressctl"]
        assert events.mirror["Endpoints"] == {}
        # Objects look like their manifests: TypeMeta restored on list items.
        obj = events.mirror["Ingress"][("a", "ing0")]
        assert (obj["apiVersion"], obj["kind"]) == ("networking.k8s.io/v1", "Ingress")
        assert list(obj)[:2] == ["apiVersion", "kind"]
        assert obj["spec"]["rules"][0]["host"] == "h0.a.example.com"
        # Paging was used: six ingresses in pages of two.
        assert api.count(path_contains="/ingresses", watch=False) == 3


async def test_create_update_delete_reach_the_stream(api: FakeApi, kube_client: client.ApiClient) -> None:
    populate(api)
    async with Collector(make_source(kube_client)) as events:
        await events.until(events.synced.is_set)
        start = len(events.events)
        api.create(ingress("new", "a", host="new.example.com"))
        api.update(service("web", "a", port=8080))
        api.update(endpoint_slice("web", ["10.0.0.2", "10.0.0.3"], "a"))
        api.update(tls_secret("cert", "a", cert=b"rotated"))
        api.delete("Ingress", "b", "ing1")
        api.update(config_map("config", "ingressctl", **{"proxy-body-size": "16m"}))
        api.update(config_map("other", "ingressctl", x="y"))  # not ours: never reported
        token = {**opaque_secret("another", "a"), "type": "kubernetes.io/service-account-token"}
        api.create(token)  # neither TLS nor Opaque: never reported
        await events.until(lambda: len(events.events) - start >= 6)
        await asyncio.sleep(0.3)
        got = [(e.type.value, e.kind, e.obj["metadata"]["name"]) for e in events.events[start:] if e.obj]
        assert sorted(got) == sorted(
            [
                ("ADDED", "Ingress", "new"),
                ("MODIFIED", "Service", "web"),
                ("MODIFIED", "EndpointSlice", "web-abc"),
                ("MODIFIED", "Secret", "cert"),
                ("DELETED", "Ingress", "ing1"),
                ("MODIFIED", "ConfigMap", "config"),
            ]
        )
        crt = events.mirror["Secret"][("a", "cert")]["data"]["tls.crt"]
        assert base64.b64decode(crt) == b"rotated"
        for kind in ("Ingress", "Service", "EndpointSlice"):
            assert events.matches(api, kind)
        assert events.matches(api, "Secret", where=is_tls)


async def test_dropped_stream_resumes_from_resource_version(api: FakeApi, kube_client: client.ApiClient) -> None:
    populate(api)
    source = make_source(kube_client)
    async with Collector(source) as events:
        await events.until(events.synced.is_set)
        lists = sum(i.lists for i in source.informers)
        watches = api.count(watch=True)
        api.drop_watches()
        api.create(ingress("while-dropped", "a"))
        api.delete("Service", "b", "web")
        await events.until(lambda: events.names("Ingress").count("a/while-dropped") == 1)
        await events.until(lambda: "b/web" not in events.names("Service"))
        assert sum(i.lists for i in source.informers) == lists  # resumed, no relist
        assert api.count(watch=True) > watches
        assert events.matches(api, "Ingress") and events.matches(api, "Service")


async def test_gone_in_the_middle_of_changes_relists_without_loss_or_duplicates(
    api: FakeApi, kube_client: client.ApiClient
) -> None:
    populate(api)
    source = make_source(kube_client)
    async with Collector(source) as events:
        await events.until(events.synced.is_set)
        api.create(ingress("seen-before", "a"))
        await events.until(lambda: "a/seen-before" in events.names("Ingress"))
        api.stall()  # the informers fall behind...
        api.create(ingress("created", "a"))
        api.update(ingress("ing0", "a", host="changed.example.com"))
        api.delete("Ingress", "b", "ing2")
        api.delete("Ingress", "a", "seen-before")
        api.update(endpoint_slice("web", ["10.9.9.9"], "b"))
        api.compact(expire_watches=True)  # ...and their history is gone: 410 on every watch
        api.stall(False)
        api.create(ingress("after", "b"))
        await events.until(lambda: events.matches(api, "Ingress") and events.matches(api, "EndpointSlice"))
        replaced = [e for e in events.events if e.type is EventType.REPLACED and e.kind == "Ingress"]
        assert len(replaced) == 2  # the first list and the relist after 410
        host = events.mirror["Ingress"][("a", "ing0")]["spec"]["rules"][0]["host"]
        assert host == "changed.example.com"
        assert "a/seen-before" not in events.names("Ingress") and "b/ing2" not in events.names("Ingress")
        await asyncio.sleep(0.5)  # nothing more trickles in
        assert events.matches(api, "Ingress") and events.matches(api, "Service")
        # Collector's exit asserts that no event was replayed or lost along the way.


@pytest.mark.slow
async def test_api_down_for_10s_then_catches_up(api: FakeApi, kube_client: client.ApiClient, lag: Lag) -> None:
    populate(api)
    timing = dataclasses.replace(FAST, backoff_initial=0.5, backoff_max=5.0)  # the production backoff
    source = make_source(kube_client, timing=timing)
    async with Collector(source) as events:
        await events.until(events.synced.is_set)
        await api.stop()
        await asyncio.sleep(1)
        api.create(ingress("made-while-down", "a"))
        api.update(endpoint_slice("web", ["10.1.1.1"], "a"))
        await asyncio.sleep(9)
        await api.restart()
        back = asyncio.get_running_loop().time()
        await events.until(lambda: events.matches(api, "Ingress") and events.matches(api, "EndpointSlice"), timeout=30)
        # The backoff is capped at 5 s (jittered): back within seconds.
        lag.within(asyncio.get_running_loop().time() - back, 6, "catching up after the outage")


async def test_500s_on_list_back_off_without_a_hot_loop(api: FakeApi, kube_client: client.ApiClient, lag: Lag) -> None:
    populate(api)
    api.fail(500, watch=False, method="GET")
    source = make_source(kube_client, configmap=None)
    async with Collector(source) as events:
        await asyncio.sleep(2)
        assert not events.synced.is_set()
        per_collection = api.count(path_contains="/ingresses", watch=False)
        # Backoff from 0.1 s doubling to 1 s, jittered to [d/2, d]: 4 to 7 attempts in 2 s (a hot loop
        # would make thousands).
        assert per_collection <= 8, per_collection
        lag.at_least(per_collection, 4, "list attempts in 2 s")
        total = api.count(watch=False)
        assert total <= 8 * len(source.informers)
        api.clear_failures()
        await events.until(events.synced.is_set, timeout=10)
        assert events.names("Ingress") == [f"{ns}/ing{i}" for ns in "ab" for i in range(3)]


async def test_watch_namespaces_limit_and_merge_relists(api: FakeApi, kube_client: client.ApiClient) -> None:
    populate(api)
    api.create(ingress("elsewhere", "c"))
    source = make_source(kube_client, namespaces=("a", "b"))
    async with Collector(source) as events:
        await events.until(events.synced.is_set)
        assert events.names("Ingress") == [f"{ns}/ing{i}" for ns in "ab" for i in range(3)]
        assert all("/namespaces/" in r.path for r in api.requests if "/ingresses" in r.path)
        # A relist in one namespace still reports the whole kind.
        api.stall()
        api.create(ingress("new", "a"))
        api.compact(expire_watches=True)
        api.stall(False)
        await events.until(lambda: "a/new" in events.names("Ingress"))
        await asyncio.sleep(0.3)
        last = [e for e in events.events if e.type is EventType.REPLACED and e.kind == "Ingress"][-1]
        names = sorted(f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in last.objects)
        assert "b/ing0" in names and "a/new" in names and "c/elsewhere" not in names


async def test_stalled_watch_is_abandoned_after_idle_timeout(api: FakeApi, kube_client: client.ApiClient) -> None:
    populate(api)
    async with Collector(make_source(kube_client)) as events:
        await events.until(events.synced.is_set)
        watches = api.count(path_contains="/ingresses", watch=True)
        api.stall()
        await asyncio.sleep(FAST.idle_timeout + 1)
        assert api.count(path_contains="/ingresses", watch=True) > watches  # gave up and reconnected
        api.create(ingress("late", "a"))
        api.stall(False)
        await events.until(lambda: "a/late" in events.names("Ingress"))


async def test_objects_larger_than_aiohttp_line_limit(api: FakeApi, kube_client: client.ApiClient) -> None:
    async with Collector(make_source(kube_client)) as events:
        await events.until(events.synced.is_set)
        big = tls_secret("big", "a", cert=b"x" * 400_000)
        api.create(big)
        await events.until(lambda: "a/big" in events.names("Secret"))
        assert events.mirror["Secret"][("a", "big")]["data"] == big["data"]


def test_flags_and_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        kubeflags.add_arguments(parser)
        return parser.parse_args(argv)

    args = parse()
    assert kubeflags.watch_namespaces(args) == () and args.update_status is True
    assert args.election_id == "ingressctl-leader" and args.publish_service is None
    args = parse("--watch-namespace", "b", "--watch-namespace", "a", "--update-status=false")
    assert kubeflags.watch_namespaces(args) == ("a", "b")
    assert args.update_status is False
    monkeypatch.setenv("INGRESSCTL_WATCH_NAMESPACE", "x, y")
    monkeypatch.setenv("INGRESSCTL_PUBLISH_SERVICE", "ingress/lb")
    monkeypatch.setenv("INGRESSCTL_UPDATE_STATUS", "false")
    monkeypatch.setenv("INGRESSCTL_ELECTION_ID", "mine")
    monkeypatch.setenv("INGRESSCTL_LEASE_DURATION", "30")
    args = parse()
    assert kubeflags.watch_namespaces(args) == ("x", "y") and args.publish_service == ("ingress", "lb")
    assert args.update_status is False and args.election_id == "mine" and args.lease_duration == 30.0
    assert kubeflags.watch_namespaces(parse("--watch-namespace", "z")) == ("z",)  # the flag wins
    assert parse("--update-status").update_status is True
    with pytest.raises(SystemExit):
        parse("--publish-service", "no-namespace")


def test_pod_namespace_and_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "ingress-system")
    monkeypatch.setenv("POD_NAME", "ingressctl-7d9f-abcde")
    assert kubeclient.pod_namespace() == "ingress-system"
    assert kubeclient.default_identity() == "ingressctl-7d9f-abcde"
    monkeypatch.delenv("POD_NAMESPACE")
    monkeypatch.delenv("POD_NAME")
    monkeypatch.setattr(kubeclient, "SERVICE_ACCOUNT", tmp_path)
    assert kubeclient.pod_namespace() == "default"
    (tmp_path / "namespace").write_text("from-service-account\n")
    assert kubeclient.pod_namespace() == "from-service-account"
    assert kubeclient.default_identity().endswith(f"_{os.getpid()}")


async def test_build_from_a_kubeconfig_and_close(api: FakeApi, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    kubeflags.add_arguments(parser)
    path = api.write_kubeconfig(tmp_path / "kubeconfig", context="fake")
    args = parser.parse_args(["--kubeconfig", str(path), "--context", "fake", "--watch-namespace", "a"])
    api.create(ingress("x", "a"))
    api.create(ingress("y", "b"))
    mode = await apimode.build(args, timing=FAST, identity="me")
    assert len(mode.publishers) == 2 and len(mode.jobs) == 3  # leader election, Events, status
    async with mode.running(), Collector(mode.source) as events:
        await events.until(events.synced.is_set)
        assert events.names("Ingress") == ["a/x"]
    # Leaving the wiring stopped the source and every write-back job: no watch stays open.
    await asyncio.sleep(0.1)
    assert api.open_watches == 0


async def test_collection_count_matches(kube_client: client.ApiClient) -> None:
    for namespaces in ((), ("a",), ("a", "b", "c")):
        for configmap in (None, ("ns", "cfg")):
            made = kube.collections(kube_client, namespaces=namespaces, configmap=configmap)
            assert len(made) == kube.collection_count(namespaces=namespaces, configmap=configmap)


async def test_unusable_client_configuration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(kubeclient.ConfigError, match="no Kubernetes configuration"):
        await kubeclient.load_client(None, None)
    with pytest.raises(kubeclient.ConfigError, match="/nonexistent"):
        await kubeclient.load_client("/nonexistent", None)
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\ncurrent-context: x\n")
    with pytest.raises(kubeclient.ConfigError):
        await kubeclient.load_client(str(tmp_path / "kubeconfig"), "missing-context")


async def test_expired_continue_token_restarts_the_list(api: FakeApi, kube_client: client.ApiClient) -> None:
    populate(api)
    api.fail(410, path_contains="/ingresses", query_has="continue", times=1)
    async with Collector(make_source(kube_client)) as events:
        await events.until(events.synced.is_set)
        assert events.names("Ingress") == [f"{ns}/ing{i}" for ns in "ab" for i in range(3)]
        pages = [r for r in api.requests if r.path.endswith("/ingresses") and not r.watch]
        # first page, expired second page, then the whole list again from the start (3 pages)
        assert ["continue" in r.query for r in pages] == [False, True, False, True, True]


async def test_gone_as_an_http_410_also_relists(kube_client: client.ApiClient, api: FakeApi) -> None:
    api.gone_as_event = False
    populate(api)
    source = make_source(kube_client)
    async with Collector(source) as events:
        await events.until(events.synced.is_set)
        api.stall()
        api.delete("Ingress", "a", "ing0")
        api.compact()
        api.drop_watches()
        api.stall(False)
        await events.until(lambda: "a/ing0" not in events.names("Ingress"))
        assert events.matches(api, "Ingress")
        replaced = [e for e in events.events if e.type is EventType.REPLACED and e.kind == "Ingress"]
        assert len(replaced) == 2


@pytest.mark.parametrize("namespaces", [(), ("a", "b")])
async def test_only_referenced_secrets_are_passed_on(
    api: FakeApi, kube_client: client.ApiClient, namespaces: tuple[str, ...]
) -> None:
    for ns in ("a", "b"):
        api.create(tls_secret("cert", ns))
        api.create(tls_secret("unused", ns))
    api.create(tls_secret("default-cert", "b"))
    api.create(ingress("secure", "a", tls_secret="cert"))
    source = make_source(kube_client, namespaces=namespaces, secrets=ReferencedSecrets(static=[("b", "default-cert")]))
    async with Collector(source) as events:
        await events.until(events.synced.is_set)
        assert events.names("Secret") == ["a/cert", "b/default-cert"]
        # Listed once per namespace and type (TLS, Opaque), after the Ingresses.
        assert [e.kind for e in events.events].count("Secret") == 2 * max(1, len(namespaces))

        # A new reference to a Secret that was dropped: one relist brings it.
        api.create(ingress("secure", "b", tls_secret="cert"))
        await events.until(lambda: "b/cert" in events.names("Secret"))
        assert source.secret_relists == 1
        # Rotation of a referenced Secret passes; changes to unreferenced ones do not.
        start = len(events.events)
        api.update(tls_secret("unused", "a", cert=b"x"))
        api.update(tls_secret("cert", "b", cert=b"rotated"))
        await events.until(lambda: len(events.events) > start)
        await asyncio.sleep(0.3)
        assert [(e.type.value, e.obj["metadata"]["name"]) for e in events.events[start:] if e.obj] == [
            ("MODIFIED", "cert")
        ]
        # Nothing references it any more: the consumer is told to drop it.
        api.delete("Ingress", "b", "secure")
        await events.until(lambda: "b/cert" not in events.names("Secret"))
        # A reference to a missing Secret costs one relist, not one per update.
        api.create(ingress("missing", "a", tls_secret="nope"))
        await events.until(lambda: source.secret_relists == 2, timeout=3)
        for host in ("x.example.com", "y.example.com"):
            api.update(ingress("missing", "a", tls_secret="nope", host=host))
        await asyncio.sleep(0.5)
        assert source.secret_relists == 2
        # ...and it is passed on once it exists.
        api.create(tls_secret("nope", "a"))
        await events.until(lambda: "a/nope" in events.names("Secret"))
        assert events.names("Secret") == ["a/cert", "a/nope", "b/default-cert"]
        assert events.matches(
            api,
            "Secret",
            where=lambda o: (
                f"{o['metadata']['namespace']}/{o['metadata']['name']}" in ("a/cert", "a/nope", "b/default-cert")
            ),
        )


def test_referenced_secrets_bookkeeping() -> None:
    from ingressctl.model import Event

    refs = ReferencedSecrets()
    ing = ingress("i", "a", tls_secret="s1")
    ing["spec"]["tls"].append({"hosts": ["b.example.com"], "secretName": "s2"})
    missing, deletes = refs.on_ingress(Event(EventType.REPLACED, "Ingress", objects=(ing,)))
    assert missing == {("a", "s1"), ("a", "s2")} and deletes == []
    listed = refs.on_secret(
        Event(EventType.REPLACED, "Secret", objects=(tls_secret("s1", "a"), tls_secret("other", "a"))), "a"
    )
    assert listed is not None and [o["metadata"]["name"] for o in listed.objects] == ["s1"]
    # A relist of another namespace's informer keeps what this one passed on.
    refs.on_secret(Event(EventType.REPLACED, "Secret", objects=()), "b")
    assert refs.forwarded == {("a", "s1")}
    # So does a relist of the same namespace's other type (Opaque: basic auth's auth-secret), and a
    # Secret that collection passed on is deleted through it.
    auth = ingress("k", "a")
    auth["metadata"]["annotations"] = {"nginx.ingress.kubernetes.io/auth-secret": "a/users"}
    assert refs.on_ingress(Event(EventType.ADDED, "Ingress", obj=auth)) == ({("a", "users")}, [])
    opaque = ("a", "type=Opaque")
    users = refs.on_secret(Event(EventType.REPLACED, "Secret", objects=(opaque_secret("users", "a"),)), opaque)
    assert users is not None and [o["metadata"]["name"] for o in users.objects] == ["users"]
    assert refs.forwarded == {("a", "s1"), ("a", "users")}
    gone = refs.on_secret(Event(EventType.DELETED, "Secret", obj=opaque_secret("users", "a")), opaque)
    assert gone is not None and gone.type is EventType.DELETED
    assert refs.on_ingress(Event(EventType.DELETED, "Ingress", obj=auth)) == (set(), [])
    # A Secret the consumer does not hold arrives as ADDED even if the API says MODIFIED.
    added = refs.on_secret(Event(EventType.MODIFIED, "Secret", obj=tls_secret("s2", "a")), "a")
    assert added is not None and added.type is EventType.ADDED
    # Two Ingresses share s1: dropping one keeps it; dropping both deletes it.
    other = ingress("j", "a", tls_secret="s1")
    assert refs.on_ingress(Event(EventType.ADDED, "Ingress", obj=other)) == (set(), [])
    assert refs.on_ingress(Event(EventType.DELETED, "Ingress", obj=other)) == (set(), [])
    _, deletes = refs.on_ingress(Event(EventType.REPLACED, "Ingress", objects=()))
    assert sorted(d.obj["metadata"]["name"] for d in deletes if d.obj) == ["s1", "s2"]
    assert refs.forwarded == set()


def test_secrets_named_by_annotations_are_referenced() -> None:
    """proxy-ssl-secret and auth-tls-secret (either prefix, `name` or `own-namespace/name`) keep their
    Secrets passed on; one of another namespace is never referenced (the Ingress is rejected)."""
    from ingressctl.sources.secrets import tls_references

    ing = ingress("i", "a")
    ing["metadata"]["annotations"] = {
        "nginx.ingress.kubernetes.io/auth-tls-secret": "a/client-ca",
        "ingressctl.io/proxy-ssl-secret": "backend-ca",
        "ingressctl.io/auth-tls-secret": "other/elsewhere",
    }
    assert tls_references(ing) == {("a", "client-ca"), ("a", "backend-ca")}
