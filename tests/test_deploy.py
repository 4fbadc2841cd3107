"""The deploy/ manifests and the kind demo's manifests: schema-valid for every Kubernetes version we
support, complete (kustomization), and consistent with each other and with the controller's CLI,
health server, global options and image.

Nothing here needs a cluster. `kubectl kustomize` is run when kubectl is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DEMO = ROOT / "demo"
KIND = DEMO / "kind"

# The Kubernetes versions ingressctl supports; kubernetes-validate must ship a schema for each.
SUPPORTED = ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34")
NAMESPACE = "ingressctl"

Obj = Mapping[str, Any]


# ---- loading ---------------------------------------------------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def yaml_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*") if p.suffix in (".yaml", ".yml"))


def kustomizations() -> list[Path]:
    return [p for p in yaml_files(DEPLOY, DEMO) if p.name == "kustomization.yaml"]


def patch_files() -> set[Path]:
    """Files a kustomization uses as patches: partial objects, validated through the build."""
    found = set()
    for k in kustomizations():
        for patch in load_docs(k)[0].get("patches", []):
            if "path" in patch:
                found.add((k.parent / patch["path"]).resolve())
    return found


KIND_CLUSTER_CONFIG = KIND / "kind-config.yaml"


def object_files() -> list[Path]:
    """Every YAML file under deploy/ and demo/ that holds complete Kubernetes objects."""
    skip = {*kustomizations(), *patch_files(), KIND_CLUSTER_CONFIG}
    return [p for p in yaml_files(DEPLOY, DEMO) if p.resolve() not in skip]


def kustomization_resources(kustomization: Path) -> list[Path]:
    return [(kustomization.parent / r).resolve() for r in load_docs(kustomization)[0].get("resources", [])]


def deploy_objects() -> list[dict[str, Any]]:
    """deploy/ as kustomization.yaml lists it, in order."""
    return [doc for path in kustomization_resources(DEPLOY / "kustomization.yaml") for doc in load_docs(path)]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected exactly one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def kubectl_kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    return [doc for doc in yaml.safe_load_all(_kustomize(kubectl, folder)) if doc is not None]


@functools.cache
def _kustomize(kubectl: str, folder: Path) -> str:
    return subprocess.run(
        [kubectl, "kustomize", str(folder)], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def args_of(container: Obj) -> dict[str, str]:
    """`--flag=value` / `--flag value` / `--switch` arguments after the `run` subcommand."""
    args = list(container["args"])
    assert args[0] == "run", "the container must run `ingressctl run`"
    parsed: dict[str, str] = {}
    rest = args[1:]
    while rest:
        arg = rest.pop(0)
        assert arg.startswith("--"), f"unexpected positional argument {arg!r}"
        flag, eq, value = arg.partition("=")
        if not eq and rest and not rest[0].startswith("--"):
            value = rest.pop(0)
        assert flag not in parsed, f"{flag} given twice"
        parsed[flag] = value
    return parsed


# ---- schemas ---------------------------------------------------------------------------------


def test_kubernetes_validate_ships_every_supported_version() -> None:
    shipped = {".".join(v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions()}
    assert set(SUPPORTED) <= shipped


def test_every_yaml_file_is_checked() -> None:
    # Every YAML file below deploy/ and demo/ is an object file, a kustomization, a patch used by
    # one (validated through its build), or the kind cluster config: nothing slips through.
    classified = {
        *map(Path.resolve, object_files()),
        *map(Path.resolve, kustomizations()),
        *patch_files(),
        KIND_CLUSTER_CONFIG.resolve(),
    }
    assert {p.resolve() for p in yaml_files(DEPLOY, DEMO)} == classified
    assert len(object_files()) >= len(kustomization_resources(DEPLOY / "kustomization.yaml"))


# Kinds of CRDs that Kubernetes does not ship (deploy/monitoring/: the Prometheus Operator's), checked
# against their CRD's requirements in tests/test_monitoring_deploy.py instead.
CUSTOM_API_GROUPS = ("monitoring.coreos.com/",)


def _validate(doc: Obj, where: str) -> None:
    if str(doc.get("apiVersion", "")).startswith(CUSTOM_API_GROUPS):
        return
    for version in SUPPORTED:
        try:
            kubernetes_validate.validate(dict(doc), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{where}: Kubernetes {version}: {path}: {exc.message}")


@pytest.mark.parametrize("path", object_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_manifest_validates_against_supported_kubernetes_versions(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        _validate(doc, f"{path.relative_to(ROOT)}: {doc['kind']} {doc['metadata'].get('name')}")


@pytest.mark.parametrize("folder", [k.parent for k in kustomizations()], ids=lambda p: str(p.relative_to(ROOT)))
def test_kustomize_build_validates(folder: Path) -> None:
    built = kubectl_kustomize(folder)
    assert built
    for doc in built:
        where = f"kubectl kustomize {folder.relative_to(ROOT)}: {doc['kind']} {doc['metadata']['name']}"
        _validate(doc, where)


def test_kustomization_lists_every_file_of_deploy() -> None:
    listed = kustomization_resources(DEPLOY / "kustomization.yaml")
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for path in listed:
        assert path.is_file(), f"kustomization.yaml lists {path.name}, which does not exist"
        assert path.parent == DEPLOY.resolve()
    # Files in sub-folders (deploy/monitoring/) are optional kustomizations of their own.
    on_disk = {p.resolve() for p in yaml_files(DEPLOY) if p.name != "kustomization.yaml" and p.parent == DEPLOY}
    assert set(listed) == on_disk, f"not listed: {sorted(p.name for p in on_disk - set(listed))}"


def test_kustomize_build_of_deploy_is_the_listed_objects() -> None:
    built = kubectl_kustomize(DEPLOY)

    def key(o: Obj) -> tuple[str, str, str]:
        return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])

    assert sorted(map(key, built)) == sorted(map(key, deploy_objects()))
    pod = find(built, "Deployment", "ingressctl")["spec"]["template"]["spec"]
    images = {c["image"] for c in pod["containers"]}
    tag = load_docs(DEPLOY / "kustomization.yaml")[0]["images"][0]["newTag"]
    assert images == {f"ghcr.io/ingressctl/ingressctl:{tag}"}


def test_namespaced_objects_live_in_the_ingressctl_namespace() -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"}
    for o in deploy_objects():
        if o["kind"] in cluster_scoped:
            assert "namespace" not in o["metadata"], f"{o['kind']} is cluster-scoped"
        else:
            assert o["metadata"].get("namespace") == NAMESPACE, f"{o['kind']} {o['metadata']['name']}"


def test_kind_cluster_config_publishes_the_service_node_ports() -> None:
    (config,) = load_docs(KIND_CLUSTER_CONFIG)
    assert (config["apiVersion"], config["kind"]) == ("kind.x-k8s.io/v1alpha4", "Cluster")
    mappings = {m["hostPort"]: m["containerPort"] for node in config["nodes"] for m in node["extraPortMappings"]}
    assert set(mappings) == {80, 443}
    service = find(kubectl_kustomize(KIND / "controller"), "Service", "ingressctl")
    node_ports = {p["port"]: p["nodePort"] for p in service["spec"]["ports"]}
    assert mappings == node_ports
    assert all(30000 <= p <= 32767 for p in node_ports.values())


def test_kind_demo_hostnames_app() -> None:
    docs = load_docs(KIND / "hostnames.yaml")
    deployment = find(docs, "Deployment", "hostnames")
    service = find(docs, "Service", "hostnames")
    ingress = find(docs, "Ingress", "hostnames")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (80, 9376)
    (container,) = pod["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [9376]
    assert ingress["spec"]["ingressClassName"] == find(deploy_objects(), "IngressClass")["metadata"]["name"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "hostnames.local"
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "hostnames", "port": {"number": 80}}


# ---- the controller Deployment against the CLI, the health server and the rest of deploy/ ------


@pytest.fixture
def run_parser(monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The real `ingressctl run` parser, built without INGRESSCTL_* variables (they set defaults)."""
    for key in list(os.environ):
        if key.startswith("INGRESSCTL_"):
            monkeypatch.delenv(key)
    from ingressctl.cli import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser = commands.choices["run"]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def parse(parser: argparse.ArgumentParser, args: list[str], where: str) -> argparse.Namespace:
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: `ingressctl run` rejects {args}: {errors.getvalue()}")


