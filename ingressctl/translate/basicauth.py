"""Basic authentication's users: an auth Secret (auth-file or auth-map) read into an htpasswd file of
validated lines only.

A line passes when its user name is a plain name and its hash is one of the schemes measured to work
with nginx's auth_basic on this platform (nginx's own {SHA}, {SSHA}, $apr1$; glibc/libxcrypt's $1$,
$5$, $6$ and bcrypt), with bounded work factors: crypt() runs in the nginx worker for every request,
so an unbounded bcrypt cost or sha-crypt rounds would let one Secret stall a worker. Plain-text
passwords ({PLAIN}) and DES crypt (which ignores everything after the 8th character) are refused.
A bad line is skipped and reported by its line number, never echoed (it may hold a password). Pure.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ingressctl.config import BasicAuth, Htpasswd

MAX_USERS = 1000
MAX_BYTES = 262144  # the decoded auth file or map

_USER = re.compile(r"[A-Za-z0-9._@+-]{1,128}")
_B64 = r"[./0-9A-Za-z]"
# Scheme name (as README and the reasons say it) and the hash's anchored form.
SCHEMES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("{SHA}", re.compile(r"\{SHA\}[A-Za-z0-9+/]{27}=")),
    ("{SSHA}", re.compile(r"\{SSHA\}[A-Za-z0-9+/]{28,100}={0,2}")),
    ("$apr1$", re.compile(rf"\$apr1\${_B64}{{1,8}}\${_B64}{{22}}")),
    ("$1$", re.compile(rf"\$1\${_B64}{{1,8}}\${_B64}{{22}}")),
    ("$5$", re.compile(rf"\$5\$(?:rounds=(?P<rounds>[0-9]{{4,6}})\$)?{_B64}{{1,16}}\${_B64}{{43}}")),
    ("$6$", re.compile(rf"\$6\$(?:rounds=(?P<rounds>[0-9]{{4,6}})\$)?{_B64}{{1,16}}\${_B64}{{86}}")),
    ("$2y$", re.compile(rf"\$2[aby]\$(?P<cost>[0-9]{{2}})\${_B64}{{53}}")),
)
MAX_ROUNDS = 100000  # sha-crypt rounds= (default 5000)
# 4-10: each step doubles the work; measured here one check costs 1.4 ms at 5 (htpasswd -B's default),
# 50 ms at 10 (Go's default) and 250 ms at 12 (Python bcrypt's default), a worker stalled that long for
# every request to the host, whatever other hosts wait. sha-crypt at 100000 rounds: 31 ms.
BCRYPT_COSTS = range(4, 11)
SCHEME_NAMES = ", ".join(name if name != "$2y$" else "$2a$/$2b$/$2y$ (bcrypt)" for name, _ in SCHEMES)


class BadAuthSecret(ValueError):
    """The Secret gives no usable user: the Ingress is rejected (never served without authentication)."""


@dataclass(frozen=True)
class Users:
    file: Htpasswd
    skipped: tuple[str, ...]  # one reason per skipped line or key


def check_hash(value: str) -> str | None:
    """Why a password hash is not accepted, or None if it is."""
    for _, pattern in SCHEMES:
        m = pattern.fullmatch(value)
        if m is None:
            continue
        groups = m.groupdict()
        if groups.get("rounds") and not 1000 <= int(groups["rounds"]) <= MAX_ROUNDS:
            return f"sha-crypt rounds must be 1000-{MAX_ROUNDS}"
        if groups.get("cost") and int(groups["cost"]) not in BCRYPT_COSTS:
            return f"bcrypt cost must be {BCRYPT_COSTS.start}-{BCRYPT_COSTS.stop - 1}"
        if value.startswith("{SSHA}") and len(_b64(value[6:])) <= 20:
            return "{SSHA} hash has no salt"
        return None
    if value.startswith("{PLAIN}"):
        return "plain-text passwords ({PLAIN}) are refused"
    if re.fullmatch(rf"_?{_B64}{{13,19}}", value):
        return "DES crypt is refused (it ignores all but the first 8 characters of a password)"
    return f"not a password hash of an accepted scheme ({SCHEME_NAMES})"


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def check_user(name: str) -> str | None:
    if not _USER.fullmatch(name):
        return "user name must be 1-128 letters, digits and . _ @ + -"
    return None


def _decode(secret: Mapping[str, object], key: str) -> str:
    data = secret.get("data")
    raw = data.get(key) if isinstance(data, Mapping) else None
    if not isinstance(raw, str):
        raise BadAuthSecret(f"has no key {key!r}")
    if len(raw) > MAX_BYTES * 4 // 3 + 4:
        raise BadAuthSecret(f"key {key!r} is over {MAX_BYTES} bytes")
    try:
        return base64.b64decode(raw, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise BadAuthSecret(f"key {key!r} is not base64 of ASCII text") from None


def _pairs_of_file(text: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(where, user, hash) of an htpasswd file's lines; blank lines and # comments are skipped."""
    out, bad = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, rest = line.partition(":")
        if not sep:
            bad.append(f"auth line {number}: not user:hash")
            continue
        hashed = rest.partition(":")[0]  # nginx's format allows user:hash:comment; the comment is dropped
        out.append((f"auth line {number}", user, hashed))
    return out, bad


def _pairs_of_map(secret: Mapping[str, object]) -> tuple[list[tuple[str, str, str]], list[str]]:
    data = secret.get("data")
    out, bad = [], []
    for key in sorted(data if isinstance(data, Mapping) else {}, key=str):
        try:
            hashed = _decode(secret, key).strip()
        except BadAuthSecret as exc:
            bad.append(f"key {str(key)[:128]!r}: {exc}")
            continue
        out.append((f"key {str(key)[:128]!r}", str(key), hashed))
    return out, bad


def users(secret: Mapping[str, object], auth: BasicAuth, *, namespace: str) -> Users:
    """The htpasswd file of the Secret's valid users (the Secret `auth.secret` of `namespace`);
    raises BadAuthSecret when none is valid."""
    if auth.secret_type == "auth-map":
        pairs, skipped = _pairs_of_map(secret)
    else:
        pairs, skipped = _pairs_of_file(_decode(secret, "auth"))
    lines: dict[str, str] = {}
    for where, user, hashed in pairs:
        reason = check_user(user) or check_hash(hashed)
        if reason is None and user in lines:
            reason = f"user {user} is listed twice (the first is kept)"
        if reason is not None:
            skipped.append(f"{where}: {reason}")
            continue
        if len(lines) >= MAX_USERS:
            skipped.append(f"{where}: more than {MAX_USERS} users")
            continue
        lines[user] = f"{user}:{hashed}"
    if not lines:
        detail = f" ({'; '.join(skipped[:3])})" if skipped else ""
        raise BadAuthSecret(f"has no valid user{detail}")
    source = f"{namespace}/{auth.secret}:{auth.secret_type}"
    return Users(Htpasswd.of(tuple(lines.values()), source), tuple(skipped))
