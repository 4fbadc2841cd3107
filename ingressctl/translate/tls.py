"""TLS Secrets to certificates, checked as nginx (OpenSSL) will use them.

A Secret's certificate chain and key are parsed; the key must match the leaf; every key must be
strong enough for the OpenSSL security level in use (Debian's default, 2: RSA/DSA >= 2048 bits,
elliptic curves >= 224 bits; no MD5/SHA-1 signatures below a self-signed certificate), so that
`nginx -t` never meets a certificate it refuses. What is written for nginx is the re-serialised
PEM of what parsed (no trailing junk, no comments). Caps bound the Secret's size and the chain's
length. Expiry and the names a certificate covers are not errors (a certificate is served even
when expired, as users expect); translate warns about them (`warnings`).

Validation is pure CPU work (no I/O) and memoised by content, so resyncs of many Ingresses sharing
one Secret cost nothing.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from ingressctl.config import Certificate, TenancyPolicy
from ingressctl.model import Obj

DEFAULT_SECURITY_LEVEL = 2  # Debian's OpenSSL default (CipherString = DEFAULT:@SECLEVEL=2)
# OpenSSL's minimum key sizes per security level: (RSA/DSA/DH bits, elliptic curve bits).
_MIN_BITS = {0: (0, 0), 1: (1024, 160), 2: (2048, 224), 3: (3072, 256), 4: (7680, 384), 5: (15360, 512)}
EXPIRY_WARNING_DAYS = 7
_SECLEVEL = re.compile(r"@SECLEVEL=([0-5])")
_WEAK_DIGESTS = ("md5", "sha1")


class BadCertificate(ValueError):
    pass


@dataclass(frozen=True)
class CheckedCertificate:
    """A certificate nginx will accept, with what translate warns about."""

    certificate: Certificate
    not_after: datetime.datetime  # of the leaf, UTC
    names: tuple[str, ...]  # DNS names of the leaf (subjectAltName, else the common name), lower-case


def security_level(ssl_ciphers: str) -> int:
    """The OpenSSL security level an `ssl-ciphers` value sets (`@SECLEVEL=N`), else Debian's default."""
    found = _SECLEVEL.findall(ssl_ciphers)
    return int(found[-1]) if found else DEFAULT_SECURITY_LEVEL


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_problem(key: PublicKeyTypes | PrivateKeyTypes, level: int) -> str | None:
    """Why OpenSSL at `level` refuses this key, or None."""
    min_bits, min_curve = _MIN_BITS[level]
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey | dsa.DSAPublicKey | dsa.DSAPrivateKey):
        if key.key_size < min_bits:
            return f"{key.key_size}-bit key is too small (security level {level} needs {min_bits})"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if key.curve.key_size < min_curve:
            bits = key.curve.key_size
            return f"curve {key.curve.name} ({bits} bits) is too small (security level {level} needs {min_curve})"
        return None
    if isinstance(
        key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey | ed448.Ed448PublicKey | ed448.Ed448PrivateKey
    ):
        return None
    return f"key type {type(key).__name__} is not supported"


def _digest_problem(cert: x509.Certificate, level: int) -> str | None:
    if level < 1 or cert.issuer == cert.subject:  # a self-signed certificate's signature is not checked
        return None
    algorithm = cert.signature_hash_algorithm
    if isinstance(algorithm, hashes.HashAlgorithm) and algorithm.name in _WEAK_DIGESTS:
        return f"signed with {algorithm.name.upper()}, which security level {level} refuses"
    return None


