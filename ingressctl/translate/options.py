"""Global options from the controller's ConfigMap, each key declared once with its validator."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ingressctl.config import ALGORITHMS, GlobalOptions
from ingressctl.logfields import ACCESS_FIELDS
from ingressctl.translate import realip, validate
from ingressctl.translate.validate import Invalid


def _digits(value: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' (int() refuses it) and '٤' (nginx refuses it)."""
    return value.isascii() and value.isdigit()


def _seconds(value: str) -> int:
    if not _digits(value) or not 1 <= int(value) <= 3600:
        raise Invalid(f"{value!r} is not a number of seconds (1-3600)")
    return int(value)


def _count(limit: int) -> Callable[[str], int]:
    def check(value: str) -> int:
        if not _digits(value) or not 0 <= int(value) <= limit:
            raise Invalid(f"{value!r} is not a number from 0 to {limit}")
        return int(value)

    return check


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise Invalid(f"{value!r} is not true or false")
    return value.lower() == "true"


def _workers(value: str) -> str:
    if value != "auto" and not (_digits(value) and 1 <= int(value) <= 64):
        raise Invalid(f"{value!r} is not 'auto' or a number from 1 to 64")
    return value


def _algorithm(value: str) -> str:
    if value not in ALGORITHMS:
        raise Invalid(f"{value!r} is not one of {', '.join(ALGORITHMS)}")
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
    Option("load-balance", "load_balance", _algorithm, "How the balancer picks an endpoint: round_robin."),
    Option("enable-access-log", "access_log", _bool, "Write an access log line per request."),
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
)
_BY_KEY = {o.key: o for o in OPTIONS}


KEYS = {o.attribute: o.key for o in OPTIONS}  # GlobalOptions attribute -> ConfigMap key


@dataclass(frozen=True, slots=True)
class OptionError:
    """A ConfigMap key that was ignored, and why."""

    field: str  # "data.<key>", or "data" when data is not an object
    reason: str


def apply_configmap(base: GlobalOptions, data: Mapping[str, object]) -> tuple[GlobalOptions, list[OptionError]]:
    """Returns the options with the ConfigMap's valid keys applied, and one error per bad key."""
    changes: dict[str, object] = {}
    errors: list[OptionError] = []
    if not isinstance(data, Mapping):
        return base, [OptionError("data", "is not an object")]
    for key in sorted(data, key=str):
        option = _BY_KEY.get(key)
        if option is None:
            errors.append(OptionError(f"data.{key}", "unknown option"))
            continue
        try:
            changes[option.attribute] = option.check(str(data[key]))
        except Invalid as exc:
            errors.append(OptionError(f"data.{key}", str(exc)))
    return dataclasses.replace(base, **changes), errors  # type: ignore[arg-type]
