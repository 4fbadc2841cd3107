"""Table test for the change plan (ingressctl.plan): one row per kind of change, from a running
world to the plan and its reload reasons. Each row goes through the controller's own path: events
into the real Cache (which drops no-op updates and says what changed), the Translator with its memo
(a full translation, or the endpoint-only one when only endpoints changed), then make_plan against
the running Configuration.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ingressctl.cache import Cache
from ingressctl.config import Certificate, Configuration, Server
from ingressctl.model import Event, EventType
from ingressctl.plan import SERVER_FIELDS, Action, Plan, Reason, make_plan
from ingressctl.translate import Settings, Translator
from tests.certs import make_cert
from tests.harness import backend, endpoint_slice, ingress, ingress_class, opaque_secret, rule, service

Obj = dict[str, Any]
SETTINGS = Settings(fallback_certificate=Certificate.from_pem(*make_cert("fallback")), configmap=("ingressctl", "cfg"))


def tls_secret(name: str, host: str) -> Obj:
    crt, key = make_cert(host)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()},
    }


def configmap(**data: str) -> Obj:
    meta = {"name": "cfg", "namespace": "ingressctl"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def ing_a(*paths: tuple[str, str, Obj], **kwargs: Any) -> Obj:
    return ingress("a", rules=[rule("a.example.com", *(paths or (("/", "Prefix", backend("app")),)))], **kwargs)


ING_B = ingress(
    "b",
    rules=[rule("b.example.com", ("/", "Prefix", backend("other")))],
    tls=[{"hosts": ["b.example.com"], "secretName": "b-tls"}],
)

# Basic auth (auth-secret: the Opaque Secret "users"), proxying to `other` like Ingress b.
APR1 = "$apr1$9r4Hk8Zr$jXDdJMuzQYs8.v8IycIyj1"
ING_GUARDED = ingress(
    "g",
    rules=[rule("g.example.com", ("/", "Prefix", backend("other")))],
    annotations={"nginx.ingress.kubernetes.io/auth-type": "basic", "nginx.ingress.kubernetes.io/auth-secret": "users"},
)

WORLD: list[Obj] = [
    ingress_class(),
    service("app"),
    service("other"),
    endpoint_slice("app", ["10.0.0.1", "10.0.0.2"]),
    endpoint_slice("other", ["10.0.1.1"]),
    tls_secret("b-tls", "b.example.com"),
    configmap(**{"proxy-read-timeout": "60"}),
    ing_a(),
    ING_B,
    opaque_secret("users", {"auth": f"ann:{APR1}\n"}),
    ING_GUARDED,
    # A main Ingress with a canary (issue 13): policy changes are Lua updates.
    service("stable"),
    endpoint_slice("stable", ["10.0.3.1"]),
    service("next"),
    endpoint_slice("next", ["10.0.2.1"]),
    ingress("m", rules=[rule("m.example.com", ("/", "Prefix", backend("stable")))]),
]


def canary_m(**annotations: str) -> Obj:
    notes = {"nginx.ingress.kubernetes.io/" + k: v for k, v in {"canary": "true", **annotations}.items()}
    return ingress("m-canary", rules=[rule("m.example.com", ("/", "Prefix", backend("next")))], annotations=notes)


WORLD.append(canary_m(**{"canary-weight": "10"}))


def added(obj: Obj) -> Event:
    return Event(EventType.ADDED, obj["kind"], obj)


def modified(obj: Obj) -> Event:
    return Event(EventType.MODIFIED, obj["kind"], obj)


def deleted(obj: Obj) -> Event:
    return Event(EventType.DELETED, obj["kind"], obj)


def bumped(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out["metadata"]["resourceVersion"] = "999"
    return out


def other_class_ingress() -> Obj:
    return ingress("theirs", rules=[rule("theirs.example.com", ("/", "Prefix", backend("app")))], class_name="other")


@dataclass(frozen=True)
class Row:
    events: Callable[[], list[Event]]
    action: Action
    reasons: tuple[Reason, ...] = ()
    # Each change's text, as the reload log line names it ("reason: subject (origins)").
    changes: tuple[str, ...] = ()
    backends_changed: bool = False
    certificates_changed: bool = False  # what the Lua store serves by SNI
    htpasswd_changed: bool = False  # basic auth user files (rewritten in place)


ROWS: dict[str, Row] = {
    "endpoint-scale-up": Row(
        lambda: [modified(endpoint_slice("app", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]))],
        Action.LUA,
        backends_changed=True,
    ),
    "endpoint-readiness-flip": Row(
        lambda: [modified(endpoint_slice("app", ["10.0.0.1", "10.0.0.2"], not_ready=("10.0.0.2",)))],
        Action.LUA,
        backends_changed=True,
    ),
    "endpoint-slice-removed": Row(
        lambda: [deleted(endpoint_slice("other", []))],
        Action.LUA,
        backends_changed=True,
    ),
    "service-removed-answers-503-without-reload": Row(
        lambda: [deleted(service("app"))],
        Action.LUA,
        backends_changed=True,
    ),
    # Balancing settings travel with the backend: no reload. Only ewma adds the log phase to its routes.
    "affinity-annotation-added": Row(
        lambda: [modified(ing_a(annotations={"nginx.ingress.kubernetes.io/affinity": "cookie"}))],
        Action.LUA,
        backends_changed=True,
    ),
    "upstream-hash-by-changed": Row(
        lambda: [modified(ing_a(annotations={"nginx.ingress.kubernetes.io/upstream-hash-by": "$request_uri"}))],
        Action.LUA,
        backends_changed=True,
    ),
    "load-balance-ewma-adds-its-log-phase": Row(
        lambda: [modified(ing_a(annotations={"nginx.ingress.kubernetes.io/load-balance": "ewma"}))],
        Action.RELOAD,
        (Reason.ANNOTATIONS_CHANGED,),
        ("annotations_changed: host a.example.com (Ingress default/a)",),
        backends_changed=True,
    ),
    "no-op-resource-version-bump": Row(lambda: [modified(bumped(ing_a()))], Action.NOTHING),
    "ingress-of-another-class-added": Row(lambda: [added(other_class_ingress())], Action.NOTHING),
    "new-host": Row(
        lambda: [added(ingress("c", rules=[rule("c.example.com", ("/", "Prefix", backend("app")))]))],
        Action.RELOAD,
        (Reason.HOST_ADDED,),
        ("host_added: host c.example.com (Ingress default/c)",),
    ),
    "host-removed": Row(
        lambda: [deleted(ing_a())],
        Action.RELOAD,
        (Reason.HOST_REMOVED,),
        ("host_removed: host a.example.com (Ingress default/a)",),
        backends_changed=True,  # app was only a's
    ),
    "path-added": Row(
        lambda: [modified(ing_a(("/", "Prefix", backend("app")), ("/api", "Prefix", backend("other"))))],
        Action.RELOAD,
        (Reason.PATH_CHANGED,),
        ("path_changed: host a.example.com (Ingress default/a)",),
        backends_changed=False,  # `other` was already a backend (of Ingress b)
    ),
    "path-type-changed": Row(
        lambda: [modified(ing_a(("/", "Exact", backend("app"))))],
        Action.RELOAD,
        (Reason.PATH_CHANGED,),
        ("path_changed: host a.example.com (Ingress default/a)",),
    ),
    "path-moves-to-another-service": Row(
        lambda: [modified(ing_a(("/", "Prefix", backend("other"))))],
        Action.RELOAD,
        (Reason.PATH_CHANGED,),
        ("path_changed: host a.example.com (Ingress default/a)",),
        backends_changed=True,  # app is no longer used
    ),
    "tls-secret-rotated": Row(
        lambda: [modified(tls_secret("b-tls", "b.example.com"))],
        Action.LUA,
        certificates_changed=True,
    ),
    "tls-host-switches-to-another-secret": Row(
        lambda: [
            added(tls_secret("b-tls-2", "b.example.com")),
            modified(
                {**ING_B, "spec": {**ING_B["spec"], "tls": [{"hosts": ["b.example.com"], "secretName": "b-tls-2"}]}}
            ),
        ],
        Action.LUA,
        certificates_changed=True,
    ),
    "tls-secret-broken-host-falls-back-to-the-default-certificate": Row(
        lambda: [modified({**tls_secret("b-tls", "b.example.com"), "data": {"tls.crt": "", "tls.key": ""}})],
        Action.LUA,
        certificates_changed=True,
    ),
    "tls-added-to-a-host": Row(
        lambda: [modified(ing_a(tls=[{"hosts": ["a.example.com"], "secretName": "b-tls"}]))],
        Action.RELOAD,
        (Reason.TLS_CHANGED,),
        ("tls_changed: host a.example.com (Ingress default/a)",),
        certificates_changed=True,
    ),
    "tls-removed-from-a-host": Row(
        lambda: [modified({**ING_B, "spec": {k: v for k, v in ING_B["spec"].items() if k != "tls"}})],
        Action.RELOAD,
        (Reason.TLS_CHANGED,),
        ("tls_changed: host b.example.com (Ingress default/b)",),
        certificates_changed=True,
    ),
    "option-changed-in-the-configmap": Row(
        lambda: [modified(configmap(**{"proxy-read-timeout": "120"}))],
        Action.RELOAD,
        (Reason.OPTIONS_CHANGED,),
        ("options_changed: option proxy-read-timeout (ConfigMap ingressctl/cfg)",),
    ),
    "catch-all-default-backend-added": Row(
        lambda: [added(ingress("catch", default_backend=backend("app")))],
        Action.RELOAD,
        (Reason.PATH_CHANGED,),
        ("path_changed: default server (Ingress default/catch)",),
    ),
    "location-annotation-set": Row(
        lambda: [modified(ing_a(annotations={"nginx.ingress.kubernetes.io/proxy-read-timeout": "300"}))],
        Action.RELOAD,
        (Reason.ANNOTATIONS_CHANGED,),
        ("annotations_changed: host a.example.com (Ingress default/a)",),
    ),
    "server-annotation-set": Row(
        lambda: [modified(ing_a(annotations={"ingressctl.io/server-alias": "alias.example.com"}))],
        Action.RELOAD,
        (Reason.ANNOTATIONS_CHANGED,),
        ("annotations_changed: host a.example.com (Ingress default/a)",),
    ),
    "limit-annotation-set": Row(
        lambda: [modified(ing_a(annotations={"nginx.ingress.kubernetes.io/limit-rps": "10"}))],
        Action.RELOAD,
        (Reason.ANNOTATIONS_CHANGED,),
        ("annotations_changed: host a.example.com (Ingress default/a)",),
    ),
    "basic-auth-secret-rotated": Row(
        lambda: [modified(opaque_secret("users", {"auth": "ann:{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=\n"}))],
        Action.LUA,  # the same user file (named by its Secret) gets the new users; nginx reads it per request
        htpasswd_changed=True,
    ),
    "basic-auth-secret-read-another-way-reloads": Row(
        lambda: [
            modified(
                ingress(
                    "g",
                    rules=[rule("g.example.com", ("/", "Prefix", backend("other")))],
                    annotations={
                        "nginx.ingress.kubernetes.io/auth-type": "basic",
                        "nginx.ingress.kubernetes.io/auth-secret": "users",
                        "nginx.ingress.kubernetes.io/auth-secret-type": "auth-map",
                    },
                )
            ),
            modified(opaque_secret("users", {"auth": "ann:{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=\n", "bob": APR1})),
        ],
        Action.RELOAD,
        (Reason.ANNOTATIONS_CHANGED,),  # another file (auth-map reads each key as a user)
        ("annotations_changed: host g.example.com (Ingress default/g)",),
        htpasswd_changed=True,
    ),
    "basic-auth-secret-deleted-rejects-its-ingress": Row(
        lambda: [deleted(opaque_secret("users", {}))],
        Action.RELOAD,
        (Reason.HOST_REMOVED,),
        ("host_removed: host g.example.com (Ingress default/g)",),
        htpasswd_changed=True,  # its user file is no longer used
    ),
    "unreferenced-opaque-secret-added": Row(
        lambda: [added(opaque_secret("unrelated", {"password": "x"}))],
        Action.NOTHING,
    ),
    "unknown-annotation-added": Row(
        lambda: [modified(ing_a(annotations={"nginx.ingress.kubernetes.io/mirror-target": "http://m.test"}))],
        Action.NOTHING,
    ),
    "canary-weight-changed": Row(lambda: [modified(canary_m(**{"canary-weight": "50"}))], Action.LUA),
    "canary-weight-set-to-100": Row(lambda: [modified(canary_m(**{"canary-weight": "100"}))], Action.LUA),
    "canary-header-and-cookie-set": Row(
        lambda: [
            modified(
                canary_m(
                    **{
                        "canary-weight": "10",
                        "canary-by-header": "X-Canary",
                        "canary-by-header-pattern": "^v[0-9]+$",
                        "canary-by-cookie": "beta",
                    }
                )
            )
        ],
        Action.LUA,
    ),
    "canary-weight-total-changed": Row(
        lambda: [modified(canary_m(**{"canary-weight": "10", "canary-weight-total": "1000"}))], Action.LUA
    ),
    "canary-endpoints-changed": Row(lambda: [modified(endpoint_slice("next", ["10.0.2.1", "10.0.2.2"]))], Action.LUA),
    "canary-added": Row(
        lambda: [
            added(
                ingress(
                    "a-canary",
                    rules=[rule("a.example.com", ("/", "Prefix", backend("next")))],
                    annotations={"nginx.ingress.kubernetes.io/canary": "true"},
                )
            )
        ],
        Action.RELOAD,
        (Reason.PATH_CHANGED,),
        ("path_changed: host a.example.com (Ingress default/a, Ingress default/a-canary)",),
        backends_changed=True,
    ),
    "canary-removed": Row(
        lambda: [deleted(canary_m())],
        Action.RELOAD,
        (Reason.PATH_CHANGED,),
        ("path_changed: host m.example.com (Ingress default/m)",),
        backends_changed=True,
    ),
    "canary-made-invalid-falls-back-to-main": Row(
        lambda: [modified(canary_m(**{"canary-weight": "x"}))],
        Action.RELOAD,
        (Reason.PATH_CHANGED,),
        ("path_changed: host m.example.com (Ingress default/m)",),
        backends_changed=True,
    ),
    "host-added-and-option-changed-main-reason-first": Row(
        lambda: [
            modified(configmap(**{"proxy-read-timeout": "120"})),
            added(ingress("c", rules=[rule("c.example.com", ("/", "Prefix", backend("app")))])),
        ],
        Action.RELOAD,
        (Reason.HOST_ADDED, Reason.OPTIONS_CHANGED),
        (
            "host_added: host c.example.com (Ingress default/c)",
            "options_changed: option proxy-read-timeout (ConfigMap ingressctl/cfg)",
        ),
    ),
}


def running_world(cache: Cache, translator: Translator) -> Configuration:
    cache.load(added(obj) for obj in WORLD)
    cache.take_changes()
    return translator.full(cache.snapshot())


def plan_after(events: list[Event]) -> tuple[Plan, Cache]:
    """The controller's path: cache -> what changed -> translate (full or endpoints) -> plan."""
    cache, translator = Cache(), Translator(SETTINGS)
    running = running_world(cache, translator)
    cache.load(events)
    changes = cache.take_changes()
    snapshot = cache.snapshot()
    if not changes.any:
        new = running
    elif changes.full:
        new = translator.full(snapshot)
    else:
        new = translator.endpoints(running, snapshot, services=set(changes.services))
    return make_plan(running, new), cache


