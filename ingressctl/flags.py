"""Command-line flags that can also come from the environment: INGRESSCTL_<FLAG> (upper case,
dashes as underscores) gives a flag's default; a flag on the command line wins. Shared by the
core flags (cli.py) and the Kubernetes API source's flags (sources/kube.py)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ingressctl.translate import validate as v


def env_name(flag: str) -> str:
    return "INGRESSCTL_" + flag.lstrip("-").upper().replace("-", "_")


def env(flag: str) -> str | None:
    """The flag's environment variable, None when unset or empty."""
    return os.environ.get(env_name(flag)) or None


def parse_bool(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "t", "true", "yes", "on"):
        return True
    if low in ("0", "f", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not a boolean")


def namespaced_name(value: str) -> tuple[str, str]:
    """NAMESPACE/NAME, both valid Kubernetes names."""
    ns, sep, name = value.partition("/")
    try:
        if not sep:
            raise v.Invalid("must be NAMESPACE/NAME")
        return v.name(ns, "namespace"), v.name(name)
    except v.Invalid as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: {exc}") from None


def namespaces(value: str) -> tuple[str, ...]:
    """A comma-separated list of namespace names (empty: none), sorted."""
    try:
        return tuple(sorted({v.name(n.strip(), "namespace") for n in value.split(",") if n.strip()}))
    except v.Invalid as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: {exc}") from None


def port(value: str) -> int:
    try:
        return v.port_number(int(value))
    except (ValueError, v.Invalid):
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None


def seconds(value: str) -> float:
    """A duration in seconds: more than 0, at most an hour."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 < number <= 3600:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (more than 0, at most 3600)")
    return number


def add_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, *, help: str, **kwargs: Any) -> None:
    """Adds a flag whose default comes from its environment variable when that is set.
    `boolean=True` makes a flag that takes an optional true/false value (`--x`, `--x=false`)."""
    if kwargs.pop("boolean", False):
        kwargs.setdefault("default", False)
        kwargs.update(type=parse_bool, nargs="?", const=True)
    value = env(flag)
    if value is not None:
        kwargs["default"] = kwargs.get("type", str)(value)
    parser.add_argument(flag, help=f"{help} [env {env_name(flag)}; default: {kwargs.get('default')!r}]", **kwargs)
