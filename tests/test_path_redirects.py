"""Trailing slashes and nginx's automatic 301, through the real controller and real nginx.

nginx answers `/foo` with a 301 to `/foo/` when a location named `/foo/` proxies (exact ones
included), unless `= /foo` exists. networking.k8s.io/v1 says otherwise: an Exact `/foo/` does not
match `/foo`, and a Prefix `/aaa/bbb/` matches `/aaa/bbb` (its trailing slash is ignored). Every
request here is a POST with a body: a 301 round trip would lose it in many clients.
"""

from __future__ import annotations

from pathlib import Path

from tests.harness import Controller, backend, endpoint_slice, ingress, pods, rule, service, wait_for, write_manifests

PORT = 18961
APP, OTHER = "127.0.3.1", "127.0.3.2"
BODY = b'{"order": 42}'


def _services(manifests: Path) -> None:
    docs = []
    for name, address in (("app", APP), ("other", OTHER)):
        docs += [service(name, target=PORT), endpoint_slice(name, [address], port=PORT)]
    write_manifests(manifests, "services.yaml", docs)


def _post(controller: Controller, host: str, path: str) -> tuple[int, str | None, str | None]:
    """Status, answering pod and the body it received."""
    resp = controller.get(host, path, method="POST", body=BODY, headers={"Content-Type": "application/json"})
    if resp.status != 200:
        return resp.status, None, None
    return resp.status, resp.pod, resp.json()["body"]


def test_exact_path_with_trailing_slash_does_not_match_its_bare_form(controller: Controller, manifests: Path) -> None:
    with pods([APP, OTHER], PORT):
        _services(manifests)
        write_manifests(
            manifests,
            "exact.yaml",
            [
                ingress("exact", rules=[rule("exact.example.com", ("/foo/", "Exact", backend("app")))]),
                ingress(
                    "mixed",
                    rules=[
                        rule(
                            "mixed.example.com",
                            ("/foo/", "Exact", backend("app")),
                            ("/", "Prefix", backend("other")),
                        )
                    ],
                ),
            ],
        )
        wait_for(lambda: controller.get("mixed.example.com").status == 200, what="both Ingresses served")
        body = BODY.decode()
        assert _post(controller, "exact.example.com", "/foo/") == (200, APP, body)
        # Nothing else matches `/foo` on this host: 404, not a 301 to `/foo/`.
        assert _post(controller, "exact.example.com", "/foo")[0] == 404
        assert _post(controller, "exact.example.com", "/foo/bar")[0] == 404
        # Here `/foo` gets what the other rules give it: the Prefix `/`.
        assert _post(controller, "mixed.example.com", "/foo") == (200, OTHER, body)
        assert _post(controller, "mixed.example.com", "/foo/") == (200, APP, body)


def test_prefix_path_with_trailing_slash_serves_its_bare_form_directly(controller: Controller, manifests: Path) -> None:
    with pods([APP, OTHER], PORT):
        _services(manifests)
        write_manifests(
            manifests,
            "prefix.yaml",
            [ingress("prefix", rules=[rule("prefix.example.com", ("/aaa/bbb/", "Prefix", backend("app")))])],
        )
        wait_for(lambda: controller.get("prefix.example.com", "/aaa/bbb").status == 200, what="prefix served")
        body = BODY.decode()
        for path in ("/aaa/bbb", "/aaa/bbb/", "/aaa/bbb/ccc"):
            status, pod, received = _post(controller, "prefix.example.com", path)
            assert (status, pod, received) == (200, APP, body), path
        # Element-wise: `/aaa/bbbc` is not under `/aaa/bbb`.
        assert _post(controller, "prefix.example.com", "/aaa/bbbc")[0] == 404