@pytest.mark.parametrize("name", ROWS)
def test_plan(name: str) -> None:
    row = ROWS[name]
    plan, _ = plan_after(row.events())
    assert plan.action is row.action, plan.describe()
    assert plan.reasons == row.reasons
    assert tuple(str(c) for c in plan.changes) == row.changes
    if row.action is not Action.NOTHING:
        # A no-reload update is the backends' unless the row says it is the certificates' or user files'.
        lua_backends = row.action is Action.LUA and not (row.certificates_changed or row.htpasswd_changed)
        assert plan.backends_changed == (row.backends_changed or lua_backends)
        assert plan.certificates_changed == row.certificates_changed
        assert plan.htpasswd_changed == row.htpasswd_changed


def test_rows_agree_with_a_fresh_translation() -> None:
    """The memo and the endpoint-only path (no full translate) plan what fresh translations would."""
    for name, row in ROWS.items():
        plan, cache = plan_after(row.events())
        running = running_world(Cache(), Translator(SETTINGS))
        fresh = make_plan(running, Translator(SETTINGS).full(cache.snapshot()))
        assert (fresh.action, fresh.changes) == (plan.action, plan.changes), name


def test_first_configuration_is_a_start() -> None:
    cache = Cache()
    config = running_world(cache, Translator(SETTINGS))
    plan = make_plan(None, config)
    assert plan.action is Action.RELOAD and plan.reasons == (Reason.START,) and plan.backends_changed
    assert plan.certificates_changed and plan.htpasswd_changed


