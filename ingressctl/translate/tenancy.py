"""Tenancy: what one namespace may ask of the data plane every namespace shares (pure).

- Caps, per Ingress: its size as JSON, its annotations' bytes, its rules, the paths of each rule.
  A capped Ingress is rejected whole (never truncated).
- Host ownership: the oldest Ingress (creationTimestamp, then UID; namespace/name where there is
  no UID, as in the manifests source) to name a host owns it for its namespace. An Ingress of
  another namespace that names it (paths, TLS, default backend: anything) is rejected, with the
  owner named; `allow_cross_namespace_hosts` turns this off for single-team clusters. A wildcard
  never takes a request for a named host: nginx prefers an exact server_name to a regex one.
- Wildcards need two labels after `*.` (`*.example.com`, not `*.com`) unless allowed by name.
- Catch-alls (a defaultBackend alone, rules without a host: they serve hosts nobody named) are
  honoured only from the namespaces an admin lists; elsewhere they are reported and ignored.
- Canary Ingresses own no host (`admit_canaries`): they are checked against the main Ingresses' owners.
- A cap on the named hosts of the whole configuration: the newest Ingresses past it are rejected.
- Ingresses whose configuration nginx itself refused (a Refusal, traced by dataplane.refusal):
  kept out until they or one of their Secrets change.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

from ingressctl.cache import Snapshot
from ingressctl.config import ObjectRef, Problem, TenancyPolicy
from ingressctl.model import INGRESS, SECRET, Obj
from ingressctl.translate import ingress as ing


def object_cap(obj: Obj, policy: TenancyPolicy) -> ing.InvalidField | None:
    """Why one Ingress object exceeds a cap, or None. Checked before it is parsed."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if isinstance(annotations, dict):
        size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
        if size > policy.max_annotation_bytes:
            return ing.InvalidField(
                "metadata.annotations",
                f"{size} bytes is more than the cap of {policy.max_annotation_bytes} (max-annotation-bytes)",
            )
    spec = obj.get("spec")
    rules = spec.get("rules") if isinstance(spec, dict) else None
    if isinstance(rules, list):
        if len(rules) > policy.max_rules_per_ingress:
            return ing.InvalidField(
                "spec.rules",
                f"{len(rules)} rules is more than the cap of {policy.max_rules_per_ingress} (max-rules-per-ingress)",
            )
        for i, rule in enumerate(rules):
            http = rule.get("http") if isinstance(rule, dict) else None
            paths = http.get("paths") if isinstance(http, dict) else None
            if isinstance(paths, list) and len(paths) > policy.max_paths_per_rule:
                return ing.InvalidField(
                    f"spec.rules[{i}].http.paths",
                    f"{len(paths)} paths is more than the cap of {policy.max_paths_per_rule} (max-paths-per-rule)",
                )
    size = len(json.dumps(obj, separators=(",", ":"), default=str).encode())
    if size > policy.max_object_bytes:
        return ing.InvalidField(
            "metadata", f"the object is {size} bytes, more than the cap of {policy.max_object_bytes} (max-object-bytes)"
        )
    return None


def wildcard_problem(host: str, policy: TenancyPolicy) -> str | None:
    """Why a rule's wildcard host is refused, or None."""
    if not host.startswith("*.") or host.count(".") >= 2 or host in policy.allowed_wildcards:
        return None
    return (
        f"wildcard {host} would take every unnamed host under {host[2:]}: a wildcard needs two labels "
        "after '*.' unless the ConfigMap's allowed-wildcard-hosts lists it"
    )


@dataclasses.dataclass(frozen=True)
class Admission:
    """The Ingresses admitted (oldest first, possibly with catch-all parts removed) and why the
    others, or parts of them, were not."""

    admitted: tuple[ing.ParsedIngress, ...]
    problems: tuple[Problem, ...]
    owners: dict[str, ObjectRef]  # named host -> the Ingress that owns it


def _without_catch_all(p: ing.ParsedIngress) -> ing.ParsedIngress:
    """The Ingress without its host-less rules (kept as empty rules: fields keep their indices)
    and, when it names no host, without its defaultBackend."""
    rules = tuple(r if r.host else ing.Rule("", ()) for r in p.rules)
    default = p.default_backend if any(r.host for r in p.rules) else None
    return dataclasses.replace(p, rules=rules, default_backend=default)


def _catch_all_fields(p: ing.ParsedIngress) -> list[str]:
    fields = [f"spec.rules[{i}]" for i, r in enumerate(p.rules) if not r.host and r.paths]
    if p.default_backend is not None and not p.hosts:
        fields.append("spec.defaultBackend")
    return fields


