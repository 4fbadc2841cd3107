"""Global options and the tenancy policy from the controller's ConfigMap, each key declared once
with its validator. The nginx options (GlobalOptions) reach nginx.conf; the policy (TenancyPolicy) only
decides what translate accepts, so a change of it alone never reloads nginx."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ingressctl.config import GlobalOptions, TenancyPolicy
from ingressctl.logfields import ACCESS_FIELDS
from ingressctl.translate import realip, validate
from ingressctl.translate.annotations import balancing
from ingressctl.translate.validate import Invalid


def _digits(value: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' (int() refuses it) and '٤' (nginx refuses it)."""
    return value.isascii() and value.isdigit()


def _seconds(value: str) -> int:
    if not _digits(value) or not 1 <= int(value) <= 3600:
        raise Invalid(f"{value!r} is not a number of seconds (1-3600)")
    return int(value)


def _count(limit: int, least: int = 0) -> Callable[[str], int]:
    def check(value: str) -> int:
        if not _digits(value) or not least <= int(value) <= limit:
            raise Invalid(f"{value!r} is not a number from {least} to {limit}")
        return int(value)

    return check


def _status(value: str) -> int:
    """nginx's limit_req_status / limit_conn_status accept 400-599."""
    if not _digits(value) or not 400 <= int(value) <= 599:
        raise Invalid(f"{value!r} is not an HTTP status from 400 to 599")
    return int(value)


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise Invalid(f"{value!r} is not true or false")
    return value.lower() == "true"


def _workers(value: str) -> str:
    if value != "auto" and not (_digits(value) and 1 <= int(value) <= 64):
        raise Invalid(f"{value!r} is not 'auto' or a number from 1 to 64")
    return value


def _log_fields(value: str) -> tuple[str, ...]:
    """log-format-upstream, the safe subset: comma-separated field names, never a format string."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in ACCESS_FIELDS]
    if unknown or not names:
        raise Invalid(
            f"only comma-separated field names are accepted ({', '.join(ACCESS_FIELDS)}); "
            f"not {', '.join(repr(n) for n in unknown) or 'an empty list'}"
        )
    return tuple(dict.fromkeys(names))


_T = TypeVar("_T", GlobalOptions, TenancyPolicy)
_PROTOCOLS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_CIPHERS = re.compile(r"[A-Za-z0-9!+@=:_.-]{1,2048}")
_NAMESPACE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_WILDCARD = re.compile(r"\*(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+")


def _protocols(value: str) -> str:
    """Space-separated TLS protocol names, each emitted as its own quoted token."""
    names = value.split()
    if not names or any(n not in _PROTOCOLS for n in names) or len(set(names)) != len(names):
        raise Invalid(f"{value!r} is not a space-separated list of {', '.join(_PROTOCOLS)}")
    return " ".join(names)


def _ciphers(value: str) -> str:
    """An OpenSSL cipher list (names, ':', '!', '+', '-', '@STRENGTH'...): one quoted token."""
    if not _CIPHERS.fullmatch(value):
        raise Invalid(f"{value!r} is not an OpenSSL cipher list (letters, digits and !+@=:_.- only)")
    return value


def _list_of(pattern: re.Pattern[str], what: str) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list (spaces allowed around items), sorted, each item checked."""

    def check(value: str) -> tuple[str, ...]:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            if not pattern.fullmatch(item):
                raise Invalid(f"{item!r} is not {what}")
        return tuple(sorted(set(items)))

    return check


@dataclass(frozen=True)
class Option:
    key: str
    attribute: str
    check: Callable[[str], object]
    doc: str