def test_the_default_certificate_rotated_is_a_lua_update() -> None:
    """--default-ssl-certificate's Secret renewed: the SSL context keeps its own (fallback) file."""
    settings = dataclasses.replace(SETTINGS, default_ssl_certificate=("default", "def-tls"))
    cache, translator = Cache(), Translator(settings)
    cache.load(added(obj) for obj in [*WORLD, tls_secret("def-tls", "default.example.com")])
    running = translator.full(cache.snapshot())
    cache.take_changes()
    cache.load([modified(tls_secret("def-tls", "default.example.com"))])
    cache.take_changes()
    new = translator.full(cache.snapshot())
    assert new.static.default_certificate != running.static.default_certificate
    plan = make_plan(running, new)
    assert (plan.action, plan.certificates_changed, plan.backends_changed) == (Action.LUA, True, False)
    assert plan.describe() == "certificates only (Lua update, no reload)"


def test_the_log_line_names_at_most_ten_objects_then_a_count() -> None:
    events = [
        added(ingress(f"h{i:02d}", rules=[rule(f"h{i:02d}.example.com", ("/", "Prefix", backend("app")))]))
        for i in range(15)
    ]
    plan, _ = plan_after(events)
    line = plan.describe()
    assert line.startswith("reload (host_added): host_added: host h00.example.com (Ingress default/h00)")
    assert line.count("Ingress default/") == 10 and line.endswith("; and 5 more")
    assert len(plan.changes) == 15


def test_every_server_field_has_a_reason() -> None:
    """A field added to Server must be given its reload reason (unnamed ones would count as other)."""
    assert {f.name for f in dataclasses.fields(Server) if f.compare} <= set(SERVER_FIELDS)