# Each controller Deployment check runs on deploy/ and on demo/kind; the latter is built by
# `kubectl kustomize`, and is skipped (visibly, saying so) where kubectl is not installed.
EACH_DEPLOYMENT = pytest.mark.parametrize("where", ["deploy", "demo/kind"])


def controller_deployments(where: str) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    if where == "deploy":
        yield "deploy", find(deploy_objects(), "Deployment", "ingressctl"), deploy_objects()
    else:
        kind = kubectl_kustomize(KIND / "controller")
        yield "demo/kind", find(kind, "Deployment", "ingressctl"), kind


def the_container(deployment: Obj) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def ports_by_name(container: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


@EACH_DEPLOYMENT
def test_deployment_args_are_run_flags_with_valid_values(run_parser: argparse.ArgumentParser, where: str) -> None:
    known = {o for action in run_parser._actions for o in action.option_strings}
    documented = run_parser.format_help()
    for _, deployment, objects in controller_deployments(where):
        container = the_container(deployment)
        args = args_of(container)
        for flag in args:
            # Exact names: argparse would also accept an abbreviation.
            assert flag in known, f"{where}: {flag} is not a flag of `ingressctl run`"
            assert flag in documented
        parsed = parse(run_parser, container["args"][1:], where)
        assert "--manifests" not in args, "in a cluster the controller watches the API"
        assert "--watch-ingress-without-class" not in args
        ports = ports_by_name(container)
        assert parsed.http_port == ports["http"]
        assert parsed.https_port == ports["https"]
        assert parsed.health_port == ports["health"]
        assert parsed.health_address == "", "the kubelet probes the pod IP"
        assert parsed.work_dir == args["--work-dir"]
        ingress_class = find(objects, "IngressClass")
        assert args["--controller-class"] == ingress_class["spec"]["controller"] == "ingressctl.io/controller"
        assert args["--ingress-class"] == ingress_class["metadata"]["name"] == "ingressctl"
        configmap = find(objects, "ConfigMap")
        assert args["--configmap"] == f"{configmap['metadata']['namespace']}/{configmap['metadata']['name']}"
        lease_names = {
            n
            for rule in find(objects, "Role")["rules"]
            if "leases" in rule["resources"]
            for n in rule.get("resourceNames", [])
        }
        assert lease_names == {args["--election-id"]}
        if where == "deploy":
            service = find(objects, "Service")
            assert args["--publish-service"] == f"{NAMESPACE}/{service['metadata']['name']}"
            assert "--publish-status-address" not in args
        else:
            assert args["--publish-status-address"] == "127.0.0.1"
            assert "--publish-service" not in args
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert "emptyDir" in volumes[mounts[args["--work-dir"]]], "the work dir must be an emptyDir"
        assert "emptyDir" in volumes[mounts["/tmp"]]


@EACH_DEPLOYMENT
def test_deployment_probes_hit_the_health_server(where: str) -> None:
    for _, deployment, _ in controller_deployments(where):
        container = the_container(deployment)
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert "health" in ports_by_name(container)


async def test_probe_paths_are_the_health_servers() -> None:
    # The real health server: liveness answers while nginx runs, readiness only once the first
    # configuration is live; the probes of the Deployment use exactly these paths.
    import aiohttp

    from ingressctl.health import start_health_server
    from ingressctl.metrics import Metrics
    from tests.harness import free_port

    deployment = find(deploy_objects(), "Deployment")
    container = the_container(deployment)
    liveness, readiness = container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]
    state = {"alive": True, "ready": False}
    port = free_port()
    runner = await start_health_server(
        host="127.0.0.1", port=port, alive=lambda: state["alive"], ready=lambda: state["ready"], metrics=Metrics()
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def status(path: str) -> int:
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    return response.status

            assert (await status(liveness), await status(readiness)) == (200, 503)
            state["ready"] = True
            assert (await status(liveness), await status(readiness)) == (200, 200)
            state["alive"] = False
            assert await status(liveness) == 503
    finally:
        await runner.cleanup()


def test_deployment_pod_identity_and_service_account() -> None:
    objects = deploy_objects()
    deployment = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in the_container(deployment)["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    account = find(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        binding = find(objects, kind)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
        role_kind = kind.removesuffix("Binding")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": find(objects, role_kind)["metadata"]["name"],
        }


def test_deployment_availability() -> None:
    objects = deploy_objects()
    deployment = find(objects, "Deployment")
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    anti_affinity = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti_affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()
    pdb = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] < spec["replicas"]
    resources = the_container(deployment)["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


def test_termination_grace_covers_prestop_and_nginx_drain() -> None:
    objects = deploy_objects()
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    command = the_container(find(objects, "Deployment"))["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/bin/sleep", "the preStop hook must not need a shell"
    prestop = int(command[1])
    drain = int(find(objects, "ConfigMap")["data"]["worker-shutdown-timeout"])
    assert prestop >= 5
    assert pod["terminationGracePeriodSeconds"] >= prestop + drain + 10


def test_service_fronts_the_controller() -> None:
    objects = deploy_objects()
    service = find(objects, "Service")
    deployment = find(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["spec"]["selector"].items() <= labels.items()
    ports = ports_by_name(the_container(deployment))
    assert {p["port"]: ports[p["targetPort"]] for p in service["spec"]["ports"]} == {
        80: ports["http"],
        443: ports["https"],
    }


@EACH_DEPLOYMENT
def test_controller_pod_meets_the_restricted_pod_security_standard(where: str) -> None:
    objects = deploy_objects()
    namespace = find(objects, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for _, deployment, _ in controller_deployments(where):
        pod = deployment["spec"]["template"]["spec"]
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), f"{where}: {key}"
        assert all(set(v) <= {"name", "emptyDir", "configMap", "secret", "projected"} for v in pod["volumes"])
        pod_sc = pod["securityContext"]
        assert pod_sc["runAsNonRoot"] is True
        assert pod_sc["runAsUser"] == 101 and pod_sc["runAsGroup"] == 101
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
        container = the_container(deployment)
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc.get("privileged", False) is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert all("hostPort" not in p for p in container["ports"])
        # Ports below 1024 would need NET_BIND_SERVICE; the controller listens on high ports and
        # then needs (and gets) no capability at all.
        privileged_ports = [p["containerPort"] for p in container["ports"] if p["containerPort"] < 1024]
        added = sc["capabilities"].get("add", [])
        assert added == (["NET_BIND_SERVICE"] if privileged_ports else [])


def test_configmap_holds_only_valid_global_options() -> None:
    from ingressctl.config import GlobalOptions
    from ingressctl.translate.options import apply_configmap

    objects = deploy_objects()
    data = find(objects, "ConfigMap")["data"]
    assert data
    assert all(isinstance(v, str) for v in data.values())
    options, errors = apply_configmap(GlobalOptions(), data)
    assert errors == []
    cpu_limit = the_container(find(objects, "Deployment"))["resources"]["limits"]["cpu"]
    assert str(options.worker_processes) == str(cpu_limit), "worker-processes must match the CPU limit"
