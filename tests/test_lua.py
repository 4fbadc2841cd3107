"""The Lua code in real nginx: unit tests run inside a worker, and the configuration API and
balancer exercised through the nginx.conf the controller renders."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    REPO,
    Controller,
    backend,
    endpoint_slice,
    ingress,
    lua_nginx,
    pods,
    request,
    rule,
    running_controller,
    service,
    unix_request,
    wait_for,
    write_manifests,
)

UNIT_MODULES = [
    "test_configuration",
    "test_round_robin",
    "test_balancer",
    "test_backends",
    "test_algorithms",
    "test_hashing",
    "test_monitor",
]


@pytest.fixture(scope="module")
def lua_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, object]]]:
    work = tmp_path_factory.mktemp("lua-unit")
    modules = "{" + ", ".join(f'"{m}"' for m in UNIT_MODULES) + "}"
    requires = ["ingressctl.configuration", "ingressctl.balancer", "runner", *UNIT_MODULES]
    with lua_nginx(work, requires=requires, location=f'require("runner").run({modules})') as port:
        resp = request(port, host="localhost", path="/run")
        assert resp.status == 200, (resp.body, (work / "error.log").read_text())
        yield {r["name"]: r for r in resp.json()}


def _unit_names() -> list[str]:
    names = []
    for module in UNIT_MODULES:
        text = (REPO / "tests" / "lua" / f"{module}.lua").read_text()
        names += [
            f"{module}.{line.split('T.')[1].split('(')[0]}"
            for line in text.splitlines()
            if line.startswith("function T.")
        ]
    return names


@pytest.mark.parametrize("name", _unit_names())
def test_lua_unit(lua_results: dict[str, dict[str, object]], name: str) -> None:
    assert name in lua_results, f"{name} did not run"
    assert lua_results[name]["ok"], lua_results[name]["err"]


PORT = 18941


def _serve(controller: Controller, manifests: Path, addresses: list[str]) -> None:
    write_manifests(
        manifests,
        "api.yaml",
        [
            service("api", target=PORT),
            endpoint_slice("api", addresses, port=PORT),
            ingress("api", rules=[rule("api.example.com", ("/", "Prefix", backend("api")))]),
        ],
    )
    wait_for(lambda: controller.get("api.example.com").pod in addresses, what="api served")


def test_configuration_api(controller: Controller, manifests: Path) -> None:
    sock = controller.work_dir / "api" / "lua-api.sock"
    assert oct(os.stat(controller.work_dir).st_mode & 0o777) in ("0o700", "0o711")
    with pods(["127.0.0.61", "127.0.0.62"], PORT):
        _serve(controller, manifests, ["127.0.0.61"])
        state = json.loads(unix_request(sock, "GET", "/configuration/backends").body)
        version = state["version"]
        assert state["document"]["backends"] == [
            {"name": "default/api:80", "endpoints": [{"address": "127.0.0.61", "port": PORT}]}
        ]

        # Bad input: 400 with a reason, and the old backends stay.
        for body, reason in [
            (b"{not json", "invalid JSON"),
            (b'{"backends": [{"name": "default/api:80", "endpoints": [{"address": "x", "port": 1}]}]}', "address"),
            (b'{"backends": [{"name": "default/api:80", "endpoints": [{"address": "1.2.3.4", "port": 0}]}]}', "port"),
            (b'{"backends": "nope"}', "backends"),
            # An object where the array belongs used to pass and wipe every backend with a 201.
            (b'{"backends": {"x": 1}}', "backends must be an array"),
            (b'{"backends": [{"name": "default/api:80", "endpoints": [{"address": ":::::", "port": 1}]}]}', "address"),
            (b'{"backends": [{"name": "default/api:80", "endpoints": {"address": "1.2.3.4"}}]}', "endpoints"),
            (b"", "empty body"),
        ]:
            resp = unix_request(sock, "POST", "/configuration/backends", body)
            assert resp.status == 400, body
            assert reason in resp.json()["error"]
        assert unix_request(sock, "PUT", "/configuration/backends", b"{}").status == 405
        after = json.loads(unix_request(sock, "GET", "/configuration/backends").body)
        assert (after["version"], after["document"]) == (version, state["document"])
        assert controller.get("api.example.com").pod == "127.0.0.61"

        # A valid document takes effect at once, in every worker, and survives a reload.
        doc = {"backends": [{"name": "default/api:80", "endpoints": [{"address": "127.0.0.62", "port": PORT}]}]}
        resp = unix_request(sock, "POST", "/configuration/backends", json.dumps(doc).encode())
        assert resp.status == 201 and resp.json()["version"] == version + 1
        assert {controller.get("api.example.com").pod for _ in range(10)} == {"127.0.0.62"}
        workers = controller.worker_pids()
        os.kill(controller.master_pid(), signal.SIGHUP)
        wait_for(lambda: not set(controller.worker_pids()) & set(workers), what="new workers")
        assert json.loads(unix_request(sock, "GET", "/configuration/backends").body)["version"] == version + 1
        assert {controller.get("api.example.com").pod for _ in range(10)} == {"127.0.0.62"}


def test_retries_the_next_endpoint_on_connection_error(controller: Controller, manifests: Path) -> None:
    # 127.0.0.64 has nothing listening: connections are refused and nginx moves to the next peer.
    with pods(["127.0.0.63"], PORT):
        _serve(controller, manifests, ["127.0.0.63", "127.0.0.64"])
        answers = [controller.get("api.example.com") for _ in range(20)]
        assert all(a.status == 200 and a.pod == "127.0.0.63" for a in answers)


def test_api_is_not_on_the_network(controller: Controller) -> None:
    conf = (controller.work_dir / "nginx.conf").read_text()
    api_server = conf.split("location = /configuration/backends")[0].rsplit("server {", 1)[1]
    assert 'listen "unix:' in api_server
    assert api_server.count("listen") == 1


def test_no_endpoints_answers_503_and_failed_endpoints_502(controller: Controller, manifests: Path) -> None:
    # /empty: a Service with no ready endpoint -> 503 from the internal no-endpoints server.
    # /refused: endpoints with nothing listening -> every try fails -> 502, never turned into 503.
    def docs(empty: list[str]) -> list[dict[str, object]]:
        return [
            service("empty", target=PORT),
            endpoint_slice("empty", empty, port=PORT),
            service("refused", target=PORT),
            endpoint_slice("refused", ["127.0.0.65", "127.0.0.66"], port=PORT),
            ingress(
                "mixed",
                rules=[
                    rule(
                        "mixed.example.com",
                        ("/empty", "Prefix", backend("empty")),
                        ("/refused", "Prefix", backend("refused")),
                    )
                ],
            ),
        ]

    write_manifests(manifests, "mixed.yaml", docs([]))
    wait_for(lambda: controller.get("mixed.example.com", "/empty").status == 503, what="mixed served")
    assert [controller.get("mixed.example.com", "/empty/x").status for _ in range(6)] == [503] * 6
    assert [controller.get("mixed.example.com", "/refused").status for _ in range(6)] == [502] * 6
    # Both refused endpoints were tried (proxy_next_upstream), and the 503s logged no error.
    log = controller.log()
    assert "127.0.0.65:18941" in log and "127.0.0.66:18941" in log
    assert "no-endpoints.sock" not in log

    # The route gains an endpoint: served without a reload.
    reloads = controller.reloads()
    with pods(["127.0.0.67"], PORT):
        write_manifests(manifests, "mixed.yaml", docs(["127.0.0.67"]))
        wait_for(lambda: controller.get("mixed.example.com", "/empty").pod == "127.0.0.67", what="endpoint added")
    assert controller.reloads() == reloads


def test_no_endpoints_socket_is_reachable_by_the_workers_and_removed(tmp_path: Path, manifests: Path) -> None:
    # pytest's tmp dirs sit under 0700 directories, and the workers run as nobody when we are root:
    # the no-endpoints socket lives in a directory of its own that they can traverse.
    with running_controller(tmp_path, manifests) as ctl:
        conf = (ctl.work_dir / "nginx.conf").read_text()
        sock = Path(re.findall(r'listen "unix:([^"]*/no-endpoints.sock)"', conf)[0])
        assert sock.is_socket()
        if os.geteuid() == 0:
            assert ctl.work_dir not in sock.parents
            assert oct(sock.parent.stat().st_mode & 0o777) == "0o711"
            users = {Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0] for pid in ctl.worker_pids()}
            assert users == {str(pwd.getpwnam("nobody").pw_uid)}
        write_manifests(
            manifests,
            "empty.yaml",
            [
                service("empty", target=PORT),
                endpoint_slice("empty", [], port=PORT),
                ingress("empty", rules=[rule("empty.example.com", ("/", "Prefix", backend("empty")))]),
            ],
        )
        wait_for(lambda: ctl.get("empty.example.com").status == 503, what="503 for no endpoints")
    if os.geteuid() == 0:
        assert not sock.parent.exists()
