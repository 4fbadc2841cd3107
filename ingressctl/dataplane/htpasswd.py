"""Basic auth user files on disk: mode 0600, owned by nginx's worker user, in a directory only that
user may read (Nginx.prepare makes it), replaced atomically (a temporary file renamed into place).
nginx opens the file at each request (auth_basic_user_file), and a file is named by the Secret it
comes from, so rewriting it is the whole of a Secret's rotation: no reload (the plan's
htpasswd_changed). Files no Configuration uses any more are removed after the reload that stopped
using them."""

from __future__ import annotations

import os
from pathlib import Path

from ingressctl.config import StaticConfig
from ingressctl.dataplane.nginx import worker_user
from ingressctl.dataplane.paths import Paths

SUFFIX = ".htpasswd"


def write(paths: Paths, static: StaticConfig) -> None:
    """Writes the files `static` uses that are missing or hold something else."""
    wu = worker_user()
    for item in static.htpasswd:
        path = Path(paths.htpasswd(item.name))
        try:
            if path.read_bytes() == item.content:
                continue
        except FileNotFoundError:
            pass
        tmp = path.with_name(f".{item.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            if wu:
                os.fchown(f.fileno(), wu[1], wu[2])
            f.write(item.content)
        os.replace(tmp, path)


def remove_unused(paths: Paths, static: StaticConfig) -> None:
    keep = {Path(paths.htpasswd(item.name)).name for item in static.htpasswd}
    for path in Path(paths.auth).glob(f"*{SUFFIX}"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
