"""The annotations that need other objects than their Ingress: default-backend and custom-http-errors
(a Service of the Ingress's namespace), service-upstream (the Service's cluster IP), proxy-ssl-secret
and auth-tls-secret (a Secret's certificates), auth-secret (the users of basic authentication).
translate's steps call these with the builder; everything here is pure."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ingressctl.cache import Snapshot
from ingressctl.config import (
    Backend,
    Certificate,
    Endpoint,
    ErrorPages,
    Htpasswd,
    ObjectRef,
    Policy,
    ServerPolicy,
    TenancyPolicy,
)
from ingressctl.model import SECRET, SERVICE, Obj
from ingressctl.translate import basicauth
from ingressctl.translate import ingress as ing
from ingressctl.translate.annotations import field_of
from ingressctl.translate.tls import BadCertificate, ca_from_secret, certificate_from_secret
from ingressctl.translate.validate import Invalid, ip_address


class Builder(Protocol):
    snapshot: Snapshot
    algorithm: str
    backends: dict[str, Backend]
    certificates: dict[str, Certificate]
    policy_certificates: set[str]
    htpasswd: dict[str, Htpasswd]  # basic auth user files, by name
    tenancy: TenancyPolicy  # caps on Secrets
    security_level: int  # OpenSSL's, for the keys of client certificates

    def use(self, ref: ing.ServiceRef, *, owner: ObjectRef, where: str, suffix: str = "") -> str: ...

    def problem(self, ref: ObjectRef, *, where: str, reason: str) -> None: ...


def tls_secret(snapshot: Snapshot, namespace: str, name: str) -> Obj | None:
    """A Secret of type kubernetes.io/tls (the cache also holds Opaque ones, for basic auth)."""
    secret = snapshot.of(SECRET).get((namespace, name))
    return secret if secret is not None and secret.get("type") == "kubernetes.io/tls" else None


def first_port(snapshot: Snapshot, namespace: str, name: str) -> int:
    """A Service's first port (80 if it has none: the resolver then reports the Service)."""
    spec = (snapshot.of(SERVICE).get((namespace, name)) or {}).get("spec")
    ports = spec.get("ports") if isinstance(spec, dict) else None
    first = ports[0] if isinstance(ports, list) and ports and isinstance(ports[0], dict) else {}
    port = first.get("port", 80)
    return port if isinstance(port, int) else 80


def default_backend(b: Builder, p: ing.ParsedIngress) -> str | None:
    """The default-backend annotation's backend (a Service of the Ingress's namespace, first port)."""
    name = p.annotations.values.get("default-backend")
    if not isinstance(name, str):
        return None
    ref = ing.ServiceRef(p.ref.namespace, name, first_port(b.snapshot, p.ref.namespace, name))
    return b.use(ref, owner=p.ref, where=field_of(p.annotations.keys["default-backend"]))


def location_policy(b: Builder, p: ing.ParsedIngress, *, global_default: tuple[str, str] | None) -> Policy | None:
    """The Ingress's location policy, with custom-http-errors pointed at its default backend (the
    default-backend annotation, else --default-backend-service)."""
    policy = p.annotations.policy
    if policy is not None and policy.ssl_secret:
        policy = _ssl_secret(b, p, policy)
    if policy is not None and policy.external_auth is not None and policy.external_auth.service:
        policy = _auth_service(b, p, policy)
    codes = p.annotations.values.get("custom-http-errors")
    if not isinstance(codes, tuple):
        return policy
    if "default-backend" in p.annotations.values:
        namespace, service = p.ref.namespace, str(p.annotations.values["default-backend"])
        backend = default_backend(b, p)
    elif global_default is not None:
        namespace, service = global_default
        ref = ing.ServiceRef(namespace, service, first_port(b.snapshot, namespace, service))
        backend = b.use(ref, owner=ObjectRef(SERVICE, namespace, service), where="--default-backend-service")
    else:
        where = field_of(p.annotations.keys["custom-http-errors"])
        b.problem(p.ref, where=where, reason="has no effect without default-backend or --default-backend-service")
        return policy
    assert backend is not None
    port = first_port(b.snapshot, namespace, service)
    errors = ErrorPages(codes, backend, p.ref.namespace, p.ref.name, service, str(port))
    return dataclasses.replace(policy or Policy(), errors=errors)


