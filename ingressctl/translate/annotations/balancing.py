"""The balancing annotations: load-balance, upstream-hash-by (and its subset), affinity and the
session-cookie-* settings. Parsers for the registry, and balancing() that turns one Ingress's values
into the Balancing of its backends (config.Balancing). The grammars here are the Lua configuration
API's too (lua/ingressctl/hashkey.lua, configuration.lua): a test compares them on generated input.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ingressctl.config import LOAD_BALANCE, Balancing, Cookie
from ingressctl.translate import validate
from ingressctl.translate.annotations.values import _text
from ingressctl.translate.validate import Invalid

MAX_HASH_BY = 256
MAX_HASH_VARIABLES = 8
MAX_COOKIE_SECONDS = 315360000  # ten years

_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z0-9_]+)\}|(?P<plain>[A-Za-z0-9_]+))")
_KNOWN = re.compile(r"remote_addr|request_uri|(?:http|cookie|arg)_[A-Za-z0-9_]+")
_TEXT = re.compile(r"[A-Za-z0-9._:/@,=~+|-]+")
_COOKIE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_COOKIE_PATH = re.compile(r"/[A-Za-z0-9._~!*+,=:@/%-]{0,255}")
_SAMESITE = {"none": "None", "lax": "Lax", "strict": "Strict"}


def hash_by(value: str) -> str:
    """upstream-hash-by: fixed text and $remote_addr, $request_uri, $http_<name>, $cookie_<name>,
    $arg_<name> (also ${name}); at least one variable."""
    _text(value, MAX_HASH_BY)
    if not value:
        raise Invalid("is empty")
    position, variables = 0, 0
    while position < len(value):
        variable = _VARIABLE.match(value, position)
        if variable:
            name = variable.group("braced") or variable.group("plain")
            if not _KNOWN.fullmatch(name):
                raise Invalid(f"${name} is not one of $remote_addr, $request_uri, $http_*, $cookie_*, $arg_*")
            variables += 1
            position = variable.end()
            continue
        stop = value.find("$", position)
        stop = len(value) if stop < 0 else stop
        if not _TEXT.fullmatch(value, position, stop):
            raise Invalid(f"{value!r} has characters other than letters, digits and ._:/@,=~+|- outside variables")
        position = stop
    if not 1 <= variables <= MAX_HASH_VARIABLES:
        raise Invalid(f"{value!r} must use 1 to {MAX_HASH_VARIABLES} variables")
    return value


def load_balance(value: str) -> str:
    if value not in LOAD_BALANCE:
        raise Invalid(f"{value!r} is not one of {', '.join(LOAD_BALANCE)}")
    return value


def affinity(value: str) -> str:
    if value != "cookie":
        raise Invalid(f"{value!r} is not cookie (the only affinity type)")
    return value


def affinity_mode(value: str) -> str:
    if value not in ("balanced", "persistent"):
        raise Invalid(f"{value!r} is not balanced or persistent")
    return value


def cookie_name(value: str) -> str:
    if not _COOKIE_NAME.fullmatch(value):
        raise Invalid(f"{_text(value)!r} is not 1 to 64 letters, digits and _.-")
    return value


def cookie_path(value: str) -> str:
    if not _COOKIE_PATH.fullmatch(value):
        raise Invalid(f"{_text(value)!r} is not a plain path (no regex) of at most 256 characters")
    return value


def cookie_domain(value: str) -> str:
    """A host name (DNS-1123, no wildcard), with an optional leading dot; lower-cased."""
    dot = "." if value.startswith(".") else ""
    name = value[len(dot) :]
    if name.startswith("*"):
        raise Invalid(f"{_text(value)!r} is not a host name (no wildcard)")
    return dot + validate.host(name)


def samesite(value: str) -> str:
    found = _SAMESITE.get(_text(value, 8).lower())
    if found is None:
        raise Invalid(f"{value!r} is not None, Lax or Strict")
    return found


# The annotations that mean something only with affinity: cookie, or with upstream-hash-by.
COOKIE_SETTINGS = {
    "affinity-mode": "persistent",
    "session-cookie-name": "name",
    "session-cookie-path": "path",
    "session-cookie-domain": "domain",
    "session-cookie-max-age": "max_age",
    "session-cookie-expires": "expires",
    "session-cookie-samesite": "samesite",
    "session-cookie-conditional-samesite-none": "conditional_samesite_none",
    "session-cookie-secure": "secure",
    "session-cookie-change-on-failure": "change_on_failure",
}
HASH_SETTINGS = ("upstream-hash-by-subset", "upstream-hash-by-subset-size")
# Every balancing annotation: a canary Ingress's own apply to its Service (as in ingress-nginx).
NAMES = frozenset({"load-balance", "upstream-hash-by", "affinity", *HASH_SETTINGS, *COOKIE_SETTINGS})


def balancing(values: Mapping[str, Any]) -> Balancing | None:
    """The Balancing one Ingress's annotations ask for; None when they set none of them (its backends
    then follow the ConfigMap's load-balance)."""
    if not any(name in values for name in ("load-balance", "upstream-hash-by", "affinity")):
        return None
    cookie = None
    if "affinity" in values:
        settings = {field: values[name] for name, field in COOKIE_SETTINGS.items() if name in values}
        settings["persistent"] = values.get("affinity-mode") == "persistent"
        cookie = Cookie(**settings)
    subset = values.get("upstream-hash-by-subset", False)
    return Balancing(
        load_balance=values.get("load-balance", LOAD_BALANCE[0]),
        hash_by=values.get("upstream-hash-by", ""),
        subset_size=values.get("upstream-hash-by-subset-size", 3) if subset else 0,
        cookie=cookie,
    )


def needs(values: Mapping[str, Any]) -> dict[str, str]:
    """Annotation -> the one it has no effect without."""
    out = {name: "affinity" for name in COOKIE_SETTINGS if name in values}
    out.update({name: "upstream-hash-by" for name in HASH_SETTINGS if name in values})
    return out
