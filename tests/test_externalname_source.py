"""The ExternalName source wrapper on its own: events pass through, a resolved name becomes an
EndpointSlice event, a relist of slices keeps it, and a deleted or changed Service withdraws it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from ingressctl.model import ENDPOINT_SLICE, SERVICE, Event, EventType
from ingressctl.sources.externalname import Answer, ExternalNameSource, Policy


def _service(name: str, external: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "ExternalName", "externalName": external} if external else {"type": "ClusterIP"}
    return {"kind": "Service", "metadata": {"namespace": "ns", "name": name}, "spec": spec}


class Inner:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    async def events(self) -> AsyncGenerator[Event, None]:
        while True:
            yield await self.queue.get()


def test_wrapper_events() -> None:
    async def main() -> None:
        inner = Inner()
        answers = {"a.example": Answer(("203.0.113.1", "127.0.0.1"), 60), "b.example": Answer(("203.0.113.2",), 60)}

        async def lookup(name: str) -> Answer:
            return answers[name]

        source = ExternalNameSource(inner, lookup, Policy())
        events = source.events()

        async def next_event() -> Event:
            return await asyncio.wait_for(events.__anext__(), 5)

        ext, plain = _service("ext", "a.example"), _service("plain", None)
        await inner.queue.put(Event(EventType.REPLACED, SERVICE, objects=(ext, plain)))
        assert (await next_event()).kind == SERVICE
        added = await next_event()
        assert added.type is EventType.ADDED and added.kind == ENDPOINT_SLICE and added.obj is not None
        assert added.obj["metadata"]["labels"]["kubernetes.io/service-name"] == "ext"
        # 127.0.0.1 refused by the default policy
        assert [e["addresses"] for e in added.obj["endpoints"]] == [["203.0.113.1"]]
        # A relist of slices keeps ours.
        real = {"kind": "EndpointSlice", "metadata": {"namespace": "ns", "name": "plain-x"}}
        await inner.queue.put(Event(EventType.REPLACED, ENDPOINT_SLICE, objects=(real,)))
        relist = await next_event()
        assert relist.objects == (real, added.obj)
        # The Service points at another name: the new answer replaces the slice.
        await inner.queue.put(Event(EventType.MODIFIED, SERVICE, _service("ext", "b.example")))
        assert (await next_event()).kind == SERVICE
        deleted, readded = await next_event(), await next_event()
        assert deleted.type is EventType.DELETED and readded.type is EventType.ADDED
        assert readded.obj is not None and readded.obj["endpoints"][0]["addresses"] == ["203.0.113.2"]
        # Deleted: the slice goes too.
        await inner.queue.put(Event(EventType.DELETED, SERVICE, _service("ext", "b.example")))
        assert (await next_event()).kind == SERVICE
        gone = await next_event()
        assert gone.type is EventType.DELETED and gone.kind == ENDPOINT_SLICE
        await events.aclose()
        assert all(task.done() for task in source._tasks.values())

    asyncio.run(main())


def test_inner_error_propagates() -> None:
    class Failing:
        async def events(self) -> AsyncGenerator[Event, None]:
            yield Event(EventType.SYNCED)
            raise RuntimeError("API gone")

    async def lookup(name: str) -> Answer:
        raise AssertionError("no name to resolve")

    async def main() -> list[Event]:
        seen = []
        async for event in ExternalNameSource(Failing(), lookup).events():
            seen.append(event)
        return seen

    try:
        asyncio.run(main())
    except RuntimeError as exc:
        assert str(exc) == "API gone"
    else:
        raise AssertionError("the inner source's error was swallowed")