def _ssl_secret(b: Builder, p: ing.ParsedIngress, policy: Policy) -> Policy:
    """proxy-ssl-secret: its ca.crt (trusted) and tls.crt/tls.key (client) as certificate files. A
    missing or bad Secret is reported; the policy then answers 503 (Policy.ssl_unusable)."""
    name = str(policy.ssl_secret)
    where = field_of(p.annotations.keys["proxy-ssl-secret"])
    secret = tls_secret(b.snapshot, p.ref.namespace, name)
    if secret is None:
        b.problem(p.ref, where=where, reason=f"Secret {p.ref.namespace}/{name} not found; its paths answer 503")
        return policy
    trusted = client = None
    try:
        ca = ca_from_secret(secret)
        if ca is not None:
            b.certificates[ca.name] = ca
            trusted = ca.name
        if (secret.get("data") or {}).get("tls.key"):
            cert = certificate_from_secret(secret, tenancy=b.tenancy, level=b.security_level).certificate
            b.certificates[cert.name] = cert
            client = cert.name
    except BadCertificate as exc:
        b.problem(p.ref, where=where, reason=f"Secret {p.ref.namespace}/{name}: {exc}; its paths answer 503")
        return policy
    if policy.ssl_verify and trusted is None:
        b.problem(
            p.ref,
            where=where,
            reason=f"Secret {p.ref.namespace}/{name} has no ca.crt to verify with; its paths answer 503",
        )
    b.policy_certificates.update(n for n in (trusted, client) if n)
    return dataclasses.replace(policy, ssl_trusted=trusted, ssl_client=client)


def _auth_service(b: Builder, p: ing.ParsedIngress, policy: Policy) -> Policy:
    """auth-url on a Service's cluster DNS name: the Service's cluster IP from the cache (nginx never
    resolves names). A Service that is missing or has none is reported; the paths then answer 503."""
    auth = policy.external_auth
    assert auth is not None and auth.service is not None
    namespace, name = auth.service.split("/")
    spec = (b.snapshot.of(SERVICE).get((namespace, name)) or {}).get("spec")
    try:
        address = ip_address(spec.get("clusterIP") if isinstance(spec, dict) else None)
    except Invalid:
        where = field_of(p.annotations.keys["auth-url"])
        b.problem(
            p.ref, where=where, reason=f"Service {auth.service} not found or without a cluster IP; its paths answer 503"
        )
        return policy
    return dataclasses.replace(policy, external_auth=dataclasses.replace(auth, address=address))


MAX_CA_BYTES = 262144  # a client-certificate CA bundle, decoded


def client_ca(b: Builder, p: ing.ParsedIngress, policy: ServerPolicy) -> ServerPolicy:
    """auth-tls-secret: the Secret's ca.crt (kubernetes.io/tls or Opaque Secrets: the cache keeps no others),
    re-encoded from the parsed certificates as a certificate file. A missing or bad Secret is
    reported; the host then answers 503."""
    auth = policy.client_auth
    if auth is None:
        return policy
    where = field_of(p.annotations.keys["auth-tls-secret"])
    secret = b.snapshot.of(SECRET).get((p.ref.namespace, auth.secret))
    data = (secret or {}).get("data")
    raw = data.get("ca.crt") if isinstance(data, dict) else None
    reason = f"Secret {p.ref.namespace}/{auth.secret}"
    if secret is None:
        reason += " not found (only Secrets of type kubernetes.io/tls or Opaque are read)"
    elif not isinstance(raw, str) or not raw:
        reason += " has no ca.crt"
    elif len(raw) * 3 // 4 > MAX_CA_BYTES:
        reason += f": ca.crt is larger than the cap of {MAX_CA_BYTES} bytes"
    else:
        try:
            chain = x509.load_pem_x509_certificates(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError, TypeError) as exc:
            reason += f": ca.crt is not valid base64 PEM certificates: {exc}"
        else:
            pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
            ca = Certificate(name=hashlib.sha256(pem).hexdigest()[:32], pem=pem)
            b.certificates[ca.name] = ca
            b.policy_certificates.add(ca.name)
            return dataclasses.replace(policy, client_auth=dataclasses.replace(auth, ca=ca.name))
    b.problem(p.ref, where=where, reason=f"{reason}; its hosts answer 503")
    return policy


