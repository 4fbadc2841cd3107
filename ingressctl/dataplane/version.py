"""The nginx binary's version, read once at start from `nginx -V`, and the directive forms it takes.

nginx 1.25.1 deprecated `listen ... http2` (one warning per listen line) in favour of `http2 on;`,
which older versions (Debian 12's 1.22, Ubuntu 24.04's 1.24) do not know. The renderer emits the form
the running binary wants, so the configuration is warning-free on each.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

_VERSION = re.compile(r"nginx version: [\w.-]+/(\d+)\.(\d+)\.(\d+)")


class UnknownVersion(RuntimeError):
    pass


@dataclass(frozen=True, order=True)
class NginxVersion:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def http2_directive(self) -> bool:
        """`http2 on;` (nginx >= 1.25.1) rather than the `http2` parameter of `listen`."""
        return self >= NginxVersion(1, 25, 1)


# The oldest supported version (Debian 12): its forms are what `ingressctl render` prints and what
# a renderer uses when not told otherwise.
OLDEST = NginxVersion(1, 22, 1)


def parse(output: str) -> NginxVersion:
    """The version in `nginx -V` (or `-v`) output."""
    match = _VERSION.search(output)
    if not match:
        raise UnknownVersion(f"no nginx version in {output[:200]!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return NginxVersion(major, minor, patch)


def detect(binary: str) -> NginxVersion:
    """Runs `binary -V` (a wrapper that execs nginx, e.g. in a chroot, works too)."""
    try:
        result = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnknownVersion(f"cannot run {binary} -V: {exc}") from None
    return parse(result.stderr + result.stdout)
