"""Warning Events for rejected Ingresses, against the fake API: one per problem, deduplicated."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from ingressctl.model import Event, EventType
from ingressctl.writeback.events import EventRecorder
from ingressctl.writeback.status import IngressView
from tests.fakeapi import FakeApi
from tests.fakeapi.helpers import api_client, configuration, ingress, problem

MISSING_SERVICE = problem("default", "bad", "spec.rules[0].http.paths[0].backend", "service default/nope not found")
BAD_PATH = problem("default", "bad", "spec.rules[0].http.paths[1].path", "path must start with /")
OTHER = problem("team", "worse", "spec.tls[0].secretName", "secret team/missing not found")


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    async with FakeApi.running() as fake:
        yield fake


@pytest.fixture
async def kube_client(api: FakeApi, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    async with api_client(api, tmp_path) as c:
        yield c


@contextlib.asynccontextmanager
async def recorder(kube_client: client.ApiClient, **kwargs: Any) -> AsyncIterator[EventRecorder]:
    rec = EventRecorder(kube_client, instance="test-1", **kwargs)
    task = asyncio.create_task(rec.run())
    try:
        yield rec
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def events_of(api: FakeApi) -> list[dict[str, Any]]:
    return api.list("Event")


async def settle() -> None:
    await asyncio.sleep(0.3)


async def test_one_warning_event_per_problem_naming_the_field(api: FakeApi, kube_client: client.ApiClient) -> None:
    bad = api.create(ingress("bad"))
    view = IngressView()
    view.observe(Event(EventType.REPLACED, "Ingress", objects=(bad,)))
    async with recorder(kube_client, view=view) as rec:
        await rec.publish(configuration(problems=[MISSING_SERVICE, OTHER]))
        await settle()
    by_ns = {e["metadata"]["namespace"]: e for e in events_of(api)}
    assert sorted(by_ns) == ["default", "team"]
    event = by_ns["default"]
    assert event["type"] == "Warning" and event["reason"] == "Rejected"
    assert event["message"] == "spec.rules[0].http.paths[0].backend: service default/nope not found"
    assert event["count"] == 1 and event["source"] == {"component": "ingressctl"}
    assert event["reportingComponent"] == "ingressctl" and event["reportingInstance"] == "test-1"
    assert event["involvedObject"] == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "name": "bad",
        "namespace": "default",
        "uid": bad["metadata"]["uid"],  # so `kubectl describe ingress bad` shows it
        "resourceVersion": bad["metadata"]["resourceVersion"],
    }
    assert "uid" not in by_ns["team"]["involvedObject"]  # not in the view: still recorded


async def test_repeated_syncs_do_not_spam(api: FakeApi, kube_client: client.ApiClient) -> None:
    async with recorder(kube_client, repeat_interval=1.0) as rec:
        for _ in range(5):
            await rec.publish(configuration(problems=[MISSING_SERVICE, BAD_PATH]))
            await asyncio.sleep(0.05)
        await settle()
        assert api.count(method="POST", path_contains="/events") == 2
        assert api.count(method="PATCH", path_contains="/events") == 0
        # After the repeat interval, a sync that still reports them bumps the count, once.
        await asyncio.sleep(1.0)
        for _ in range(3):
            await rec.publish(configuration(problems=[MISSING_SERVICE, BAD_PATH]))
            await asyncio.sleep(0.05)
        await settle()
        assert api.count(method="PATCH", path_contains="/events") == 2
        assert sorted(e["count"] for e in events_of(api)) == [2, 2]
        # A fixed problem is forgotten; if it comes back, it is a new Event.
        await rec.publish(configuration(problems=[MISSING_SERVICE]))
        await settle()
        await rec.publish(configuration(problems=[MISSING_SERVICE, BAD_PATH]))
        await settle()
        assert api.count(method="POST", path_contains="/events") == 3
        assert len(events_of(api)) == 3


async def test_expired_event_is_created_again(api: FakeApi, kube_client: client.ApiClient) -> None:
    async with recorder(kube_client, repeat_interval=0.2) as rec:
        await rec.publish(configuration(problems=[MISSING_SERVICE]))
        await settle()
        (event,) = events_of(api)
        api.delete("Event", "default", event["metadata"]["name"])  # the API server's TTL
        await rec.publish(configuration(problems=[MISSING_SERVICE]))
        await settle()
        (again,) = events_of(api)
        assert again["metadata"]["name"] != event["metadata"]["name"] and again["count"] == 1


async def test_api_errors_do_not_stop_the_recorder(api: FakeApi, kube_client: client.ApiClient) -> None:
    async with recorder(kube_client) as rec:
        api.fail(500, method="POST", path_contains="/events", times=1)
        await rec.publish(configuration(problems=[MISSING_SERVICE]))
        await settle()
        assert events_of(api) == []
        await rec.publish(configuration(problems=[MISSING_SERVICE]))  # the next sync tries again
        await settle()
        assert len(events_of(api)) == 1
