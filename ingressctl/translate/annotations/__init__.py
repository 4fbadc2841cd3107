"""Annotations of one Ingress, read through the registry into typed settings.

read() looks at every annotation under `ingressctl.io/` and `nginx.ingress.kubernetes.io/`: a known one
is parsed by its registry entry (an invalid value rejects the Ingress, naming the annotation), a snippet
rejects the Ingress, anything else is ignored with a warning. Ours wins over ingress-nginx's when both
are set and differ (with a warning). The result turns into a Policy (location scope) and a ServerPolicy
(server scope) of the Configuration. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ingressctl.config import Balancing, Cors, Policy, ServerPolicy
from ingressctl.translate.annotations import auth
from ingressctl.translate.annotations import balancing as lb
from ingressctl.translate.annotations.limits import basic_auth, limits
from ingressctl.translate.annotations.registry import (
    BY_NAME,
    NGINX,
    OURS,
    PREFIXES,
    is_snippet,
    snippet_reason,
)
from ingressctl.translate.validate import Invalid

MAX_ANNOTATIONS = 256
IGNORED_PREFIX = "not supported, ignored: "  # annotations under our two prefixes on one Ingress


class AnnotationError(ValueError):
    """An annotation rejects its Ingress: an invalid value, or a snippet."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def field_of(key: str) -> str:
    return f'metadata.annotations["{key}"]'


@dataclass(frozen=True)
class Read:
    """What one Ingress's annotations say."""

    values: Mapping[str, object] = field(default_factory=dict)  # by registry name, parsed
    keys: Mapping[str, str] = field(default_factory=dict)  # by registry name: the key the value came from
    ignored: tuple[str, ...] = ()  # keys under our prefixes that nothing reads
    warnings: tuple[tuple[str, str], ...] = ()  # (field, reason)
    policy: Policy | None = None
    server: ServerPolicy | None = None
    balancing: Balancing | None = None  # None: the ConfigMap's load-balance
    regex: bool = False  # paths are regexes (use-regex, or rewrite-target)


