"""The fake API server against the real kubernetes-asyncio client: if these hold, the informer tests
exercise the same protocol a real API server speaks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from tests.fakeapi import FakeApi


def ingress(name: str, namespace: str = "default", host: str = "a.example.com") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"rules": [{"host": host}]},
    }


def secret(name: str, type_: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "type": type_,
        "data": {},
    }


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    async with FakeApi.running(bookmark_interval=0.2) as fake:
        yield fake


@pytest.fixture
async def kube(api: FakeApi, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    path = api.write_kubeconfig(tmp_path / "kubeconfig")
    api_client = await config.new_client_from_config(config_file=str(path))
    async with api_client:
        yield api_client


async def read_events(resp: Any, *, count: int, timeout: float = 5) -> list[dict[str, Any]]:
    events = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            line = await resp.content.readline()
            if not line:
                break
            events.append(json.loads(line))
    return events


async def test_list_paging_with_typed_client(api: FakeApi, kube: client.ApiClient) -> None:
    for i in range(5):
        api.create(ingress(f"ing{i}", namespace="a" if i < 3 else "b"))
    net = client.NetworkingV1Api(kube)
    page = await net.list_ingress_for_all_namespaces(limit=2)
    names = [i.metadata.name for i in page.items]
    assert page.metadata._continue
    rv = page.metadata.resource_version
    api.create(ingress("late", namespace="a"))  # not part of the paged snapshot
    while page.metadata._continue:
        page = await net.list_ingress_for_all_namespaces(limit=2, _continue=page.metadata._continue)
        names += [i.metadata.name for i in page.items]
        assert page.metadata.resource_version == rv
    assert names == ["ing0", "ing1", "ing2", "ing3", "ing4"]
    only_a = await net.list_namespaced_ingress("a")
    assert [i.metadata.name for i in only_a.items] == ["ing0", "ing1", "ing2", "late"]


async def test_list_items_lack_type_meta_like_the_real_server(api: FakeApi, kube: client.ApiClient) -> None:
    api.create(ingress("x"))
    resp = await client.NetworkingV1Api(kube).list_ingress_for_all_namespaces(_preload_content=False)
    body = json.loads(await resp.read())
    assert body["kind"] == "IngressList" and body["apiVersion"] == "networking.k8s.io/v1"
    assert "kind" not in body["items"][0] and body["items"][0]["metadata"]["name"] == "x"


async def test_expired_continue_token_is_410(api: FakeApi, kube: client.ApiClient) -> None:
    for i in range(3):
        api.create(ingress(f"ing{i}"))
    net = client.NetworkingV1Api(kube)
    page = await net.list_ingress_for_all_namespaces(limit=1)
    api.compact()
    with pytest.raises(ApiException) as err:
        await net.list_ingress_for_all_namespaces(limit=1, _continue=page.metadata._continue)
    assert err.value.status == 410


async def test_field_and_label_selectors(api: FakeApi, kube: client.ApiClient) -> None:
    api.create(secret("tls", "kubernetes.io/tls"))
    api.create(secret("opaque", "Opaque"))
    core = client.CoreV1Api(kube)
    tls = await core.list_secret_for_all_namespaces(field_selector="type=kubernetes.io/tls")
    assert [s.metadata.name for s in tls.items] == ["tls"]
    by_name = await core.list_namespaced_secret("default", field_selector="metadata.name=opaque")
    assert [s.metadata.name for s in by_name.items] == ["opaque"]
    labelled = await core.list_namespaced_secret("default", label_selector="app in (tls, x)")
    assert [s.metadata.name for s in labelled.items] == ["tls"]
    with pytest.raises(ApiException) as err:
        await core.list_namespaced_secret("default", field_selector="data.x=y")
    assert err.value.status == 400


async def test_watch_replays_from_resource_version_and_streams_live(api: FakeApi, kube: client.ApiClient) -> None:
    net = client.NetworkingV1Api(kube)
    api.create(ingress("before"))
    listed = await net.list_ingress_for_all_namespaces()
    api.create(ingress("after-list"))
    resp = await net.list_ingress_for_all_namespaces(
        watch=True,
        resource_version=listed.metadata.resource_version,
        allow_watch_bookmarks=True,
        _preload_content=False,
    )
    async with resp:
        first = await read_events(resp, count=1)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == [("ADDED", "after-list")]
        assert first[0]["object"]["kind"] == "Ingress"  # watch events carry TypeMeta
        changed = ingress("before", host="b.example.com")
        api.update(changed)
        api.delete("Ingress", "default", "after-list")
        events = [e for e in await read_events(resp, count=4) if e["type"] != "BOOKMARK"][:2]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("MODIFIED", "before"),
            ("DELETED", "after-list"),
        ]
        assert events[0]["object"]["metadata"]["generation"] == 2


async def test_watch_bookmarks_and_timeout(api: FakeApi, kube: client.ApiClient) -> None:
    resp = await client.NetworkingV1Api(kube).list_ingress_for_all_namespaces(
        watch=True, allow_watch_bookmarks=True, timeout_seconds=1, _preload_content=False
    )
    async with resp:
        events = await read_events(resp, count=100, timeout=3)  # ends by itself after 1 s
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert events[-1]["object"]["metadata"]["resourceVersion"] == str(api.store.rv)


async def test_watch_selector_transitions(api: FakeApi, kube: client.ApiClient) -> None:
    api.create(secret("s", "Opaque"))
    resp = await client.CoreV1Api(kube).list_secret_for_all_namespaces(
        watch=True, field_selector="type=kubernetes.io/tls", _preload_content=False
    )
    async with resp:
        api.update(secret("s", "kubernetes.io/tls"))
        api.update(secret("s", "Opaque"))
        events = await read_events(resp, count=2)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


async def test_watch_from_compacted_version_is_410_error_event(api: FakeApi, kube: client.ApiClient) -> None:
    api.create(ingress("a"))
    old = str(api.store.rv)
    api.create(ingress("b"))
    api.compact()
    resp = await client.NetworkingV1Api(kube).list_ingress_for_all_namespaces(
        watch=True, resource_version=old, _preload_content=False
    )
    async with resp:
        assert resp.status == 200
        events = await read_events(resp, count=2)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["kind"] == "Status"


async def test_expire_open_watches(api: FakeApi, kube: client.ApiClient) -> None:
    resp = await client.NetworkingV1Api(kube).list_ingress_for_all_namespaces(
        watch=True, resource_version=str(api.store.rv), _preload_content=False
    )
    async with resp:
        await asyncio.sleep(0.1)
        api.compact(expire_watches=True)
        events = await read_events(resp, count=2)
    assert [e["object"]["code"] for e in events] == [410]


async def test_drop_and_stall(api: FakeApi, kube: client.ApiClient) -> None:
    net = client.NetworkingV1Api(kube)
    resp = await net.list_ingress_for_all_namespaces(watch=True, _preload_content=False)
    async with resp:
        await asyncio.sleep(0.1)
        assert api.open_watches == 1
        api.drop_watches()
        # An aborted chunked body is a payload error, neither a clean end (readline() returning
        # b"") nor silence until the timeout.
        ended: str | BaseException = "silence"
        try:
            async with asyncio.timeout(2):
                while await resp.content.readline():
                    pass
                ended = "clean end"
        except aiohttp.ClientPayloadError as exc:
            ended = exc
        except TimeoutError:
            ended = "silence for 2 s"
        assert isinstance(ended, aiohttp.ClientPayloadError), ended
        # The server's handler unwinds after the client saw the abort: give it a moment (bounded).
        for _ in range(100):
            if api.open_watches == 0:
                break
            await asyncio.sleep(0.01)
        assert api.open_watches == 0
    api.stall()
    resp = await net.list_ingress_for_all_namespaces(watch=True, timeout_seconds=1, _preload_content=False)
    async with resp:
        api.create(ingress("x"))
        with pytest.raises(TimeoutError):
            await read_events(resp, count=1, timeout=1.5)  # nothing, not even the end at 1 s
        api.stall(False)
        events = await read_events(resp, count=1)
    assert events[0]["object"]["metadata"]["name"] == "x"


async def test_injected_failures_and_request_log(api: FakeApi, kube: client.ApiClient) -> None:
    net = client.NetworkingV1Api(kube)
    api.fail(500, path_contains="/ingresses", times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            await net.list_ingress_for_all_namespaces()
        assert err.value.status == 500
    await net.list_ingress_for_all_namespaces()
    assert api.count(path_contains="/ingresses", watch=False) == 3


async def test_status_subresource_optimistic_concurrency(api: FakeApi, kube: client.ApiClient) -> None:
    created = api.create(ingress("x"))
    net = client.NetworkingV1Api(kube)
    body = dict(created, status={"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}})
    body["spec"] = {"rules": [{"host": "ignored.example.com"}]}  # status PUT never changes spec
    updated = await net.replace_namespaced_ingress_status("x", "default", body, _preload_content=False)
    written = json.loads(await updated.read())
    assert written["status"]["loadBalancer"]["ingress"] == [{"ip": "10.0.0.1"}]
    assert written["spec"] == created["spec"]
    with pytest.raises(ApiException) as err:  # stale resourceVersion
        await net.replace_namespaced_ingress_status("x", "default", body)
    assert err.value.status == 409
    patched = await net.patch_namespaced_ingress_status(
        "x",
        "default",
        {"metadata": {"resourceVersion": written["metadata"]["resourceVersion"]}, "status": None},
        _content_type="application/merge-patch+json",
    )
    assert patched.status is None
    with pytest.raises(ApiException) as err:
        await net.patch_namespaced_ingress_status("x", "default", {"metadata": {"resourceVersion": "1"}, "status": {}})
    assert err.value.status == 409


async def test_lease_and_event_verbs(api: FakeApi, kube: client.ApiClient) -> None:
    coord = client.CoordinationV1Api(kube)
    lease = {"metadata": {"name": "l", "namespace": "ns"}, "spec": {"holderIdentity": "me"}}
    await coord.create_namespaced_lease("ns", lease)
    with pytest.raises(ApiException) as err:
        await coord.create_namespaced_lease("ns", lease)
    assert err.value.status == 409
    got = await coord.read_namespaced_lease("l", "ns")
    got.spec.holder_identity = "you"
    await coord.replace_namespaced_lease("l", "ns", got)
    assert api.get("Lease", "ns", "l")["spec"]["holderIdentity"] == "you"
    with pytest.raises(ApiException) as err:
        await coord.replace_namespaced_lease("l", "ns", got)  # stale
    assert err.value.status == 409
    with pytest.raises(ApiException) as err:
        await coord.read_namespaced_lease("missing", "ns")
    assert err.value.status == 404

    core = client.CoreV1Api(kube)
    event: dict[str, Any] = {"metadata": {"name": "e1", "namespace": "ns"}, "reason": "R", "count": 1}
    rejected = await core.create_namespaced_event("ns", event, _preload_content=False)
    assert rejected.status == 422  # validated like the real server does
    rejected.release()
    event["involvedObject"] = {"kind": "Ingress", "namespace": "ns", "name": "x"}
    await core.create_namespaced_event("ns", event)
    await core.patch_namespaced_event("e1", "ns", {"count": 2}, _content_type="application/merge-patch+json")
    assert api.get("Event", "ns", "e1")["count"] == 2


async def test_bad_token_is_401(api: FakeApi, tmp_path: Path) -> None:
    path = api.write_kubeconfig(tmp_path / "kubeconfig", token="wrong")
    async with await config.new_client_from_config(config_file=str(path)) as kube:
        with pytest.raises(ApiException) as err:
            await client.CoreV1Api(kube).list_service_for_all_namespaces()
    assert err.value.status == 401


async def test_down_and_up_on_the_same_port(api: FakeApi, kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    await core.list_service_for_all_namespaces()
    port = api.port
    await api.stop()
    with pytest.raises(aiohttp.ClientConnectorError):  # connection refused, as aiohttp reports it
        await core.list_service_for_all_namespaces()
    await api.restart()
    assert api.port == port
    await core.list_service_for_all_namespaces()
