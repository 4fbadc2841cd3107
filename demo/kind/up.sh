#!/usr/bin/env bash
# ingressctl on a local kind cluster, end to end:
#   cluster (kind-config.yaml) -> image build + `kind load` -> deploy/ (via controller/) -> hostnames app
#   -> traffic rotating across the pods -> Ingress status -> scale to 5 with no nginx reload.
# Idempotent: run it again to rebuild the image and roll the controller; demo/kind/down.sh deletes it all.
#
# Environment: CLUSTER_NAME (default ingressctl), KIND_NODE_IMAGE (default: kind's own).
set -euo pipefail
shopt -s inherit_errexit

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
cluster="${CLUSTER_NAME:-ingressctl}"
context="kind-${cluster}"
repo="ghcr.io/ingressctl/ingressctl"
host="hostnames.local"
url="http://127.0.0.1/"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'up.sh: %s\n' "$*" >&2; exit 1; }
kc() { kubectl --context "${context}" "$@"; }

# --- what the demo needs ------------------------------------------------------------------------
missing=0
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    printf 'up.sh: %s is required but not on PATH. %s\n' "$1" "$2" >&2
    missing=1
  fi
}
need docker "Install Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/"
need kind "Install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "Install kubectl: https://kubernetes.io/docs/tasks/tools/"
need curl "Install curl with your package manager (apt-get install curl, brew install curl)."
[[ "${missing}" == 0 ]] || exit 1
docker info >/dev/null 2>&1 || die "docker is installed but the Docker daemon does not answer (is it running?)"

# --- cluster ------------------------------------------------------------------------------------
step "kind cluster ${cluster}"
if kind get clusters 2>/dev/null | grep -qx "${cluster}"; then
  echo "cluster ${cluster} already exists: reusing it"
else
  create=(kind create cluster --name "${cluster}" --config "${here}/kind-config.yaml" --wait 180s)
  if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
    create+=(--image "${KIND_NODE_IMAGE}")
  fi
  "${create[@]}"
fi

# --- image --------------------------------------------------------------------------------------
step "build the controller image and load it into the cluster"
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "${root}/ingressctl/__init__.py")"
[[ -n "${version}" ]] || die "cannot read __version__ from ingressctl/__init__.py"
docker build --build-arg VERSION="${version}" -t "${repo}:dev" "${root}"
# Tag by content, so a rebuilt image rolls the Deployment and an unchanged one does not.
image_id="$(docker image inspect --format '{{.Id}}' "${repo}:dev")"
image_id="${image_id#sha256:}"
tag="dev-${image_id:0:12}"
docker tag "${repo}:dev" "${repo}:${tag}"
kind load docker-image --name "${cluster}" "${repo}:${tag}"

# --- controller ---------------------------------------------------------------------------------
step "apply deploy/ (kind flavour: demo/kind/controller) and wait for the controller"
kubectl kustomize "${here}/controller" \
  | sed "s|image: ${repo}:dev\$|image: ${repo}:${tag}|" \
  | kc apply -f -
kc -n ingressctl rollout status deployment/ingressctl --timeout=300s
# Let the pods of a previous image finish terminating, so only the current ones are counted below.
replicas="$(kc -n ingressctl get deployment ingressctl -o jsonpath='{.spec.replicas}')"
for attempt in $(seq 1 90); do
  current="$(kc -n ingressctl get pods -l app.kubernetes.io/name=ingressctl -o jsonpath='{.items[*].metadata.name}')"
  read -ra names <<<"${current}"
  [[ "${#names[@]}" == "${replicas}" ]] && break
  [[ "${attempt}" == 90 ]] && die "old controller pods are still terminating after 90 s"
  sleep 1
done
kc -n ingressctl get pods -o wide

# --- the hostnames app --------------------------------------------------------------------------
step "apply the hostnames app (3 replicas) and its Ingress for ${host}"
# On a re-run this also scales back from 5 to 3 (an endpoints-only change too: no reload).
kc apply -f "${here}/hostnames.yaml"
kc -n hostnames rollout status deployment/hostnames --timeout=300s

printf 'waiting for %s to answer through ingressctl' "${host}"
for attempt in $(seq 1 90); do
  if curl -fsS -o /dev/null --max-time 2 -H "Host: ${host}" "${url}" 2>/dev/null; then
    echo " ok"
    break
  fi
  [[ "${attempt}" == 90 ]] && { echo; die "no answer from ${url} (Host: ${host}) after 90 s"; }
  printf '.'
  sleep 1
