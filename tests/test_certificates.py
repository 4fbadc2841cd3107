"""Certificates checked as nginx will use them (ingressctl.translate.tls): key sizes and curves of
OpenSSL's security level, signature digests, chain and size caps, re-serialised PEM, expiry and
name warnings; and real `nginx -t` agrees with the checker on what it refuses."""

from __future__ import annotations

import base64
import datetime
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ingressctl.cache import Cache
from ingressctl.certs import self_signed
from ingressctl.config import Configuration, TenancyPolicy
from ingressctl.model import Event, EventType, Obj
from ingressctl.translate import Settings, translate
from ingressctl.translate.tls import BadCertificate, certificate_from_pem, certificate_from_secret, security_level
from tests.certs import make_chain, make_sha1_signed, tls_secret
from tests.harness import backend, ingress, ingress_class, rule, service

FALLBACK = self_signed()


def run(objects: Iterable[Obj], **settings: Any) -> Configuration:
    cache = Cache()
    for obj in objects:
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    return translate(cache.snapshot(), Settings(fallback_certificate=FALLBACK, **settings))


def tls_objects(pem: tuple[bytes, bytes], host: str = "a.example.com", *, extra: Iterable[Obj] = ()) -> list[Obj]:
    return [
        ingress_class(),
        service("app"),
        tls_secret("a-tls", *pem),
        ingress(
            "a", rules=[rule(host, ("/", "Prefix", backend("app")))], tls=[{"hosts": [host], "secretName": "a-tls"}]
        ),
        *extra,
    ]


def problems(config: Configuration) -> list[str]:
    return [f"{p.field}: {p.reason}" for p in config.problems]


def served_certificate(config: Configuration) -> str | None:
    """The certificate of the host's own Secret; None when the default certificate serves it."""
    (server,) = config.static.servers
    return None if server.certificate == config.static.default_certificate else server.certificate


def rsa_key(bits: int) -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


REFUSED = {
    "rsa-1024": (lambda tmp: make_chain("a.example.com", key=rsa_key(1024)), "tls.key: 1024-bit key is too small"),
    "p-192": (
        lambda tmp: make_chain("a.example.com", key=ec.generate_private_key(ec.SECP192R1())),
        "tls.key: curve secp192r1 (192 bits) is too small",
    ),
    "ca-rsa-1024": (
        lambda tmp: make_chain("a.example.com", intermediates=1, ca_key=rsa_key(1024)),
        "tls.crt certificate 2 of 2: 1024-bit key is too small",
    ),
    "leaf-signed-with-sha1": (
        lambda tmp: make_sha1_signed("a.example.com", tmp),
        "tls.crt certificate 1 of 2: signed with SHA1",
    ),
}
ACCEPTED = {
    "ec-p256": lambda tmp: make_chain("a.example.com"),
    "ec-p384": lambda tmp: make_chain("a.example.com", key=ec.generate_private_key(ec.SECP384R1())),
    "rsa-2048": lambda tmp: make_chain("a.example.com", key=rsa_key(2048)),
    "ed25519": lambda tmp: make_chain("a.example.com", key=ed25519.Ed25519PrivateKey.generate()),
    "chain-of-3": lambda tmp: make_chain("a.example.com", intermediates=2),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_openssl_level_2_refuses_is_rejected_with_the_reason(name: str, tmp_path: Path) -> None:
    make, reason = REFUSED[name]
    config = run(tls_objects(make(tmp_path)))
    assert served_certificate(config) is None  # the default certificate serves the host
    (problem,) = problems(config)
    assert problem.startswith("spec.tls[0].secretName: TLS Secret default/a-tls: " + reason), problem
    assert problem.endswith("nginx would refuse it; serving the default certificate")


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_strong_keys_and_chains_are_served(name: str, tmp_path: Path) -> None:
    config = run(tls_objects(ACCEPTED[name](tmp_path)))
    assert problems(config) == []
    assert served_certificate(config) is not None


def test_security_level_follows_the_ssl_ciphers_option() -> None:
    assert security_level("ECDHE-RSA-AES128-GCM-SHA256") == 2
    assert security_level("DEFAULT:@SECLEVEL=1") == 1
    pem = make_chain("a.example.com", key=rsa_key(1024))
    cm = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c", "namespace": "ns"}}
    config = run(
        tls_objects(pem, extra=[{**cm, "data": {"ssl-ciphers": "DEFAULT:@SECLEVEL=1"}}]), configmap=("ns", "c")
    )
    assert problems(config) == []
    assert served_certificate(config) is not None


def test_written_pem_is_what_parsed_without_junk() -> None:
    cert, key = make_chain("a.example.com", intermediates=1)
    junk_cert = b"# a comment nginx never sees\n" + cert + b"\ntrailing junk\n"
    junk_key = key + b"\n-----BEGIN NONSENSE-----\n"
    checked = certificate_from_pem(junk_cert, junk_key)
    assert checked.certificate.pem == cert + key
    assert b"junk" not in checked.certificate.pem and b"NONSENSE" not in checked.certificate.pem


def test_chain_and_secret_size_caps() -> None:
    cert, key = make_chain("a.example.com", intermediates=3)  # 4 certificates
    with pytest.raises(BadCertificate, match="holds 4 certificates, more than the cap of 3"):
        certificate_from_secret(tls_secret("s", cert, key), tenancy=TenancyPolicy(max_chain_length=3))
    assert certificate_from_secret(tls_secret("s", cert, key), tenancy=TenancyPolicy(max_chain_length=4))
    with pytest.raises(BadCertificate, match="larger than the cap of 1000 bytes"):
        certificate_from_secret(tls_secret("s", cert, key), tenancy=TenancyPolicy(max_secret_bytes=1000))
    # Far over the cap: refused before decoding.
    huge = {**tls_secret("s", cert, key), "data": {"tls.crt": base64.b64encode(b"x" * 400_000).decode(), "tls.key": ""}}
    with pytest.raises(BadCertificate, match="larger than the cap of 131072 bytes"):
        certificate_from_secret(huge)


def test_caps_come_from_the_configmap() -> None:
    pem = make_chain("a.example.com", intermediates=2)
    cm: Obj = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "c", "namespace": "ns"},
        "data": {"max-certificate-chain": "2"},
    }
    config = run(tls_objects(pem, extra=[cm]), configmap=("ns", "c"))
    assert served_certificate(config) is None
    assert problems(config) == [
        "spec.tls[0].secretName: TLS Secret default/a-tls: tls.crt holds 3 certificates, more than the cap of 2; "
        "serving the default certificate"
    ]


