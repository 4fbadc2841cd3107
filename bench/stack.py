"""The nginx stacks `make bench` measures side by side: the host's Debian packages, and the image's
(build/rootfs from `make rootfs`: Debian 13's nginx and Lua module) through a wrapper that
`--nginx-binary` and the static nginx of the sections run instead of nginx.

The wrapper runs the rootfs's nginx in a private mount namespace of its own (unshare without --fork,
then `exec chroot`: the PID stays nginx's, so stopping by PID and /proc measurements still work),
with the host's /tmp (work dirs, sockets, static configurations) and this tree's lua/ (at /app/lua,
where the image has it) mounted in. The controller itself runs on the host either way: the stacks
differ in nginx and its modules, which is what the sections measure.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from bench.common import Row

REPO = Path(__file__).resolve().parent.parent
ROOTFS = REPO / "build" / "rootfs"
IMAGE_LUA = "/app/lua"  # INGRESSCTL_LUA_DIR in the Dockerfile

# Targets on the image stack (issue 10).
TARGET_NGINX_T_S = 1.5
TARGET_CHANGE_S = 2.5
TARGET_PSS_MB = 1200
TARGET_CPU_RATIO = 1.05
TARGET_OVER_FLOOR = 1.03
TARGET_METRICS_RATIO = 1.05  # issue 14: per-route metrics on / off, CPU per request

WRAPPER = """#!/bin/sh
# nginx of {rootfs} (the image's filesystem), with the host's /tmp and {lua} at /app/lua.
exec unshare --mount --propagation private -- /bin/sh -eu -c '
root="$1"; lua="$2"; shift 2
mount --rbind /tmp "$root/tmp"
mount --bind "$lua" "$root{image_lua}"
mount -t proc proc "$root/proc"
exec chroot "$root" /usr/sbin/nginx "$@"
' nginx-in-rootfs "{rootfs}" "{lua}" "$@"
"""


def available() -> str | None:
    """Why the image stack cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (mount namespace, chroot)"
    if not (ROOTFS / "usr" / "sbin" / "nginx").exists():
        return f"no {ROOTFS} (make rootfs)"
    return None


def image_environment(directory: Path) -> dict[str, str]:
    """Writes the wrapper into `directory`; the environment that makes the bench, and every
    controller it starts (INGRESSCTL_<FLAG> is the flag's default), use the image's nginx."""
    wrapper = directory / "nginx-in-rootfs"
    wrapper.write_text(WRAPPER.format(rootfs=ROOTFS, lua=REPO / "lua", image_lua=IMAGE_LUA))
    wrapper.chmod(0o755)
    return {"INGRESSCTL_NGINX_BINARY": str(wrapper), "INGRESSCTL_LUA_DIR": IMAGE_LUA}


def target_rows(sections: dict[str, Any]) -> list[Row]:
    """The image stack's targets, from its raw figures (sections 1 and 3)."""
    rows: list[Row] = []
    section = "targets"
    size = (sections.get("3") or {}).get("sizes", {}).get("10000")
    if size is None:
        size = {}  # not among the sizes run (e.g. --quick)
    elif "nginx_t_s" not in size:
        why = size.get("skipped") or size.get("error") or "no figures"
        rows.append(Row(section, "10k Ingresses", f"not measured: {why}"[:160], ok=False))
    if "nginx_t_s" in size:
        t = size["nginx_t_s"]
        rows.append(
            Row(section, "10k Ingresses: nginx -t", f"{t:.2f} s", f"<= {TARGET_NGINX_T_S} s", t <= TARGET_NGINX_T_S)
        )
    if "change_to_serving_s" in size:
        change = statistics.median(size["change_to_serving_s"])
        rows.append(
            Row(section, "10k: host change -> serving (median)", f"{change:.2f} s", f"<= {TARGET_CHANGE_S} s",
                change <= TARGET_CHANGE_S)
        )  # fmt: skip
        pss = size["nginx_pss_mb"]
        rows.append(
            Row(section, "10k: nginx PSS after 3 reloads", f"{pss:.0f} MB", f"<= {TARGET_PSS_MB} MB",
                pss <= TARGET_PSS_MB)
        )  # fmt: skip
    for mode, s in ((sections.get("1") or {}).get("modes") or {}).items():
        ratio = s["cpu_ratio_paired_median"]
        over_floor = s["ingressctl_cpu_us"] / s["floor_cpu_us"]
        rows += [
            Row(section, f"data plane ({mode}): CPU/request vs static upstream", f"{ratio:.3f}x",
                f"<= {TARGET_CPU_RATIO}x", ratio <= TARGET_CPU_RATIO),
            Row(section, f"data plane ({mode}): our balancer vs the floor variant (CPU medians)",
                f"{over_floor:.3f}x", f"<= {TARGET_OVER_FLOOR}x", over_floor <= TARGET_OVER_FLOOR),
        ]  # fmt: skip
        if "metrics_ratio_paired_median" in s:  # issue 14: per-route metrics on / off
            metrics = s["metrics_ratio_paired_median"]
            rows.append(
                Row(section, f"data plane ({mode}): CPU/request with metrics on / off", f"{metrics:.3f}x",
                    f"<= {TARGET_METRICS_RATIO}x", metrics <= TARGET_METRICS_RATIO)
            )  # fmt: skip
    return rows
