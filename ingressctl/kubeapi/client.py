"""The Kubernetes API client: loading its configuration, reading answers, and API errors.

Shared by the sources (informers) and the write-back side (leader election, status, Events), so
neither imports the other. Only API runs import this module (it pulls in kubernetes_asyncio).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ConfigError(ValueError):
    """No usable client configuration (missing or broken kubeconfig, unknown context...)."""


class ApiError(Exception):
    """A non-success answer from the API server (a metav1.Status), or an ERROR watch event."""

    def __init__(self, code: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"{code} {reason}: {message}".rstrip(": "))
        self.code = code
        self.reason = reason
        self.message = message

    @property
    def gone(self) -> bool:
        return self.code == 410

    @staticmethod
    def from_status(status: Any, code: int = 0) -> ApiError:
        if not isinstance(status, dict):
            return ApiError(code or 500, "", str(status)[:200])
        return ApiError(
            int(status.get("code") or code or 500),
            str(status.get("reason", "")),
            str(status.get("message", "")),
        )


async def read_json(response: Any) -> Any:
    """Reads an aiohttp response of a `_preload_content=False` call; raises ApiError unless 2xx."""
    async with response:
        body = await response.read()
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = body.decode(errors="replace")
        if not 200 <= response.status <= 299:
            raise ApiError.from_status(data, response.status)
        return data


async def load_client(kubeconfig: str | None, context: str | None, *, connections: int = 100) -> client.ApiClient:
    """A client from --kubeconfig, else $KUBECONFIG, else the in-cluster service account, else
    ~/.kube/config (controller-runtime's order). `connections` bounds the connection pool: every
    open watch holds one for as long as it runs."""
    configuration = client.Configuration()
    in_cluster = os.environ.get("KUBERNETES_SERVICE_HOST") and (SERVICE_ACCOUNT / "token").exists()
    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        if not path and in_cluster:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            default = Path("~/.kube/config").expanduser()
            if not path and not default.exists():
                raise ConfigError("no Kubernetes configuration: not in a pod, no --kubeconfig, no $KUBECONFIG")
            await config.load_kube_config(
                config_file=path, context=context, client_configuration=configuration, persist_config=False
            )
    except (config.ConfigException, OSError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"Kubernetes client configuration ({path or 'in-cluster'}): {err}") from err
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration=configuration)


def pod_namespace() -> str:
    if ns := os.environ.get("POD_NAMESPACE"):
        return ns
    with contextlib.suppress(OSError):
        if ns := (SERVICE_ACCOUNT / "namespace").read_text().strip():
            return ns
    return "default"


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"
