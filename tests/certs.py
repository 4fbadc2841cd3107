"""Test certificates made on the spot with `cryptography`, and TLS Secrets carrying them."""

from __future__ import annotations

import base64
from typing import Any

from ingressctl.certs import self_signed_pem


def make_cert(*hosts: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for the hosts (first one is the CN); returns (cert PEM, key PEM)."""
    return self_signed_pem(hosts[0], list(hosts), days=30)


def tls_secret(name: str, cert: bytes, key: bytes, *, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()},
    }


def make_chain(
    *hosts: str,
    key: Any = None,
    days: float = 30,
    ca_key: Any = None,
    digest: Any = None,
    intermediates: int = 0,
) -> tuple[bytes, bytes]:
    """A leaf for `hosts` with the given key (default EC P-256) valid for `days` (negative: expired),
    signed by `intermediates` CAs above it (ca_key: the key of each, default EC P-256) with `digest`
    (default SHA-256); returns (chain PEM, leaf key PEM). No CA: self-signed."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, public: Any, issuer: str, signer: Any, ca: bool) -> Any:
        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        b = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
        return b.sign(signer, None if isinstance(signer, ed25519_types()) else (digest or hashes.SHA256()))

    cas = [ca_key or ec.generate_private_key(ec.SECP256R1()) for _ in range(intermediates)]
    chain = []
    if cas:
        chain.append(build(hosts[0], key.public_key(), "ca-0", cas[0], False))
        for i, k in enumerate(cas):
            parent = cas[i + 1] if i + 1 < len(cas) else k
            issuer = f"ca-{i + 1}" if i + 1 < len(cas) else f"ca-{i}"
            chain.append(build(f"ca-{i}", k.public_key(), issuer, parent, True))
    else:
        chain.append(build(hosts[0], key.public_key(), hosts[0], key, False))
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, key_pem


def ed25519_types() -> tuple[type, ...]:
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

    return (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


def make_sha1_signed(host: str, directory: Any) -> tuple[bytes, bytes]:
    """A leaf signed by a CA with SHA-1 (cryptography refuses to make one; the openssl CLI does):
    returns (leaf + CA PEM, leaf key PEM)."""
    import subprocess
    from pathlib import Path

    d = Path(directory)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=sha1-ca", "-days", "30")
    openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", f"/CN={host}")
    openssl(
        "x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "7", "-sha1",
        "-days", "30", "-out", "leaf.crt",
    )  # fmt: skip
    return (d / "leaf.crt").read_bytes() + (d / "ca.crt").read_bytes(), (d / "leaf.key").read_bytes()
