"""affinity-canary-behavior through the real controller, real nginx with our Lua balancer and real pods
on 127.47.0.x, with `affinity: cookie` on the main Ingress. sticky (the default): a client sent to the
canary (by the weight or the header) gets the canary's pin in the main's cookie and stays on the canary;
a client holding a main session stays on the main Service (ingress-nginx's order: the main's session
first); a canary Ingress with affinity of its own (another cookie name) sets both cookies; a pinned
client whose canary lost its endpoints is re-pinned to the main Service. legacy: the
canary sets no cookie and every request is decided anew, also with a main session. Switching between
the two is a Lua update (no reload)."""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from typing import Any

from tests.harness import (
    Controller,
    backend,
    endpoint_slice,
    free_port,
    ingress,
    pods,
    rule,
    service,
    wait_for,
    write_manifests,
)

PORT = free_port()
A = "nginx.ingress.kubernetes.io/"
STABLE, CANARY = "127.47.0.1", "127.47.0.2"
COOKIE = "route"
MAIN_KEY = re.compile(r"[0-9a-f]{16}")
PIN = re.compile(r"canary-[0-9a-f]{16}")


def services(manifests: Path, canary_pods: list[str]) -> None:
    docs = [service("stable", target=PORT), endpoint_slice("stable", [STABLE], port=PORT)]
    for name in ("preview", "preview-own"):  # the latter for the canary with affinity of its own
        docs += [service(name, target=PORT), endpoint_slice(name, canary_pods, port=PORT)]
    write_manifests(manifests, "services.yaml", docs)


def main(host: str) -> dict[str, Any]:
    notes = {A + "affinity": "cookie", A + "session-cookie-name": COOKIE}
    return ingress(host.split(".")[0], rules=[rule(host, ("/", "Prefix", backend("stable")))], annotations=notes)


def canary(host: str, svc: str = "preview", **annotations: str) -> dict[str, Any]:
    notes = {A + "canary": "true", **{A + k.replace("_", "-"): v for k, v in annotations.items()}}
    return ingress(host.split(".")[0] + "-canary", rules=[rule(host, ("/", "Prefix", backend(svc)))], annotations=notes)


def pod_of(ctl: Controller, host: str, cookie: str | None = None, **headers: str) -> str | None:
    """The pod that answered (None: nginx answered itself, e.g. 404 before the configuration is live)."""
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    return ctl.get(host, headers=headers).pod


def visit(ctl: Controller, host: str, cookie: str | None = None, **headers: str) -> tuple[str | None, str | None]:
    """(pod, the value of the `route` cookie the answer sets, or None)."""
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    response = ctl.get(host, headers={k.replace("_", "-"): v for k, v in headers.items()})
    assert response.status == 200, (host, headers, response.status)
    found = re.search(COOKIE + r"=([^;]*)", response.headers.get("set-cookie", ""))
    return response.pod, found.group(1) if found else None


def set_cookies(ctl: Controller, host: str, **headers: str) -> dict[str, str]:
    """Every Set-Cookie of one answer (name -> value), read with http.client: a header may repeat."""
    conn = http.client.HTTPConnection("127.0.0.1", ctl.http_port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host, **headers})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, (host, response.status)
        found = [
            value.split(";", 1)[0].split("=", 1) for key, value in response.getheaders() if key.lower() == "set-cookie"
        ]
        return {name: value for name, value in found}
    finally:
        conn.close()


