"""Section 2 through the Kubernetes API source: the same changes and burst as bench/propagation.py,
made as updates on the fake API server (tests/fakeapi, real list/watch over HTTP) that the
controller (`ingressctl run` without --manifests) watches with kubernetes-asyncio. A change's time
is taken just before the update call, so it includes the API write and the watch event.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Procs, backend_nginx, free_port
from bench.propagation import Options, measure_controller, static_docs
from tests.fakeapi.threaded import ThreadedFakeApi
from tests.harness import Controller, endpoint_slice

LEASE = ["--lease-duration", "3", "--lease-renew-deadline", "2", "--lease-retry-period", "0.5"]


class ApiChanger:
    def __init__(self, api: ThreadedFakeApi, port: int) -> None:
        self.api, self.port = api, port

    def set_endpoints(self, endpoints: Sequence[str]) -> float:
        import time

        at = time.monotonic()
        self.api.apply(endpoint_slice("prop", list(endpoints), port=self.port))
        return at


def run(tmp: Path, opts: Options, *, pool: list[str]) -> dict[str, Any]:
    port = free_port()
    with Procs() as procs:
        pods = backend_nginx(pool, port, name="prop-api-backends").start()
        procs.add(pods.stop)
        api = ThreadedFakeApi(bookmark_interval=1.0)
        procs.add(api.close)
        for doc in static_docs(port):
            api.create(doc)
        changer = ApiChanger(api, port)
        changer.set_endpoints(pool[:2])
        (tmp / "api").mkdir()
        kubeconfig = api.write_kubeconfig(tmp / "api" / "kubeconfig")
        ctl = procs.controller(
            Controller(
                manifests=None,
                work_dir=tmp / "api" / "work",
                extra_args=["--kubeconfig", str(kubeconfig), *LEASE],
                env={"POD_NAMESPACE": "default", "POD_NAME": "bench"},
            )
        )
        return measure_controller(procs, ctl, changer, pool, opts)
