"""The Kubernetes API source's command-line flags, apart from the source itself: the cli adds them
to every run, and only imports ingressctl.sources.kube (and kubernetes_asyncio, ~57 MB of the
controller's memory) when the API source is used."""

from __future__ import annotations

import argparse
from typing import Any

from ingressctl import flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the Kubernetes API flags; every one defaults to its INGRESSCTL_<FLAG> variable."""
    group = parser.add_argument_group("Kubernetes API (used when --manifests is not given)")

    def flag(name: str, **kw: Any) -> None:
        flags.add_flag(group, f"--{name}", **kw)

    flag("kubeconfig", help="kubeconfig file (default: in-cluster config in a pod, else $KUBECONFIG)")
    flag("context", help="kubeconfig context (default: its current context)")
    # Repeatable: the environment variable is a comma list, used when the flag is not given.
    group.add_argument(
        "--watch-namespace",
        action="append",
        default=None,
        metavar="NS",
        help="only watch namespaced objects in NS (repeatable; default: all namespaces) "
        "[env INGRESSCTL_WATCH_NAMESPACE, comma list]",
    )
    env_ns = flags.env("watch-namespace") or ""
    parser.set_defaults(watch_namespace_env=[ns.strip() for ns in env_ns.split(",") if ns.strip()])
    flag("election-id", default="ingressctl-leader", help="name of the leader election Lease, in the pod's namespace")
    flag("lease-duration", type=float, default=15.0, metavar="SECONDS", help="a Lease not renewed this long expires")
    flag(
        "lease-renew-deadline",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a leader that cannot renew for this long stops leading",
    )
    flag(
        "lease-retry-period", type=float, default=2.0, metavar="SECONDS", help="how often the Lease is renewed or tried"
    )
    flag(
        "publish-service",
        type=flags.namespaced_name,
        metavar="NS/NAME",
        help="the LoadBalancer Service whose addresses go into Ingress status",
    )
    flag("publish-status-address", metavar="A,B", help="IPs or hostnames to put into Ingress status instead")
    flag(
        "update-status",
        type=flags.parse_bool,
        default=True,
        nargs="?",
        const=True,
        metavar="BOOL",
        help="write Ingress status (the leader only; default: true)",
    )


def watch_namespaces(args: argparse.Namespace) -> tuple[str, ...]:
    given = args.watch_namespace or getattr(args, "watch_namespace_env", [])
    return tuple(sorted(set(given)))