done

# Prints the answers (pod names) of $1 requests, then how many each pod got.
requests() {
  local answers=() i
  for ((i = 0; i < $1; i++)); do
    answers+=("$(curl -fsS --max-time 2 -H "Host: ${host}" "${url}")")
  done
  printf '  %s\n' "${answers[@]:0:6}"
  echo "  ... per pod over $1 requests:"
  printf '%s\n' "${answers[@]}" | sort | uniq -c | sed 's/^/  /'
}
# How many distinct pods answer $1 requests (a failed request counts for none).
distinct_pods() {
  local answers=() i
  for ((i = 0; i < $1; i++)); do
    answers+=("$(curl -fsS --max-time 2 -H "Host: ${host}" "${url}" || true)")
  done
  printf '%s\n' "${answers[@]}" | sort -u | grep -c . || true
}

step "curl -H 'Host: ${host}' ${url}: the answers rotate across the pods"
requests 30

step "the Ingress status address (written by the elected leader)"
for attempt in $(seq 1 60); do
  address="$(kc -n hostnames get ingress hostnames -o jsonpath='{.status.loadBalancer.ingress[*].ip}')"
  [[ -n "${address}" ]] && break
  [[ "${attempt}" == 60 ]] && die "the Ingress status has no address after 60 s"
  sleep 1
done
kc -n hostnames get ingress hostnames

# --- the defining behaviour: endpoints change, nginx does not reload ----------------------------
# Every controller counts its nginx reloads in a Prometheus counter on its health port (/metrics);
# read it from each controller pod through the API server's pod proxy and add them up.
reload_metric="ingressctl_nginx_reloads_total"
reloads() {
  local pods pod metrics values n total=0
  pods="$(kc -n ingressctl get pods -l app.kubernetes.io/name=ingressctl -o jsonpath='{.items[*].metadata.name}')"
  for pod in ${pods}; do
    metrics="$(kc get --raw "/api/v1/namespaces/ingressctl/pods/${pod}:10254/proxy/metrics")"
    # One line per reason label: {reason="host_added"} ...; the reloads are their sum.
    values="$(sed -n "s/^${reload_metric}{[^}]*} \([0-9.e+]*\)\$/\1/p" <<<"${metrics}")"
    [[ -n "${values}" ]] || die "no ${reload_metric} in the metrics of ${pod}"
    for n in ${values}; do
      total=$((total + ${n%.0}))
    done
  done
  echo "${total}"
}
pods_before="$(kc -n ingressctl get pods -l app.kubernetes.io/name=ingressctl -o jsonpath='{.items[*].metadata.uid}')"
before="$(reloads)"

step "kubectl scale deployment/hostnames --replicas=5"
kc -n hostnames scale deployment/hostnames --replicas=5
kc -n hostnames rollout status deployment/hostnames --timeout=300s
printf 'waiting for all 5 pods to receive traffic'
for attempt in $(seq 1 60); do
  seen="$(distinct_pods 40)"
  if [[ "${seen}" == 5 ]]; then
    echo " ok"
    break
  fi
  [[ "${attempt}" == 60 ]] && { echo; die "the 2 new pods got no traffic within 60 s"; }
  printf '.'
  sleep 1
done
requests 50

after="$(reloads)"
pods_after="$(kc -n ingressctl get pods -l app.kubernetes.io/name=ingressctl -o jsonpath='{.items[*].metadata.uid}')"
[[ "${pods_before}" == "${pods_after}" ]] || die "the controller pods changed during the demo; run it again"
step "nginx reloads (${reload_metric}, all controller pods): ${before} before scaling, ${after} after"
if [[ "${after}" != "${before}" ]]; then
  die "nginx reloaded for an endpoints-only change: that is a bug, please report it"
fi
echo "No reload: the new endpoints reached the Lua balancer through its API."
echo
echo "Try it yourself:  curl -H 'Host: ${host}' ${url}"
echo "Controller logs:  kubectl --context ${context} -n ingressctl logs -l app.kubernetes.io/name=ingressctl -f"
echo "Tear down:        ${here}/down.sh"