OPTIONS = (
    Option("proxy-connect-timeout", "proxy_connect_timeout", _seconds, "Seconds to connect to an endpoint."),
    Option("proxy-read-timeout", "proxy_read_timeout", _seconds, "Seconds between two reads from an endpoint."),
    Option("proxy-send-timeout", "proxy_send_timeout", _seconds, "Seconds between two writes to an endpoint."),
    Option("proxy-body-size", "proxy_body_size", validate.size, "Largest request body (nginx size, 0 = any)."),
    Option("proxy-next-upstream-tries", "proxy_next_upstream_tries", _count(10), "Tries on connection errors."),
    Option("upstream-keepalive-connections", "upstream_keepalive", _count(10000), "Idle upstream connections."),
    Option("load-balance", "load_balance", balancing.load_balance, "How the balancer picks: round_robin, ewma."),
    Option("enable-access-log", "access_log", _bool, "Write an access log line per request."),
    Option("enable-metrics", "metrics", _bool, "Per-route request metrics on /metrics (see Metrics)."),
    Option("ssl-redirect", "ssl_redirect", _bool, "Redirect HTTP to HTTPS (308) for TLS hosts."),
    Option("worker-processes", "worker_processes", _workers, "nginx worker processes."),
    Option("worker-shutdown-timeout", "worker_shutdown_timeout", _seconds, "Seconds old workers may drain."),
    Option("use-proxy-protocol", "use_proxy_protocol", _bool, "Listeners expect the PROXY protocol header."),
    Option("use-forwarded-headers", "use_forwarded_headers", _bool, "Take the client address from trusted hops."),
    Option("compute-full-forwarded-for", "compute_full_forwarded_for", _bool, "Append to a trusted hop's chain."),
    Option("forwarded-for-header", "forwarded_for_header", realip.header, "Header that carries the client chain."),
    Option("proxy-real-ip-cidr", "proxy_real_ip_cidr", realip.cidrs, "Trusted hops (comma-separated networks)."),
    Option("log-format-escape-json", "access_log_json", _bool, "Access log lines as JSON objects."),
    Option("log-format-upstream", "access_log_fields", _log_fields, "Access log fields (names, comma-separated)."),
    Option("hsts", "hsts", _bool, "Send Strict-Transport-Security on hosts served with a certificate."),
    Option("hsts-max-age", "hsts_max_age", _count(315360000), "HSTS max-age in seconds."),
    Option("hsts-include-subdomains", "hsts_include_subdomains", _bool, "HSTS includeSubDomains."),
    Option("hsts-preload", "hsts_preload", _bool, "HSTS preload."),
    Option("ssl-protocols", "ssl_protocols", _protocols, "TLS protocols, space-separated."),
    Option("ssl-ciphers", "ssl_ciphers", _ciphers, "OpenSSL cipher list for TLS up to 1.2."),
    Option("max-worker-open-files", "max_worker_open_files", _count(1048576), "worker_rlimit_nofile; 0: automatic."),
    Option("limit-req-status-code", "limit_req_status_code", _status, "Status of requests over limit-rps/-rpm."),
    Option(
        "limit-conn-status-code", "limit_conn_status_code", _status, "Status of connections over limit-connections."
    ),
    Option("limit-rate", "limit_rate", _count(10485760), "Response rate per request in KB/s; 0: none."),
    Option("limit-rate-after", "limit_rate_after", _count(10485760), "KB sent at full speed before limit-rate."),
)
_BY_KEY = {o.key: o for o in OPTIONS}

POLICY = (
    Option(
        "allow-cross-namespace-hosts",
        "allow_cross_namespace_hosts",
        _bool,
        "Let Ingresses of different namespaces share a host (single-team clusters).",
    ),
    Option(
        "catch-all-namespaces",
        "catch_all_namespaces",
        _list_of(_NAMESPACE, "a namespace name"),
        "Namespaces whose defaultBackend-only Ingresses and host-less rules are honoured (comma-separated).",
    ),
    Option(
        "allowed-wildcard-hosts",
        "allowed_wildcards",
        _list_of(_WILDCARD, "a wildcard host"),
        "Wildcards with one label after '*.' that are allowed anyway (comma-separated, e.g. *.internal).",
    ),
    Option("max-rules-per-ingress", "max_rules_per_ingress", _count(100000, 1), "Rules in one Ingress."),
    Option("max-paths-per-rule", "max_paths_per_rule", _count(100000, 1), "Paths in one rule."),
    Option("max-hosts", "max_hosts", _count(1000000, 1), "Named hosts in the whole configuration."),
    Option("max-annotation-bytes", "max_annotation_bytes", _count(1 << 24, 1), "Annotation bytes of one Ingress."),
    Option("max-object-bytes", "max_object_bytes", _count(1 << 26, 1), "Bytes of one Ingress as JSON."),
    Option("max-secret-bytes", "max_secret_bytes", _count(1 << 24, 1), "Bytes of tls.crt plus tls.key."),
    Option("max-certificate-chain", "max_chain_length", _count(100, 1), "Certificates in one tls.crt."),
)
_POLICY_BY_KEY = {o.key: o for o in POLICY}


KEYS = {o.attribute: o.key for o in OPTIONS}  # GlobalOptions attribute -> ConfigMap key


@dataclass(frozen=True, slots=True)
class OptionError:
    """A ConfigMap key that was ignored, and why."""

    field: str  # "data.<key>", or "data" when data is not an object
    reason: str


def apply_configmap(base: GlobalOptions, data: Mapping[str, object]) -> tuple[GlobalOptions, list[OptionError]]:
    """Returns the options with the ConfigMap's valid keys applied, and one error per bad key
    (policy keys are left to apply_policy)."""
    return _apply(base, data, _BY_KEY, _POLICY_BY_KEY)


def apply_policy(base: TenancyPolicy, data: Mapping[str, object]) -> tuple[TenancyPolicy, list[OptionError]]:
    """The policy with the ConfigMap's valid policy keys applied, and one error per bad policy key."""
    if not isinstance(data, Mapping):
        return base, []  # apply_configmap reports it
    policy, errors = _apply(base, data, _POLICY_BY_KEY, _BY_KEY)
    return policy, [e for e in errors if e.reason != "unknown option"]


def _apply(
    base: _T, data: Mapping[str, object], table: Mapping[str, Option], other: Mapping[str, Option]
) -> tuple[_T, list[OptionError]]:
    changes: dict[str, object] = {}
    errors: list[OptionError] = []
    if not isinstance(data, Mapping):
        return base, [OptionError("data", "is not an object")]
    for key in sorted(data, key=str):
        option = table.get(key)
        if option is None:
            if key not in other:
                errors.append(OptionError(f"data.{key}", "unknown option"))
            continue
        try:
            changes[option.attribute] = option.check(str(data[key]))
        except Invalid as exc:
            errors.append(OptionError(f"data.{key}", str(exc)))
    updated: Any = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    return updated, errors