def test_sticky_keeps_canary_clients_on_the_canary(controller: Controller, manifests: Path) -> None:
    with pods([STABLE, CANARY], PORT):
        services(manifests, [CANARY])
        write_manifests(
            manifests,
            "ingresses.yaml",
            [
                main("half.test"),
                canary("half.test", canary_weight="50"),  # sticky: the default
                main("own.test"),
                canary(
                    "own.test",
                    "preview-own",
                    canary_weight="100",
                    affinity="cookie",
                    session_cookie_name="canary-session",
                ),
                main("forced.test"),
                canary(
                    "forced.test",
                    canary_by_header="ForceCanary",
                    canary_by_header_value="yes",
                    canary_weight="0",
                    affinity_canary_behavior="sticky",
                ),
            ],
        )
        wait_for(lambda: pod_of(controller, "forced.test", ForceCanary="yes") == CANARY, what="canary served")

        # 40 new clients at weight 50: each first answer pins the client where it went (a main session
        # key or the canary's pin, both in the main's cookie), and its next 10 requests stay there.
        seen = {STABLE: 0, CANARY: 0}
        for _ in range(40):
            pod, cookie = visit(controller, "half.test")
            assert pod is not None and cookie is not None
            assert (MAIN_KEY if pod == STABLE else PIN).fullmatch(cookie), (pod, cookie)
            seen[pod] += 1
            again = [visit(controller, "half.test", cookie) for _ in range(10)]
            assert again == [(pod, None)] * 10, (pod, cookie, again)
        assert seen[STABLE] >= 5 and seen[CANARY] >= 5, seen

        # ingress-nginx's e2e case: weight 0, a request forced by the header gets the pin; without
        # the header the client then stays on the canary.
        pod, pin = visit(controller, "forced.test", ForceCanary="yes")
        assert pod == CANARY and pin is not None and PIN.fullmatch(pin)
        assert {visit(controller, "forced.test", pin)[0] for _ in range(30)} == {CANARY}
        # Without the pin the weight (0) decides: the main Service, which starts a session.
        pod, key = visit(controller, "forced.test")
        assert pod == STABLE and key is not None and MAIN_KEY.fullmatch(key)
        # A client with a main session stays on the main Service, the header too (ingress-nginx checks
        # the main's session first).
        assert visit(controller, "forced.test", key, ForceCanary="yes") == (STABLE, None)
        # A pin of another canary backend is not this canary's: decided anew (weight 0: main).
        assert visit(controller, "forced.test", "canary-0123456789abcdef")[0] == STABLE

        # A canary Ingress with affinity of its own (another cookie name): both cookies are set, the pin
        # and the canary's session, and the client stays on the canary with them.
        cookies = set_cookies(controller, "own.test")
        assert sorted(cookies) == ["canary-session", COOKIE], cookies
        assert PIN.fullmatch(cookies[COOKIE]) and MAIN_KEY.fullmatch(cookies["canary-session"]), cookies
        both = f"{COOKIE}={cookies[COOKIE]}; canary-session={cookies['canary-session']}"
        assert set_cookies(controller, "own.test", Cookie=both) == {}

        # The canary Service loses its endpoints: a pinned client goes to the main Service and is
        # re-pinned there with a main session key (never an error).
        services(manifests, [])
        wait_for(lambda: pod_of(controller, "forced.test", pin) == STABLE, what="canary endpoints gone")
        pod, repinned = visit(controller, "forced.test", pin)
        assert pod == STABLE and repinned is not None and MAIN_KEY.fullmatch(repinned)


def test_legacy_decides_every_request_and_switching_is_reload_free(controller: Controller, manifests: Path) -> None:
    with pods([STABLE, CANARY], PORT):
        services(manifests, [CANARY])
        write_manifests(
            manifests,
            "ingresses.yaml",
            [main("l.test"), canary("l.test", canary_weight="50", affinity_canary_behavior="legacy")],
        )
        wait_for(lambda: pod_of(controller, "l.test") == CANARY, what="canary served")
        controller.settle()
        reloads = controller.reloads()

        # Legacy: the canary's answers set no cookie; main answers start sessions as usual.
        answers = [visit(controller, "l.test") for _ in range(200)]
        to_canary = [cookie for pod, cookie in answers if pod == CANARY]
        assert 60 <= len(to_canary) <= 140, len(to_canary)
        assert to_canary == [None] * len(to_canary)
        key = next(cookie for pod, cookie in answers if pod == STABLE)
        assert key is not None and MAIN_KEY.fullmatch(key)
        # A client with a main session is still split by the weight, request by request.
        split = [visit(controller, "l.test", key)[0] for _ in range(200)]
        assert 60 <= split.count(CANARY) <= 140, split.count(CANARY)

        # To sticky (the annotation removed: the default) without a reload: a main session stays.
        write_manifests(manifests, "ingresses.yaml", [main("l.test"), canary("l.test", canary_weight="50")])
        wait_for(
            lambda: {pod_of(controller, "l.test", key) for _ in range(30)} == {STABLE}, what="sticky in the balancer"
        )
        assert controller.reloads() == reloads, "affinity-canary-behavior is a Lua update, never a reload"
