"""Two tenants through real nginx: namespace team-b tries each capture of team-a's traffic, and
team-a's traffic is unaffected throughout while its own updates keep applying. Then what nginx
itself refuses (a real certificate refused by OpenSSL) is traced to its Ingress and rejected
alone, in the same sync as another tenant's change; and a refusal that cannot be traced keeps the
last good configuration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.certs import make_cert, make_chain, tls_secret
from tests.fakeapi.threaded import threaded_fake_api
from tests.harness import (
    Controller,
    Response,
    backend,
    endpoint_slice,
    ingress,
    ingress_class,
    pods,
    rule,
    running_controller,
    service,
    wait_for,
    write_manifests,
)

PORT = 18981
A_POD, B_POD = "127.0.11.1", "127.0.11.2"

# OpenSSL at security level 3 for nginx only (the controller checks certificates at level 2, the
# Debian default): an RSA 2048 key passes the controller's checks and nginx refuses it, the case of
# an OpenSSL configuration stricter than the controller knows. A real refusal by real nginx.
SECLEVEL_3 = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = DEFAULT:@SECLEVEL=3
"""


@pytest.fixture
def backends() -> Iterator[None]:
    with pods([A_POD, B_POD], PORT):
        yield


def team(ns: str, pod: str) -> list[dict[str, Any]]:
    return [service("app", namespace=ns, target=PORT), endpoint_slice("app", [pod], port=PORT, namespace=ns)]


def a_ingress(*hosts: str) -> dict[str, Any]:
    return ingress(
        "a",
        namespace="team-a",
        created="2024-01-01T00:00:00Z",
        rules=[rule(h, ("/", "Prefix", backend("app"))) for h in hosts],
    )


def b_ingress(**kwargs: Any) -> dict[str, Any]:
    return ingress("b", namespace="team-b", created="2024-01-02T00:00:00Z", **kwargs)


def pod_of(response: Response) -> str | None:
    return response.pod if response.status == 200 else None


def assert_a_served(ctl: Controller, *hosts: str) -> None:
    for host in hosts:
        for path in ("/", "/admin", "/x/y"):
            response = ctl.get(host, path)
            assert (response.status, pod_of(response)) == (200, A_POD), (host, path, response.status)


def wait_logged(ctl: Controller, text: str, timeout: float = 20) -> None:
    wait_for(lambda: text in ctl.log(), timeout=timeout, what=f"log line {text!r}")


def wait_served(ctl: Controller, host: str, pod: str, timeout: float = 20) -> None:
    wait_for(lambda: pod_of(ctl.get(host)) == pod, timeout=timeout, what=f"{host} served by {pod}")


B_HOST_RULE = rule("b.example.com", ("/", "Prefix", backend("app")))
CAPTURES: list[tuple[str, dict[str, Any], str]] = [
    (
        "a path under team-a's host",
        b_ingress(rules=[rule("a.example.com", ("/admin", "Prefix", backend("app")))]),
        "spec.rules[0].host: host a.example.com belongs to namespace team-a",
    ),
    (
        "a one-label wildcard",
        b_ingress(rules=[rule("*.com", ("/", "Prefix", backend("app")))]),
        "spec.rules[0].host: wildcard *.com",
    ),
    (
        "TLS and its redirect on team-a's host",
        b_ingress(rules=[B_HOST_RULE], tls=[{"hosts": ["a.example.com"], "secretName": "b-tls"}]),
        "spec.tls[0].hosts[0]: host a.example.com belongs to namespace team-a",
    ),
    (
        "an IP address as a host",
        b_ingress(rules=[rule("127.0.0.1", ("/", "Prefix", backend("app")))]),
        "spec.rules[0].host: '127.0.0.1' is an IP address",
    ),
    ("a catch-all", b_ingress(default_backend=backend("app")), "spec.defaultBackend: serves hosts no rule names"),
    ("a host-less rule", b_ingress(rules=[rule(None, ("/", "Prefix", backend("app")))]), "spec.rules[0]: serves hosts"),
]


