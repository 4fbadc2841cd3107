"""`ingressctl check`: the migration report for Ingresses written for ingress-nginx.

Reads every Ingress (from --manifests DIR, or from a cluster with the usual kubeconfig flags), whatever
its class, and says per Ingress: its class, whether ingressctl would serve it as things are, each
annotation under our two prefixes (supported, supported with a difference, ignored, refused, invalid)
and every validation problem translate finds. It shares the annotation registry and translate itself
(every Ingress is translated as if it were ours): there is no second parser. Exit 0 when every Ingress
would behave the same under ingressctl, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ingressctl.cache import Cache
from ingressctl.certs import self_signed
from ingressctl.config import ObjectRef
from ingressctl.model import INGRESS, INGRESS_CLASS, Event, EventType, Obj
from ingressctl.sources.manifests import ManifestsSource
from ingressctl.translate import Settings, translate
from ingressctl.translate.annotations import IGNORED_PREFIX, annotations_of, field_of, split
from ingressctl.translate.annotations.registry import BY_NAME, is_snippet, snippet_reason
from ingressctl.translate.classes import LEGACY_CLASS_ANNOTATION, is_ours, our_classes
from ingressctl.translate.ingress import ingress_ref
from ingressctl.translate.validate import Invalid

SUPPORTED = "supported"
DIFFERENT = "supported with a difference"
IGNORED = "ignored"
REFUSED = "refused"
INVALID = "invalid"
STATUSES = (SUPPORTED, DIFFERENT, IGNORED, REFUSED, INVALID)


@dataclass(frozen=True)
class Finding:
    key: str
    status: str
    detail: str = ""


@dataclass(frozen=True)
class Report:
    namespace: str
    name: str
    ingress_class: str  # "" = none
    served: bool
    annotations: tuple[Finding, ...]
    problems: tuple[str, ...]  # make the Ingress behave differently (rejected, conflicts ...)
    notes: tuple[str, ...] = field(default=())  # true for any controller (a missing Service or Secret)

    @property
    def same(self) -> bool:
        return not self.problems and all(f.status == SUPPORTED for f in self.annotations)


def classify(annotations: Mapping[str, Any], *, shared: bool = True) -> tuple[Finding, ...]:
    """One finding per annotation under our prefixes, with the registry's parsers. `shared`: another
    Ingress serves one of its hosts (some differences only show then)."""
    out = []
    for key in sorted(annotations, key=str):
        parts = split(key)
        if parts is None:
            continue
        name = parts[1]
        if is_snippet(name):
            out.append(Finding(key, REFUSED, snippet_reason(name)))
            continue
        entry = BY_NAME.get(name)
        if entry is None:
            out.append(Finding(key, IGNORED, "not supported by ingressctl"))
            continue
        raw = annotations[key]
        try:
            if not isinstance(raw, str):
                raise Invalid("must be a string")
            entry.parse(raw)
        except Invalid as exc:
            out.append(Finding(key, INVALID, str(exc)))
            continue
        if entry.difference and (shared or not entry.shared_only):
            out.append(Finding(key, DIFFERENT, entry.difference))
        else:
            out.append(Finding(key, SUPPORTED))
    return tuple(out)


def class_of(obj: Obj) -> str:
    spec = obj.get("spec")
    name = spec.get("ingressClassName") if isinstance(spec, Mapping) else None
    if isinstance(name, str) and name:
        return name
    legacy = annotations_of(obj).get(LEGACY_CLASS_ANNOTATION)
    return f"{legacy} (legacy annotation)" if isinstance(legacy, str) and legacy else ""


def _as_ours(obj: Obj) -> Obj:
    """The Ingress without its class: translated with --watch-ingress-without-class, it is ours."""
    out = copy.deepcopy(dict(obj))
    if isinstance(out.get("spec"), dict):
        out["spec"].pop("ingressClassName", None)
    meta = out.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        meta["annotations"].pop(LEGACY_CLASS_ANNOTATION, None)
    return out


def _with_rejections(findings: tuple[Finding, ...], problems: list[tuple[str, str]]) -> tuple[Finding, ...]:
    """An annotation whose value passes alone but rejects the Ingress in translate (e.g. a Secret of
    another namespace) is invalid, with translate's reason."""
    rejected = {f: r.removesuffix("; Ingress rejected") for f, r in problems if r.endswith("Ingress rejected")}
    return tuple(
        Finding(f.key, INVALID, rejected[field_of(f.key)])
        if field_of(f.key) in rejected and f.status not in (INVALID, REFUSED)
        else f
        for f in findings
    )


