#!/usr/bin/env bash
# Deletes the kind cluster made by demo/kind/up.sh (and everything in it). Idempotent.
# Environment: CLUSTER_NAME (default ingressctl).
set -euo pipefail

cluster="${CLUSTER_NAME:-ingressctl}"

if ! command -v kind >/dev/null 2>&1; then
  echo "down.sh: kind is required but not on PATH. Install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation" >&2
  exit 1
fi

if kind get clusters 2>/dev/null | grep -qx "${cluster}"; then
  kind delete cluster --name "${cluster}"
else
  echo "no kind cluster named ${cluster}: nothing to delete"
fi
