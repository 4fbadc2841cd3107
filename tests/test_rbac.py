"""deploy/'s RBAC grants exactly the API calls the controller's code makes: no more, no less.

The calls are found in the source, not listed by hand: every kubernetes-asyncio API class the
package instantiates, and every method of those classes it names, mapped to its HTTP method and
path (read from kubernetes-asyncio's generated code) and from there to an RBAC verb and resource.
A list method handed to an informer (referenced, not called) is listed and then watched.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ingressctl"

# Resources only ever used in the controller's own namespace (the Lease of --election-id and the
# ConfigMap of --configmap, both in namespace ingressctl in deploy/): granted by the namespaced Role.
# Everything else is used across namespaces and granted by the ClusterRole.
OWN_NAMESPACE = {("coordination.k8s.io", "leases"), ("", "configmaps")}

Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


@dataclass(frozen=True)
class ApiCall:
    api_class: str
    method: str
    called: bool  # called directly (True) or handed over as a function, to an informer (False)


def python_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def api_classes_instantiated() -> set[str]:
    found = set()
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = _name(node.func)
                if name and re.fullmatch(r"\w+Api", name) and name != "ApiClient" and hasattr(client, name):
                    found.add(name)
    return found


@cache
def api_methods(api_class: str) -> frozenset[str]:
    cls = getattr(client, api_class)
    return frozenset(name for name in dir(cls) if not name.startswith("_") and hasattr(cls, f"{name}_with_http_info"))


def api_calls() -> set[ApiCall]:
    classes = api_classes_instantiated()
    calls = set()
    for path in python_files():
        tree = ast.parse(path.read_text())
        called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            owners = sorted(c for c in classes if node.attr in api_methods(c))
            assert len(owners) <= 1, f"{path.name}: {node.attr} is ambiguous between {owners}"
            if owners:
                calls.add(ApiCall(owners[0], node.attr, id(node) in called))
    return calls


def endpoint(api_class: str, method: str) -> tuple[str, str]:
    """(HTTP method, path template) of a kubernetes-asyncio API method."""
    source = inspect.getsource(getattr(getattr(client, api_class), f"{method}_with_http_info"))
    match = re.search(r"call_api\(\s*'([^']+)',\s*'([A-Z]+)'", source)
    assert match, f"{api_class}.{method}: no call_api in its source"
    return match.group(2), match.group(1)


def grants_of(call: ApiCall) -> set[Grant]:
    http_method, path = endpoint(call.api_class, call.method)
    match = re.fullmatch(r"/api/v1/(.+)|/apis/([^/]+)/[^/]+/(.+)", path)
    assert match, path
    group = match.group(2) or ""
    parts = (match.group(1) or match.group(3)).split("/")
    if parts[:2] == ["namespaces", "{namespace}"] and len(parts) > 2:
        parts = parts[2:]
    resource, item = parts[0], len(parts) > 1
    if len(parts) > 2:
        resource += "/" + parts[2]
    if http_method == "GET":
        verbs = {"get"} if item else ({"list"} if call.called else {"list", "watch"})
    else:
        verbs = {
            "POST": {"create"},
            "PUT": {"update"},
            "PATCH": {"patch"},
            "DELETE": {"delete"} if item else {"deletecollection"},
        }[http_method]
    return {(group, resource, verb) for verb in verbs}


def used() -> set[Grant]:
    return {g for call in api_calls() for g in grants_of(call)}


def rules(kind: str) -> list[dict[str, Any]]:
    with (ROOT / "deploy" / "rbac.yaml").open() as f:
        (role,) = [d for d in yaml.safe_load_all(f) if d and d["kind"] == kind]
    return list(role["rules"])


def granted(kind: str) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules(kind)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_code_talks_to_the_api_only_through_typed_api_classes() -> None:
    # What the scan below can see: kubernetes_asyncio's typed API classes. A dynamic client, raw
    # call_api or the library's own leader election would make calls the scan misses.
    for path in python_files():
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kubernetes_asyncio"):
                assert node.module == "kubernetes_asyncio", f"{path.name}: from {node.module} import"
                assert {a.name for a in node.names} <= {"client", "config"}, path.name
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("kubernetes_asyncio") for a in node.names), path.name
        assert "call_api" not in text, path.name


def test_informers_watch_what_they_list() -> None:
    # The rule above (a list method handed over is also watched) holds because the informer calls
    # the same function with watch=True after listing.
    informer = (PACKAGE / "kubeapi" / "informer.py").read_text()
    assert "watch=True" in informer


def test_the_scan_finds_the_calls_the_controller_needs() -> None:
    # Guards the scanner itself: these calls are the heart of the Kubernetes source.
    assert {
        ("networking.k8s.io", "ingresses", "watch"),
        ("discovery.k8s.io", "endpointslices", "watch"),
        ("networking.k8s.io", "ingresses/status", "update"),
        ("coordination.k8s.io", "leases", "update"),
    } <= used()


def test_cluster_role_grants_exactly_what_the_code_uses_across_namespaces() -> None:
    expected = {g for g in used() if g[:2] not in OWN_NAMESPACE}
    actual = granted("ClusterRole")
    assert actual == expected, f"missing: {sorted(expected - actual)}, extra: {sorted(actual - expected)}"


def test_role_grants_exactly_what_the_code_uses_in_its_own_namespace() -> None:
    expected = {g for g in used() if g[:2] in OWN_NAMESPACE}
    actual = granted("Role")
    assert actual == expected, f"missing: {sorted(expected - actual)}, extra: {sorted(actual - expected)}"


def test_resource_names_only_where_rbac_honours_them() -> None:
    # The Lease get/update is limited to the --election-id Lease; create cannot be (RBAC does not
    # know the name of an object before it exists), nor list/watch.
    for kind in ("ClusterRole", "Role"):
        for rule in rules(kind):
            if "resourceNames" in rule:
                assert set(rule["verbs"]) <= {"get", "update", "patch", "delete"}, rule
    named = [r for r in rules("Role") if "resourceNames" in r]
    assert [(r["resources"], r["resourceNames"]) for r in named] == [(["leases"], ["ingressctl-leader"])]