def _names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [str(a.value).lower() for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return tuple(sorted(set(names)))


@functools.lru_cache(maxsize=4096)
def certificate_from_pem(cert: bytes, key: bytes, *, max_chain: int = 10, level: int = 2) -> CheckedCertificate:
    """Checks a PEM chain and key; returns the re-serialised certificate or raises BadCertificate."""
    try:
        chain = x509.load_pem_x509_certificates(cert)
    except ValueError as exc:
        raise BadCertificate(f"tls.crt is not a valid PEM certificate: {exc}") from None
    if len(chain) > max_chain:
        raise BadCertificate(f"tls.crt holds {len(chain)} certificates, more than the cap of {max_chain}")
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise BadCertificate(f"tls.key is not a valid unencrypted PEM private key: {exc}") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm (not a ValueError) for some keys
        raise BadCertificate(f"tls.key cannot be used: {exc}") from None
    try:
        leaf_public = chain[0].public_key()
    except Exception as exc:  # an unsupported public key algorithm
        raise BadCertificate(f"tls.crt's key cannot be used: {exc}") from None
    if _spki(leaf_public) != _spki(private.public_key()):
        raise BadCertificate("tls.key does not match the certificate in tls.crt")
    problem = _key_problem(private, level)
    if problem:
        raise BadCertificate(f"tls.key: {problem}; nginx would refuse it")
    for i, c in enumerate(chain):
        try:
            problem = _key_problem(c.public_key(), level) if i else None
        except Exception as exc:
            problem = f"key cannot be used: {exc}"
        problem = problem or _digest_problem(c, level)
        if problem:
            raise BadCertificate(f"tls.crt certificate {i + 1} of {len(chain)}: {problem}; nginx would refuse it")
    pem_chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    pem_key = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return CheckedCertificate(
        certificate=Certificate.from_pem(pem_chain, pem_key),
        not_after=chain[0].not_valid_after_utc,
        names=_names(chain[0]),
    )


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


def certificate_from_secret(secret: Obj, *, tenancy: TenancyPolicy | None = None, level: int = 2) -> CheckedCertificate:
    policy = tenancy or TenancyPolicy()
    if secret.get("type") != "kubernetes.io/tls":
        raise BadCertificate("Secret is not of type kubernetes.io/tls")
    data = secret.get("data") or {}
    if not isinstance(data, dict):
        raise BadCertificate("Secret data is not an object")
    raw = (data.get("tls.crt") or "", data.get("tls.key") or "")
    if not all(isinstance(r, str) for r in raw):
        raise BadCertificate("tls.crt or tls.key is not valid base64")
    # base64 is 4/3 of the bytes: refuse before decoding what is surely over the cap.
    if sum(len(r) for r in raw) * 3 // 4 > policy.max_secret_bytes + 8:
        raise BadCertificate(f"tls.crt and tls.key are larger than the cap of {policy.max_secret_bytes} bytes")
    try:
        cert = base64.b64decode(raw[0], validate=True)
        key = base64.b64decode(raw[1], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise BadCertificate("tls.crt or tls.key is not valid base64") from None
    if not cert or not key:
        raise BadCertificate("Secret lacks tls.crt or tls.key")
    if len(cert) + len(key) > policy.max_secret_bytes:
        raise BadCertificate(f"tls.crt and tls.key are larger than the cap of {policy.max_secret_bytes} bytes")
    return certificate_from_pem(cert, key, max_chain=policy.max_chain_length, level=level)


def name_covers(name: str, host: str) -> bool:
    """Whether a certificate's DNS name serves `host` (a wildcard name covers exactly one label)."""
    if name == host:
        return True
    return name.startswith("*.") and not host.startswith("*.") and host.split(".", 1)[-1] == name[2:]


def warnings(checked: CheckedCertificate, hosts: tuple[str, ...], now: datetime.datetime) -> list[str]:
    """What to tell the certificate's users: expired or expiring soon, hosts its names do not cover."""
    out: list[str] = []
    days = (checked.not_after - now).total_seconds() / 86400
    when = checked.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    if days < 0:
        out.append(f"certificate expired on {when} (served anyway)")
    elif days < EXPIRY_WARNING_DAYS:
        out.append(f"certificate expires on {when}, in less than {EXPIRY_WARNING_DAYS} days (served)")
    uncovered = [h for h in hosts if not any(name_covers(n, h) for n in checked.names)]
    if uncovered:
        out.append(
            f"certificate names ({', '.join(checked.names) or 'none'}) do not cover {', '.join(uncovered)} (served)"
        )
    return out