EMPTY = Read()


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    found = meta.get("annotations") if isinstance(meta, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def split(key: object) -> tuple[str, str] | None:
    """(prefix, name) of a key under one of our prefixes, else None."""
    if isinstance(key, str):
        for prefix in PREFIXES:
            if key.startswith(prefix):
                return prefix, key[len(prefix) :]
    return None


def read(annotations: Mapping[str, Any], *, namespace: str = "", name: str = "") -> Read:
    """Parses the annotations of one Ingress (`namespace`/`name`); raises AnnotationError for the first
    that rejects it."""
    ingress = name
    ours: dict[str, tuple[str, str]] = {}  # name -> (key, raw value), our prefix
    theirs: dict[str, tuple[str, str]] = {}
    ignored: list[str] = []
    for key in sorted(annotations, key=str):
        parts = split(key)
        if parts is None:
            continue
        prefix, name = parts
        if is_snippet(name):
            raise AnnotationError(field_of(key), snippet_reason(name))
        if name not in BY_NAME:
            ignored.append(key)
            continue
        raw = annotations[key]
        if not isinstance(raw, str):
            raise AnnotationError(field_of(key), "must be a string")
        (ours if prefix == OURS else theirs)[name] = (key, raw)
    if len(ours) + len(theirs) + len(ignored) > MAX_ANNOTATIONS:
        raise AnnotationError("metadata.annotations", f"more than {MAX_ANNOTATIONS} ingress annotations")
    if not ours and not theirs:
        return Read(ignored=tuple(ignored), warnings=_ignored_warning(ignored)) if ignored else EMPTY
    warnings: list[tuple[str, str]] = []
    chosen: dict[str, tuple[str, str]] = dict(theirs)
    for name, (key, raw) in ours.items():
        other = theirs.get(name)
        if other is not None and other[1] != raw:
            warnings.append((field_of(other[0]), f"differs from {key}, which wins"))
        chosen[name] = (key, raw)
    values: dict[str, object] = {}
    for name, (key, raw) in sorted(chosen.items()):
        try:
            values[name] = BY_NAME[name].parse(raw)
        except Invalid as exc:
            raise AnnotationError(field_of(key), str(exc)) from None
    keys = {name: key for name, (key, _) in chosen.items()}
    for secret_annotation in ("proxy-ssl-secret", "auth-tls-secret", "auth-secret"):
        secret = values.get(secret_annotation)
        if isinstance(secret, str) and "/" in secret:
            secret_ns, _, secret_name = secret.partition("/")
            if namespace and secret_ns != namespace:
                raise AnnotationError(
                    field_of(keys[secret_annotation]),
                    f"must be a Secret of the Ingress's own namespace ({namespace}), not {secret_ns}",
                )
            values[secret_annotation] = secret_name
    if "auth-type" in values and "auth-secret" not in values:
        raise AnnotationError(field_of(keys["auth-type"]), "needs auth-secret (the users and their password hashes)")
    warnings += _ignored_warning(ignored)
    warnings += _unused(values, keys)
    regex = bool(values.get("use-regex")) or "rewrite-target" in values
    return Read(
        values=values,
        keys=keys,
        ignored=tuple(ignored),
        warnings=tuple(warnings),
        policy=location_policy(values, namespace=namespace, name=ingress),
        server=server_policy(values),
        balancing=lb.balancing(values),
        regex=regex,
    )


def _ignored_warning(ignored: list[str]) -> tuple[tuple[str, str], ...]:
    if not ignored:
        return ()
    return (("metadata.annotations", f"{IGNORED_PREFIX}{', '.join(ignored)}"),)


def _unused(values: Mapping[str, object], keys: Mapping[str, str]) -> list[tuple[str, str]]:
    """Annotations that only mean something together with another one."""
    needs = {
        "permanent-redirect-code": "permanent-redirect",
        "temporal-redirect-code": "temporal-redirect",
        "proxy-redirect-to": "proxy-redirect-from",
        "proxy-redirect-from": "proxy-redirect-to",
        **{n: "enable-cors" for n in values if n.startswith("cors-")},
        **lb.needs(values),
        **auth.NEEDS,
        **{n: "canary" for n in values if n.startswith("canary-")},
        "auth-secret": "auth-type",
        "auth-secret-type": "auth-type",
        "auth-realm": "auth-type",
    }
    if values.get("canary") is True:
        needs.update({"canary-by-header-value": "canary-by-header", "canary-by-header-pattern": "canary-by-header"})
    out = []
    for name, needed in needs.items():
        if name in values and (needed not in values or values[needed] is False):
            out.append((field_of(keys[name]), f"has no effect without {needed}"))
    if values.get("proxy-buffering") is False and values.get("limit-rate"):
        out.append((field_of(keys["limit-rate"]), "limit-rate has no effect with proxy-buffering off"))
    return out


def _cors(values: Mapping[str, Any]) -> Cors | None:
    if not values.get("enable-cors"):
        return None
    base = Cors()
    return Cors(
        origins=values.get("cors-allow-origin", base.origins),
        methods=values.get("cors-allow-methods", base.methods),
        headers=values.get("cors-allow-headers", base.headers),
        expose=values.get("cors-expose-headers", base.expose),
        credentials=values.get("cors-allow-credentials", base.credentials),
        max_age=values.get("cors-max-age", base.max_age),
    )


def location_policy(values: Mapping[str, Any], *, namespace: str = "", name: str = "") -> Policy | None:
    redirect = None
    if "temporal-redirect" in values:
        redirect = (values.get("temporal-redirect-code", 302), values["temporal-redirect"])
    elif "permanent-redirect" in values:
        redirect = (values.get("permanent-redirect-code", 301), values["permanent-redirect"])
    proxy_redirect = None
    if "proxy-redirect-from" in values and "proxy-redirect-to" in values:
        proxy_redirect = (values["proxy-redirect-from"], values["proxy-redirect-to"])
    allow = values.get("allowlist-source-range", values.get("whitelist-source-range", ()))
    policy = Policy(
        connect_timeout=values.get("proxy-connect-timeout"),
        read_timeout=values.get("proxy-read-timeout"),
        send_timeout=values.get("proxy-send-timeout"),
        body_size=values.get("proxy-body-size"),
        next_upstream=values.get("proxy-next-upstream", ()),
        next_upstream_tries=values.get("proxy-next-upstream-tries"),
        next_upstream_timeout=values.get("proxy-next-upstream-timeout"),
        buffering=values.get("proxy-buffering"),
        buffer_size=values.get("proxy-buffer-size"),
        buffers_number=values.get("proxy-buffers-number"),
        request_buffering=values.get("proxy-request-buffering"),
        client_body_buffer_size=values.get("client-body-buffer-size"),
        http_version=values.get("proxy-http-version"),
        upstream_vhost=values.get("upstream-vhost"),
        connection_header=values.get("connection-proxy-header"),
        x_forwarded_prefix=values.get("x-forwarded-prefix"),
        proxy_redirect=proxy_redirect,
        redirect=redirect,
        allow=allow,
        deny=values.get("denylist-source-range", ()),
        cors=_cors(values),
        rewrite_target=values.get("rewrite-target"),
        protocol=values.get("backend-protocol", "HTTP"),
        ssl_name=values.get("proxy-ssl-name"),
        ssl_server_name=values.get("proxy-ssl-server-name"),
        ssl_secret=values.get("proxy-ssl-secret"),
        ssl_verify=values.get("proxy-ssl-verify"),
        ssl_verify_depth=values.get("proxy-ssl-verify-depth"),
        external_auth=auth.external_auth(values),
        limits=limits(values, namespace=namespace, name=name),
        basic_auth=basic_auth(values),
    )
    return None if policy == _NO_POLICY else policy


_NO_POLICY = Policy()


def server_policy(values: Mapping[str, Any]) -> ServerPolicy | None:
    policy = ServerPolicy(
        ssl_redirect=values.get("ssl-redirect"),
        force_ssl_redirect=values.get("force-ssl-redirect", False),
        aliases=values.get("server-alias", ()),
        from_to_www=values.get("from-to-www-redirect", False),
        app_root=values.get("app-root"),
        client_auth=auth.client_auth(values),
    )
    return None if policy == _NO_SERVER else policy


_NO_SERVER = ServerPolicy()

__all__ = [
    "EMPTY",
    "IGNORED_PREFIX",
    "NGINX",
    "OURS",
    "AnnotationError",
    "Read",
    "annotations_of",
    "field_of",
    "read",
    "split",
]
