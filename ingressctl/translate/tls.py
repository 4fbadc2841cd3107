"""TLS Secrets to certificates: decode, check the PEM, check the key matches the certificate.

Validation is pure CPU work (no I/O) and memoised by content, so resyncs of many Ingresses sharing
one Secret cost nothing.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ingressctl.config import Certificate
from ingressctl.model import Obj


class BadCertificate(ValueError):
    pass


def _public(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@functools.lru_cache(maxsize=4096)
def certificate_from_pem(cert: bytes, key: bytes) -> Certificate:
    """Checks a PEM chain and key; returns the Certificate or raises BadCertificate."""
    try:
        chain = x509.load_pem_x509_certificates(cert)
    except ValueError as exc:
        raise BadCertificate(f"tls.crt is not a valid PEM certificate: {exc}") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise BadCertificate(f"tls.key is not a valid unencrypted PEM private key: {exc}") from None
    leaf_public = (
        chain[0].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    if leaf_public != _public(private):
        raise BadCertificate("tls.key does not match the certificate in tls.crt")
    return Certificate.from_pem(cert, key)


def ca_from_secret(secret: Obj) -> Certificate | None:
    """The Secret's ca.crt (trusted certificates), re-encoded from the parsed certificates, or None."""
    if secret.get("type") != "kubernetes.io/tls":
        raise BadCertificate("Secret is not of type kubernetes.io/tls")
    data = secret.get("data") or {}
    raw = data.get("ca.crt") if isinstance(data, dict) else None
    if not raw:
        return None
    try:
        pem = base64.b64decode(raw, validate=True)
        chain = x509.load_pem_x509_certificates(pem)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadCertificate(f"ca.crt is not valid base64 PEM certificates: {exc}") from None
    text = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    return Certificate(name=hashlib.sha256(text).hexdigest()[:32], pem=text)


def certificate_from_secret(secret: Obj) -> Certificate:
    if secret.get("type") != "kubernetes.io/tls":
        raise BadCertificate("Secret is not of type kubernetes.io/tls")
    data = secret.get("data") or {}
    if not isinstance(data, dict):
        raise BadCertificate("Secret data is not an object")
    try:
        cert = base64.b64decode(data.get("tls.crt") or "", validate=True)
        key = base64.b64decode(data.get("tls.key") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise BadCertificate("tls.crt or tls.key is not valid base64") from None
    if not cert or not key:
        raise BadCertificate("Secret lacks tls.crt or tls.key")
    return certificate_from_pem(cert, key)
