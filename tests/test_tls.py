"""TLS through real nginx: SNI picks the Secret's certificate, wildcards, fallbacks to the default
certificate when a Secret is missing or broken, HTTP->HTTPS 308, rotation, key files private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.certs import make_cert, tls_secret
from tests.harness import (
    Controller,
    backend,
    endpoint_slice,
    ingress,
    pods,
    rule,
    service,
    wait_for,
    write_manifests,
)

PORT = 18961
DEFAULT_CN = "CN=ingressctl default certificate"


def _setup(
    manifests: Path, secrets: list[dict[str, object]], hosts_tls: list[dict[str, object]], hosts: list[str]
) -> None:
    write_manifests(
        manifests,
        "tls.yaml",
        [
            service("web", target=PORT),
            endpoint_slice("web", ["127.0.3.1"], port=PORT),
            *secrets,
            ingress("web", tls=hosts_tls, rules=[rule(h, ("/", "Prefix", backend("web"))) for h in hosts]),
        ],
    )


def test_sni_wildcard_fallbacks_and_redirect(controller: Controller, manifests: Path) -> None:
    a_cert, a_key = make_cert("a.example.com")
    w_cert, w_key = make_cert("*.wild.example.com")
    _, other_key = make_cert("x")
    with pods(["127.0.3.1"], PORT):
        _setup(
            manifests,
            [
                tls_secret("a", a_cert, a_key),
                tls_secret("wild", w_cert, w_key),
                tls_secret("mismatch", a_cert, other_key),
                {**tls_secret("garbage", b"not a cert", a_key)},
            ],
            [
                {"hosts": ["a.example.com"], "secretName": "a"},
                {"hosts": ["*.wild.example.com"], "secretName": "wild"},
                {"hosts": ["missing.example.com"], "secretName": "nope"},
                {"hosts": ["mismatch.example.com"], "secretName": "mismatch"},
                {"hosts": ["garbage.example.com"], "secretName": "garbage"},
            ],
            [
                "a.example.com",
                "*.wild.example.com",
                "missing.example.com",
                "mismatch.example.com",
                "garbage.example.com",
                "plain.example.com",
            ],
        )
        wait_for(lambda: controller.get("a.example.com", tls=True).status == 200, what="https served")
        assert controller.get("a.example.com", tls=True).peer_cert["subject"] == "CN=a.example.com"
        resp = controller.get("b.wild.example.com", "/x", tls=True)
        assert resp.status == 200 and resp.peer_cert["subject"] == "CN=*.wild.example.com"
        assert resp.json()["headers"]["X-Forwarded-Proto"] == "https"
        for host in ("missing", "mismatch", "garbage"):
            resp = controller.get(f"{host}.example.com", tls=True)
            assert resp.status == 200 and resp.peer_cert["subject"] == DEFAULT_CN, host
        # Hosts without TLS still answer on the HTTPS port with the default certificate, and
        # unknown hosts get the default server.
        assert controller.get("plain.example.com", tls=True).peer_cert["subject"] == DEFAULT_CN
        assert controller.get("unknown.example.com", tls=True).status == 404
        # HTTP redirects to HTTPS for TLS hosts only.
        resp = controller.get("a.example.com", "/p?q=1")
        assert resp.status == 308
        assert resp.headers["location"] == f"https://a.example.com:{controller.https_port}/p?q=1"
        assert controller.get("plain.example.com").status == 200
        log = controller.log()
        assert "spec.tls[2].secretName: TLS Secret default/nope not found" in log
        assert "tls.key does not match the certificate" in log
        assert "tls.crt is not a valid PEM certificate" in log


def test_rotation_and_private_key_files(controller: Controller, manifests: Path) -> None:
    old_cert, old_key = make_cert("rot.example.com", "old.rot.example.com")
    new_cert, new_key = make_cert("rot.example.com")
    with pods(["127.0.3.1"], PORT):
        tls = [{"hosts": ["rot.example.com"], "secretName": "rot"}]
        _setup(manifests, [tls_secret("rot", old_cert, old_key)], tls, ["rot.example.com"])
        wait_for(lambda: controller.get("rot.example.com", tls=True).status == 200, what="https served")
        old_der = x509.load_pem_x509_certificate(old_cert).public_bytes(serialization.Encoding.DER)
        new_der = x509.load_pem_x509_certificate(new_cert).public_bytes(serialization.Encoding.DER)
        assert controller.get("rot.example.com", tls=True).peer_cert["der"] == old_der
        _setup(manifests, [tls_secret("rot", new_cert, new_key)], tls, ["rot.example.com"])
        wait_for(lambda: controller.get("rot.example.com", tls=True).peer_cert["der"] == new_der, what="new cert")
        certs = controller.work_dir / "certs"
        assert stat.S_IMODE(os.stat(certs).st_mode) == 0o700
        files = list(certs.glob("*.pem"))
        assert files and all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)
        assert all(f.read_bytes() != old_cert + old_key for f in files)
        wait_for(lambda: not any(old_key in f.read_bytes() for f in certs.glob("*.pem")), what="old key removed")
        conf = (controller.work_dir / "nginx.conf").read_text()
        assert "PRIVATE KEY" not in conf and "BEGIN CERTIFICATE" not in conf
