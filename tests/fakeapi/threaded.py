"""The fake API on its own event loop in a background thread, for synchronous tests that run the
controller as a subprocess (tests.harness). Every call is run on the fake's loop and waited for."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tests.fakeapi.server import FakeApi
from tests.fakeapi.store import Obj

T = TypeVar("T")


class ThreadedFakeApi:
    def __init__(self, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-api", daemon=True)
        self._thread.start()
        self.api: FakeApi = self._call(lambda: FakeApi(**kwargs))
        self._run(self.api.start())

    def _call(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=30)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self.api.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # The FakeApi controls, run on its loop.

    def write_kubeconfig(self, path: Path) -> Path:
        return self.api.write_kubeconfig(path)

    def create(self, obj: Obj) -> Obj:
        return self._call(lambda: self.api.create(obj))

    def update(self, obj: Obj) -> Obj:
        return self._call(lambda: self.api.update(obj))

    def update_status(self, obj: Obj) -> Obj:
        return self._call(lambda: self.api.update_status(obj))

    def apply(self, obj: Obj) -> Obj:
        return self._call(lambda: self.api.apply(obj))

    def delete(self, kind: str, namespace: str, name: str) -> Obj:
        return self._call(lambda: self.api.delete(kind, namespace, name))

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        return self._call(lambda: self.api.get(kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        return self._call(lambda: self.api.list(kind, namespace))

    def compact(self, *, expire_watches: bool = False) -> None:
        self._call(lambda: self.api.compact(expire_watches=expire_watches))

    def drop_watches(self) -> None:
        self._call(self.api.drop_watches)

    def stall(self, stalled: bool = True) -> None:
        self._call(lambda: self.api.stall(stalled))

    def fail(self, code: int = 500, **kwargs: Any) -> None:
        self._call(lambda: self.api.fail(code, **kwargs))

    def clear_failures(self) -> None:
        self._call(self.api.clear_failures)

    def count(self, **kwargs: Any) -> int:
        return self._call(lambda: self.api.count(**kwargs))

    def stop(self) -> None:
        self._run(self.api.stop())

    def restart(self) -> None:
        self._run(self.api.restart())


@contextlib.contextmanager
def threaded_fake_api(**kwargs: Any) -> Iterator[ThreadedFakeApi]:
    api = ThreadedFakeApi(**kwargs)
    try:
        yield api
    finally:
        api.close()