def _hosts(obj: Obj) -> set[str]:
    spec = obj.get("spec")
    rules = spec.get("rules") if isinstance(spec, Mapping) else None
    return {str(r["host"]).lower() for r in rules or [] if isinstance(r, Mapping) and r.get("host")}


def _note(reason: str, where: str) -> bool:
    """Problems every controller has alike (a missing Service or Secret) are notes: a missing auth-secret
    denies the paths in ingress-nginx too (503 there; the Ingress is rejected here)."""
    return (
        "(answers 503)" in reason
        or (where.startswith("spec.tls") and "default certificate" in reason)
        or (where.endswith('auth-secret"]') and reason.endswith("not found; Ingress rejected"))
    )


def check(objects: Sequence[Obj], settings: Settings) -> list[Report]:
    """A report per Ingress of `objects` (any kinds, each with its `kind`)."""
    ingresses = [o for o in objects if o.get("kind") == INGRESS]
    classes = {
        ("", str((o.get("metadata") or {}).get("name") or "")): o for o in objects if o.get("kind") == INGRESS_CLASS
    }
    ours = our_classes(classes, settings.controller_class)
    cache = Cache()
    cache.load(
        Event(EventType.ADDED, str(o.get("kind") or ""), _as_ours(o) if o.get("kind") == INGRESS else o)
        for o in objects
    )
    forced = Settings(
        fallback_certificate=settings.fallback_certificate,
        controller_class=settings.controller_class,
        ingress_class=settings.ingress_class,
        watch_without_class=True,
    )
    config = translate(cache.snapshot(), forced)
    problems: dict[ObjectRef, list[tuple[str, str]]] = {}
    for p in config.problems:
        problems.setdefault(p.ref, []).append((p.field, p.reason))
    hosts_of = {id(o): _hosts(o) for o in ingresses}
    sharing = Counter(h for hosts in hosts_of.values() for h in hosts)
    reports = []
    for obj in ingresses:
        ref = ingress_ref(obj)
        found = problems.get(ref, [])
        annotation_fields = {field_of(k) for k in annotations_of(obj)}
        # Annotation findings say it already; the translate problem names the first rejecting one.
        # Warnings about annotations that are read (no effect alone, both prefixes differ) are notes.
        kept = [(f, r) for f, r in found if f not in annotation_fields and not r.startswith(IGNORED_PREFIX)]
        warned = [f"{f}: {r}" for f, r in found if f in annotation_fields and not r.endswith("Ingress rejected")]
        # A rejection every controller makes alike (no auth-secret) is a note, not an invalid annotation.
        missing = [
            (f, r) for f, r in found if f in annotation_fields and r.endswith("Ingress rejected") and _note(r, f)
        ]
        warned += [f"{f}: {r}" for f, r in missing]
        served = is_ours(
            obj,
            classes=ours,
            ingress_class=settings.ingress_class,
            watch_without_class=settings.watch_without_class,
        )
        reports.append(
            Report(
                namespace=ref.namespace,
                name=ref.name,
                ingress_class=class_of(obj),
                served=served,
                annotations=_with_rejections(
                    classify(annotations_of(obj), shared=any(sharing[h] > 1 for h in hosts_of[id(obj)])),
                    [x for x in found if x not in missing],
                ),
                problems=tuple(f"{f}: {r}" for f, r in kept if not _note(r, f)),
                notes=tuple(f"{f}: {r}" for f, r in kept if _note(r, f)) + tuple(warned),
            )
        )
    reports.sort(key=lambda r: (r.namespace, r.name))
    return reports


def summary(reports: Sequence[Report]) -> dict[str, dict[str, int]]:
    """Counts per annotation name (either prefix) and status, across the input."""
    counts: Counter[tuple[str, str]] = Counter()
    for report in reports:
        for finding in report.annotations:
            parts = split(finding.key)
            counts[(parts[1] if parts else finding.key, finding.status)] += 1
    out: dict[str, dict[str, int]] = {}
    for (name, status), n in sorted(counts.items()):
        out.setdefault(name, {})[status] = n
    return out