def admit(parsed: Iterable[ing.ParsedIngress], policy: TenancyPolicy) -> Admission:
    """Applies the ownership policy to Ingresses given oldest first."""
    admitted: list[ing.ParsedIngress] = []
    problems: list[Problem] = []
    owners: dict[str, ObjectRef] = {}
    for p in parsed:
        rejected = _rejected(p, policy, owners)
        if rejected:
            problems.append(rejected)
            continue
        catch_all = _catch_all_fields(p)
        if catch_all and p.ref.namespace not in policy.catch_all_namespaces:
            listed = ", ".join(policy.catch_all_namespaces) or "none"
            for where in catch_all:
                problems.append(
                    Problem(
                        p.ref,
                        where,
                        "serves hosts no rule names (a catch-all), which only the namespaces listed in "
                        f"catch-all-namespaces may do ({listed}); ignored",
                    )
                )
            p = _without_catch_all(p)
            if not p.hosts:
                continue
        new = [h for h in p.hosts if h not in owners]
        if len(owners) + len(new) > policy.max_hosts:
            problems.append(
                Problem(
                    p.ref,
                    "spec.rules",
                    f"its {len(new)} new hosts would pass the cap of {policy.max_hosts} hosts in the whole "
                    "configuration (max-hosts); Ingress rejected",
                )
            )
            continue
        for host in new:
            owners[host] = p.ref
        admitted.append(p)
    return Admission(tuple(admitted), tuple(problems), owners)


def admit_canaries(
    canaries: Iterable[ing.ParsedIngress], policy: TenancyPolicy, owners: dict[str, ObjectRef]
) -> Admission:
    """Canary Ingresses (given oldest first) own no host: each is checked against the owners the
    main Ingresses made (`admit`'s). One naming a host of another namespace is rejected; its rules
    without a host are kept only in the catch-all namespaces (they would reach other tenants' catch-alls)."""
    admitted: list[ing.ParsedIngress] = []
    problems: list[Problem] = []
    for p in canaries:
        rejected = _rejected(p, policy, owners)
        if rejected:
            problems.append(rejected)
            continue
        catch_all = [f for f in _catch_all_fields(p) if f != "spec.defaultBackend"]
        if catch_all and p.ref.namespace not in policy.catch_all_namespaces:
            for where in catch_all:
                problems.append(
                    Problem(
                        p.ref, where, "a canary rule without a host is honoured only in catch-all-namespaces; ignored"
                    )
                )
            p = _without_catch_all(p)
        admitted.append(p)
    return Admission(tuple(admitted), tuple(problems), owners)


def _rejected(p: ing.ParsedIngress, policy: TenancyPolicy, owners: dict[str, ObjectRef]) -> Problem | None:
    refused = _refusal(p, policy, owners)
    return Problem(p.ref, refused[0], f"{refused[1]}; Ingress rejected") if refused else None


def _refusal(p: ing.ParsedIngress, policy: TenancyPolicy, owners: dict[str, ObjectRef]) -> tuple[str, str] | None:
    """(field, reason) when the whole Ingress is refused: a wildcard too wide, a host of another namespace."""
    for i, rule in enumerate(p.rules):
        problem = wildcard_problem(rule.host, policy)
        if problem:
            return f"spec.rules[{i}].host", problem
    if policy.allow_cross_namespace_hosts:
        return None
    for i, rule in enumerate(p.rules):
        owner = owners.get(rule.host)
        if owner is not None and owner.namespace != p.ref.namespace:
            return f"spec.rules[{i}].host", _owned(rule.host, owner)
    for i, tls in enumerate(p.tls):
        for j, host in enumerate(tls.hosts):
            owner = owners.get(host)
            if owner is not None and owner.namespace != p.ref.namespace:
                return f"spec.tls[{i}].hosts[{j}]", _owned(host, owner)
    return None


def _owned(host: str, owner: ObjectRef) -> str:
    return (
        f"host {host} belongs to namespace {owner.namespace} (Ingress {owner.namespace}/{owner.name} "
        "claimed it first); other namespaces cannot add paths, TLS or backends to it"
    )


@dataclasses.dataclass(frozen=True)
class Refusal:
    """An Ingress whose configuration nginx itself refused (`nginx -t`): rejected alone until it
    or a Secret it names changes (objects are replaced, never edited, on change)."""

    ref: ObjectRef
    reason: str  # what nginx said, shortened
    objects: tuple[Obj | None, ...]  # the Ingress and its TLS Secrets as they were when refused

    @staticmethod
    def of(snapshot: Snapshot, ref: ObjectRef, reason: str) -> Refusal:
        return Refusal(ref, reason, _objects(snapshot, ref))

    def current(self, snapshot: Snapshot) -> bool:
        """Whether the refused objects are still the ones in the snapshot."""
        now = _objects(snapshot, self.ref)
        return len(now) == len(self.objects) and all(a is b for a, b in zip(now, self.objects, strict=True))


def _objects(snapshot: Snapshot, ref: ObjectRef) -> tuple[Obj | None, ...]:
    obj = snapshot.of(INGRESS).get((ref.namespace, ref.name))
    spec = obj.get("spec") if obj is not None else None
    tls = spec.get("tls") if isinstance(spec, dict) else None
    names = sorted(
        {str(t.get("secretName")) for t in tls if isinstance(t, dict) and t.get("secretName")}
        if isinstance(tls, list)
        else set()
    )
    secrets = snapshot.of(SECRET)
    return (obj, *(secrets.get((ref.namespace, n)) for n in names))