def test_tenant_b_captures_nothing_and_a_keeps_updating(tmp_path: Path, manifests: Path, backends: None) -> None:
    write_manifests(manifests, "a.yaml", [*team("team-a", A_POD), a_ingress("a.example.com")])
    b_secret = tls_secret("b-tls", *make_cert("a.example.com", "b.example.com"), namespace="team-b")
    write_manifests(manifests, "b.yaml", [*team("team-b", B_POD), b_secret])
    with running_controller(tmp_path, manifests) as ctl:
        wait_served(ctl, "a.example.com", A_POD)
        a_hosts = ["a.example.com"]
        for i, (what, attempt, reported) in enumerate(CAPTURES):
            write_manifests(manifests, "b-ingress.yaml", [attempt])
            wait_logged(ctl, f"rejected: Ingress team-b/b: {reported}")
            assert_a_served(ctl, *a_hosts)
            assert ctl.get("unknown.com").status == 404, what  # no catch-all of team-b's
            assert ctl.get("a.example.com").status == 200, what  # never a 308 to team-b's certificate
            # team-a keeps updating while team-b's attempt is there.
            a_hosts.append(f"a{i}.example.com")
            write_manifests(manifests, "a.yaml", [*team("team-a", A_POD), a_ingress(*a_hosts)])
            wait_served(ctl, a_hosts[-1], A_POD)
            assert_a_served(ctl, *a_hosts)
        # A wildcard of team-b's is allowed, but never takes a host team-a named.
        write_manifests(
            manifests, "b-ingress.yaml", [b_ingress(rules=[rule("*.example.com", ("/", "Prefix", backend("app")))])]
        )
        wait_served(ctl, "other.example.com", B_POD)
        assert_a_served(ctl, *a_hosts)