@pytest.mark.parametrize(
    ("days", "warning"),
    [
        (30, None),
        (3, "in less than 7 days (served)"),
        (-2, "certificate expired on"),
    ],
)
def test_expiry_warns_and_serves(days: float, warning: str | None) -> None:
    config = run(tls_objects(make_chain("a.example.com", days=days)))
    assert served_certificate(config) is not None
    ((secret, not_after),) = config.certificate_expiry
    assert secret == "default/a-tls"
    left = (not_after - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400
    assert days - 0.1 < left <= days
    if warning is None:
        assert problems(config) == []
    else:
        (problem,) = problems(config)
        assert warning in problem and problem.startswith("spec.tls[0].secretName: TLS Secret default/a-tls: ")


def test_names_that_do_not_cover_the_host_warn_and_serve() -> None:
    config = run(tls_objects(make_chain("other.example.com"), host="a.example.com"))
    assert served_certificate(config) is not None
    assert problems(config) == [
        "spec.tls[0].secretName: TLS Secret default/a-tls: certificate names (other.example.com) do not cover "
        "a.example.com (served)"
    ]
    wildcard = run(tls_objects(make_chain("*.example.com"), host="a.example.com"))
    assert problems(wildcard) == []


@pytest.mark.parametrize("name", [*REFUSED, *ACCEPTED])
def test_real_nginx_agrees_with_the_checker(name: str, tmp_path: Path) -> None:
    """`nginx -t` with the certificate, under the template's own ssl settings: it refuses exactly
    what the checker refuses (so the checker, not nginx, is the one to name the Secret)."""
    cert, key = REFUSED[name][0](tmp_path) if name in REFUSED else ACCEPTED[name](tmp_path)
    pem = tmp_path / "c.pem"
    pem.write_bytes(cert + key)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f'pid "{tmp_path}/nginx.pid"; error_log stderr;\nevents {{}}\n'
        f'http {{ ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers "{_default_ciphers()}";\n'
        f'  server {{ listen 127.0.0.1:1 ssl; ssl_certificate "{pem}"; ssl_certificate_key "{pem}"; }} }}\n'
    )
    result = subprocess.run(
        ["nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True, timeout=30
    )
    try:
        certificate_from_pem(cert, key)
        checker_ok = True
    except BadCertificate:
        checker_ok = False
    assert (result.returncode == 0) == checker_ok, result.stderr
    if not checker_ok:
        assert "SSL_CTX_use_certificate" in result.stderr or "too small" in result.stderr or "weak" in result.stderr


def _default_ciphers() -> str:
    from ingressctl.config import GlobalOptions

    return GlobalOptions().ssl_ciphers
