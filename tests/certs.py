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
