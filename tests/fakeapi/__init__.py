"""A fake Kubernetes API server for tests: the real kubernetes-asyncio client talks to it over HTTP."""

from tests.fakeapi.server import TOKEN, FakeApi
from tests.fakeapi.store import ApiError

__all__ = ["TOKEN", "ApiError", "FakeApi"]