def unresolved(policy: ServerPolicy | None) -> ServerPolicy | None:
    """A server policy as its annotations say it, before client_ca resolved its Secret."""
    if policy is None or policy.client_auth is None or policy.client_auth.ca is None:
        return policy
    return dataclasses.replace(policy, client_auth=dataclasses.replace(policy.client_auth, ca=None))


def cluster_ip(b: Builder, ref: ing.ServiceRef, *, owner: ObjectRef, where: str) -> str:
    """service-upstream: a backend whose one endpoint is the Service's cluster IP and port; a Service
    without one (headless, missing, a port name it lacks) is reported and its endpoints are used."""
    spec = (b.snapshot.of(SERVICE).get((ref.namespace, ref.name)) or {}).get("spec")
    spec = spec if isinstance(spec, dict) else {}
    port: object = ref.port
    if isinstance(port, str):
        named = [p for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("name") == port]
        port = named[0].get("port") if named else None
    try:
        address = ip_address(spec.get("clusterIP"))
    except Invalid:
        address = None
    if address is None or not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        b.problem(
            owner,
            where=where + ".backend",
            reason=f"service-upstream: Service {ref.namespace}/{ref.name} has no cluster IP and port; "
            "its endpoints are used",
        )
        return b.use(ref, owner=owner, where=where, suffix=".backend")
    # Longer than any port name (15 characters), so never the name of an endpoints backend.
    name = f"{ref.namespace}/{ref.name}:service-upstream-{port}"
    b.backends[name] = Backend(name, (Endpoint(address, port),), b.algorithm)
    return name


def basic_auth(b: Builder, p: ing.ParsedIngress) -> ing.ParsedIngress | None:
    """auth-type basic: the Ingress with the htpasswd file of its auth-secret, or None (reported) when
    the Secret is missing or has no valid user: the Ingress is then rejected, never served open.
    Lines that do not pass are skipped and reported."""
    policy = p.annotations.policy
    auth = policy.basic_auth if policy is not None else None
    if policy is None or auth is None:
        return p
    where = field_of(p.annotations.keys["auth-secret"])
    name = f"{p.ref.namespace}/{auth.secret}"
    secret = b.snapshot.of(SECRET).get((p.ref.namespace, auth.secret))
    if secret is None:
        b.problem(p.ref, where=where, reason=f"Secret {name} not found; Ingress rejected")
        return None
    try:
        found = basicauth.users(secret, auth, namespace=p.ref.namespace)
    except basicauth.BadAuthSecret as exc:
        b.problem(p.ref, where=where, reason=f"Secret {name} ({auth.secret_type}) {exc}; Ingress rejected")
        return None
    for reason in found.skipped:
        b.problem(p.ref, where=where, reason=f"Secret {name}: {reason}; line skipped")
    b.htpasswd[found.file.name] = found.file
    auth = dataclasses.replace(auth, file=found.file.name)
    read = dataclasses.replace(p.annotations, policy=dataclasses.replace(policy, basic_auth=auth))
    return dataclasses.replace(p, annotations=read)