def text(reports: Sequence[Report]) -> str:
    lines = []
    for r in reports:
        verdict = "same" if r.same else "DIFFERS"
        served = "served" if r.served else "not served (class is not ingressctl's)"
        lines.append(f"Ingress {r.namespace}/{r.name}: class {r.ingress_class or '(none)'}, {served}; {verdict}")
        for f in r.annotations:
            lines.append(f"  {f.key}: {f.status}" + (f": {f.detail}" if f.detail else ""))
        lines += [f"  problem: {p}" for p in r.problems]
        lines += [f"  note: {n}" for n in r.notes]
    table = summary(reports)
    if table:
        width = max(len(n) for n in table)
        lines += ["", f"{'annotation'.ljust(width)}  " + "  ".join(s.replace(" ", "-") for s in STATUSES)]
        for name, counts in table.items():
            cells = "  ".join(str(counts.get(s, 0)).rjust(len(s)) for s in STATUSES)
            lines.append(f"{name.ljust(width)}  {cells}")
    same = sum(r.same for r in reports)
    lines += ["", f"{len(reports)} Ingresses: {same} behave the same, {len(reports) - same} differ"]
    return "\n".join(lines) + "\n"


def as_json(reports: Sequence[Report]) -> str:
    doc = {
        "same": all(r.same for r in reports),
        "ingresses": [{**asdict(r), "same": r.same} for r in reports],
        "summary": summary(reports),
    }
    return json.dumps(doc, indent=2) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifests", help="read Ingresses from this folder of YAML manifests")
    parser.add_argument("--kubeconfig", help="read from a cluster: kubeconfig file (default: $KUBECONFIG, ...)")
    parser.add_argument("--context", help="kubeconfig context (default: its current context)")
    parser.add_argument("--namespace", action="append", help="only Ingresses of this namespace (repeatable)")
    parser.add_argument("--controller-class", default="ingressctl.io/controller")
    parser.add_argument("--ingress-class", default="ingressctl")
    parser.add_argument("--watch-ingress-without-class", action="store_true")
    parser.add_argument("--output", choices=["text", "json"], default="text")


async def _from_cluster(args: argparse.Namespace) -> list[Obj]:
    from kubernetes_asyncio import client

    from ingressctl.kubeapi.client import load_client, read_json

    api = await load_client(args.kubeconfig, args.context, connections=4)
    try:
        out: list[Obj] = []
        networking = client.NetworkingV1Api(api)
        core = client.CoreV1Api(api)
        calls: list[tuple[str, str, Any]] = []
        for ns in args.namespace or [None]:
            if ns:
                calls.append(
                    ("Ingress", "networking.k8s.io/v1", networking.list_namespaced_ingress(ns, _preload_content=False))
                )
                calls.append(("Service", "v1", core.list_namespaced_service(ns, _preload_content=False)))
            else:
                calls.append(
                    (
                        "Ingress",
                        "networking.k8s.io/v1",
                        networking.list_ingress_for_all_namespaces(_preload_content=False),
                    )
                )
                calls.append(("Service", "v1", core.list_service_for_all_namespaces(_preload_content=False)))
        calls.append(("IngressClass", "networking.k8s.io/v1", networking.list_ingress_class(_preload_content=False)))
        for kind, version, call in calls:
            data = await read_json(await call)
            out += [{"apiVersion": version, "kind": kind, **item} for item in data.get("items") or []]
        return out
    finally:
        await api.close()


def run(args: argparse.Namespace) -> int:
    if args.manifests:
        source = ManifestsSource(args.manifests)
        events = source.load_once()
        objects: list[Obj] = [{**o, "kind": e.kind} for e in events for o in e.objects]
        for _, error in sorted(source.errors.items()):
            print(f"error: {error}", file=sys.stderr)
    else:
        try:
            objects = asyncio.run(_from_cluster(args))
        except ValueError as exc:  # no usable client configuration
            print(f"ingressctl check: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # the API refused or is unreachable: say so, no traceback
            print(f"ingressctl check: reading the cluster failed: {exc}", file=sys.stderr)
            return 2
    settings = Settings(
        fallback_certificate=self_signed(),
        controller_class=args.controller_class,
        ingress_class=args.ingress_class,
        watch_without_class=args.watch_ingress_without_class,
    )
    reports = check(objects, settings)
    print(as_json(reports) if args.output == "json" else text(reports), end="")
    return 0 if all(r.same for r in reports) else 1