def test_a_certificate_nginx_refuses_is_rejected_alone(tmp_path: Path, manifests: Path, backends: None) -> None:
    conf = tmp_path / "seclevel3.cnf"
    conf.write_text(SECLEVEL_3)
    refused = make_chain("b.example.com", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    write_manifests(manifests, "a.yaml", [*team("team-a", A_POD), a_ingress("a.example.com")])
    write_manifests(manifests, "b.yaml", team("team-b", B_POD))
    with running_controller(tmp_path, manifests, env={"OPENSSL_CONF": str(conf)}) as ctl:
        wait_served(ctl, "a.example.com", A_POD)
        # team-b's refused certificate and team-a's new host arrive together.
        b_tls = [{"hosts": ["b.example.com"], "secretName": "b-tls"}]
        write_manifests(
            manifests,
            "b-ingress.yaml",
            [tls_secret("b-tls", *refused, namespace="team-b"), b_ingress(rules=[B_HOST_RULE], tls=b_tls)],
        )
        write_manifests(manifests, "a.yaml", [*team("team-a", A_POD), a_ingress("a.example.com", "new.example.com")])
        wait_logged(ctl, "nginx refused the configuration of Ingress team-b/b (SSL_CTX_use_certificate(")
        wait_logged(ctl, "rejected: Ingress team-b/b: spec: nginx refused the configuration it makes: ")
        wait_served(ctl, "new.example.com", A_POD)
        assert_a_served(ctl, "a.example.com", "new.example.com")
        assert ctl.get("b.example.com").status == 404  # team-b's Ingress is out, whole
        assert ctl.metric("ingressctl_nginx_refused_ingresses_total") == 1
        # team-b fixes its Secret: tried again and served.
        good = make_chain("b.example.com")
        write_manifests(
            manifests,
            "b-ingress.yaml",
            [tls_secret("b-tls", *good, namespace="team-b"), b_ingress(rules=[B_HOST_RULE], tls=b_tls)],
        )
        wait_for(lambda: ctl.get("b.example.com").status == 308, timeout=20, what="b.example.com redirects to https")
        response = ctl.get("b.example.com", tls=True)
        assert (response.status, pod_of(response)) == (200, B_POD)
        assert response.peer_cert is not None and "b.example.com" in response.peer_cert["subject"]
        assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        assert ctl.metric("ingressctl_certificate_expiry_days") > 29


def test_an_untraceable_refusal_keeps_the_last_good_configuration(
    tmp_path: Path, manifests: Path, backends: None
) -> None:
    """The admin's --default-ssl-certificate is no tenant's: nothing to reject alone."""
    conf = tmp_path / "seclevel3.cnf"
    conf.write_text(SECLEVEL_3)
    refused = make_chain("default.example.com", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    write_manifests(manifests, "a.yaml", [*team("team-a", A_POD), a_ingress("a.example.com")])
    with running_controller(
        tmp_path,
        manifests,
        env={"OPENSSL_CONF": str(conf)},
        extra_args=["--default-ssl-certificate", "ctl/default-cert"],
    ) as ctl:
        wait_served(ctl, "a.example.com", A_POD)
        ctl.settle()  # the reload that served it is counted once its hand-over is over
        reloads = ctl.reloads()
        write_manifests(manifests, "default-cert.yaml", [tls_secret("default-cert", *refused, namespace="ctl")])
        wait_logged(ctl, "nothing in it could be traced to an Ingress: keeping the last good configuration running")
        assert_a_served(ctl, "a.example.com")
        assert ctl.reloads() == reloads
        assert ctl.metric("ingressctl_nginx_refused_ingresses_total") == 0


def test_through_the_api_a_refused_ingress_gets_a_warning_event_and_no_status(tmp_path: Path, backends: None) -> None:
    """As for any invalid Ingress: a Warning Event naming why, no status; team-a's gets its status."""
    conf = tmp_path / "seclevel3.cnf"
    conf.write_text(SECLEVEL_3)
    refused = make_chain("b.example.com", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    lb = [{"ip": "203.0.113.10"}]
    with threaded_fake_api(bookmark_interval=1.0) as api:
        api.create(ingress_class())
        api.create({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "lb", "namespace": "ingressctl"},
            "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
            "status": {"loadBalancer": {"ingress": lb}},
        })  # fmt: skip
        for obj in [*team("team-a", A_POD), a_ingress("a.example.com"), *team("team-b", B_POD)]:
            api.create(obj)
        api.create(tls_secret("b-tls", *refused, namespace="team-b"))
        api.create(b_ingress(rules=[B_HOST_RULE], tls=[{"hosts": ["b.example.com"], "secretName": "b-tls"}]))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        flags = ["--kubeconfig", str(kubeconfig), "--publish-service", "ingressctl/lb"]
        env = {"POD_NAMESPACE": "ingressctl", "POD_NAME": "c1", "OPENSSL_CONF": str(conf)}
        with running_controller(tmp_path, None, extra_args=flags, env=env) as ctl:
            wait_served(ctl, "a.example.com", A_POD)

            def refusal_events() -> list[dict[str, Any]]:
                return [
                    e
                    for e in api.list("Event", "team-b")
                    if e["involvedObject"]["name"] == "b" and "nginx refused" in e["message"]
                ]

            (event,) = wait_for(refusal_events, timeout=30, what="Warning Event for team-b/b")
            assert event["type"] == "Warning" and event["reason"] == "Rejected"
            assert event["message"].startswith(
                "spec: nginx refused the configuration it makes: SSL_CTX_use_certificate("
            )
            assert "/" not in event["message"].split("(")[1].split(")")[0].strip('"')  # no controller paths
            wait_for(
                lambda: (
                    (api.get("Ingress", "team-a", "a").get("status") or {}).get("loadBalancer", {}).get("ingress") == lb
                ),
                timeout=30,
                what="team-a's status",
            )
            assert not (api.get("Ingress", "team-b", "b").get("status") or {}).get("loadBalancer", {}).get("ingress")
            assert ctl.get("b.example.com").status == 404


def test_a_refused_certificate_at_start_does_not_stop_the_start(
    tmp_path: Path, manifests: Path, backends: None
) -> None:
    conf = tmp_path / "seclevel3.cnf"
    conf.write_text(SECLEVEL_3)
    refused = make_chain("b.example.com", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    b_tls = [{"hosts": ["b.example.com"], "secretName": "b-tls"}]
    write_manifests(manifests, "a.yaml", [*team("team-a", A_POD), a_ingress("a.example.com")])
    write_manifests(
        manifests,
        "b.yaml",
        [
            *team("team-b", B_POD),
            tls_secret("b-tls", *refused, namespace="team-b"),
            b_ingress(rules=[B_HOST_RULE], tls=b_tls),
        ],
    )
    with running_controller(tmp_path, manifests, env={"OPENSSL_CONF": str(conf)}) as ctl:
        assert_a_served(ctl, "a.example.com")
        assert ctl.get("b.example.com").status == 404
        assert "rejected: Ingress team-b/b: spec: nginx refused the configuration it makes" in ctl.log()
