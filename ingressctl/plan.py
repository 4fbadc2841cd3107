"""The change plan: what it takes to go from the running Configuration to a new one.

`make_plan(running, new)` is pure: nothing, a Lua update (the backends the balancer holds, the
certificates the Lua store serves by SNI), or a reload, and for a reload the changes that need it,
each with its reason and the objects it came from (the Ingresses of a host, the controller's
ConfigMap). The controller executes plans; it does not decide them. A new kind of change that the
data plane can take without a reload is one more flag of a LUA plan and one more comparison here.
Canary policies (weight, header, cookie) travel inside the backends (Backend.canary): they are
Action.LUA already. A certificate change reloads only when nginx.conf changes with it: a host
gaining or losing its TLS section (its redirect and HSTS), not another certificate. Basic auth's user
files are named by their Secret and read by nginx at each request: new content for a file nginx.conf
names already is rewritten in place, no reload (LUA, the data plane's other no-reload update).

Reasons are a small fixed set (they label the reload counter): the first one a plan lists is the
reload's main reason.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ingressctl.config import Configuration, GlobalOptions, Location, ObjectRef, Server, StaticConfig
from ingressctl.translate.options import KEYS
from ingressctl.translate.sni import file_certificates, served


class Action(enum.IntEnum):
    """What executing a plan costs, cheapest first."""

    NOTHING = 0
    LUA = 1  # the data plane's shared dicts (backends, certificates; the Lua API), user files: no reload
    RELOAD = 2  # nginx.conf changes: render, test, reload


class Reason(enum.StrEnum):
    """Why a reload is needed; ordered by how much a user wants to hear of it first."""

    START = "start"
    HOST_ADDED = "host_added"
    HOST_REMOVED = "host_removed"
    PATH_CHANGED = "path_changed"
    TLS_CHANGED = "tls_changed"
    ANNOTATIONS_CHANGED = "annotations_changed"
    OPTIONS_CHANGED = "options_changed"
    OTHER = "other"


_RANK = {reason: i for i, reason in enumerate(Reason)}

# Which reason a change of each Server field is; a field not named here is OTHER, so a new
# field can never make a change go unnoticed.
SERVER_FIELDS: Mapping[str, Reason] = {
    "locations": Reason.PATH_CHANGED,
    "certificate": Reason.TLS_CHANGED,
    "redirect_https": Reason.TLS_CHANGED,
    "policy": Reason.ANNOTATIONS_CHANGED,
    "redirect_to": Reason.ANNOTATIONS_CHANGED,
    "host": Reason.OTHER,
    "server_name": Reason.OTHER,
}


@dataclass(frozen=True, slots=True)
class Change:
    reason: Reason
    subject: str  # what changed, e.g. "host a.example.com", "option proxy-read-timeout"
    origins: tuple[ObjectRef, ...] = ()  # the objects it came from, where known

    def __str__(self) -> str:
        if not self.origins:
            return f"{self.reason}: {self.subject}"
        return f"{self.reason}: {self.subject} ({', '.join(str(o) for o in self.origins)})"


@dataclass(frozen=True)
class Plan:
    action: Action
    changes: tuple[Change, ...] = ()  # why the reload is needed; empty unless action is RELOAD
    backends_changed: bool = False  # the balancer's backends differ (sent with a reload too)
    certificates_changed: bool = False  # what the Lua store serves by SNI differs (sent with a reload too)
    htpasswd_changed: bool = False  # basic auth user files hold other users (rewritten with a reload too)

    @property
    def reload(self) -> bool:
        return self.action is Action.RELOAD

    @property
    def updated(self) -> str:
        """What changes without a reload, e.g. "backends and certificates"; "" for nothing."""
        parts = (
            ("backends", self.backends_changed),
            ("certificates", self.certificates_changed),
            ("basic auth users", self.htpasswd_changed),
        )
        return " and ".join(what for what, changed in parts if changed)

    @property
    def how(self) -> str:
        """How the no-reload part is applied: "Lua update, no reload" or (user files alone) "no reload"."""
        return "Lua update, no reload" if self.backends_changed or self.certificates_changed else "no reload"

    @property
    def reasons(self) -> tuple[Reason, ...]:
        """Distinct reasons, main reason first."""
        return tuple(sorted({c.reason for c in self.changes}, key=_RANK.__getitem__))

    @property
    def reason(self) -> Reason | None:
        """The main reason (the reload counter's label), None unless a reload."""
        reasons = self.reasons
        return reasons[0] if reasons else None

    def describe(self, limit: int = 10) -> str:
        """One line: the action, then at most `limit` changes and a count of the rest."""
        if self.action is Action.NOTHING:
            return "nothing to do"
        if self.action is Action.LUA:
            return f"{self.updated} only ({self.how})"
        shown = "; ".join(str(c) for c in self.changes[:limit])
        rest = len(self.changes) - limit
        more = f"; and {rest} more" if rest > 0 else ""
        return f"reload ({', '.join(self.reasons)}): {shown}{more}"


def make_plan(running: Configuration | None, new: Configuration) -> Plan:
    """The plan that makes `new` run where `running` runs (None: nothing runs yet)."""
    if running is None:
        first = (Change(Reason.START, "first configuration"),)
        return Plan(Action.RELOAD, first, backends_changed=True, certificates_changed=True, htpasswd_changed=True)
    backends_changed = running.backends is not new.backends and running.backends != new.backends
    certificates_changed = running.static is not new.static and served(running.static).key != served(new.static).key
    htpasswd_changed = running.static is not new.static and running.static.htpasswd != new.static.htpasswd
    changes = static_changes(running, new)
    if changes:
        return Plan(Action.RELOAD, changes, backends_changed, certificates_changed, htpasswd_changed)
    return Plan(
        Action.LUA if backends_changed or certificates_changed or htpasswd_changed else Action.NOTHING,
        backends_changed=backends_changed,
        certificates_changed=certificates_changed,
        htpasswd_changed=htpasswd_changed,
    )


def static_changes(running: Configuration, new: Configuration) -> tuple[Change, ...]:
    """Every difference between the two static parts that nginx.conf carries, in a stable order
    (main reason first). Which certificate a host or the default serves is not one of them (the
    Lua store serves it); whether a host serves TLS is."""
    old, cur = running.static, new.static
    if old is cur or old == cur:
        return ()
    changes: list[Change] = []
    changes += _server_changes(old, cur, old_origins=running.origins, new_origins=new.origins)
    if old.default_server != cur.default_server:
        origins = new.origins.get("", ()) or running.origins.get("", ())
        changes += _server_diff(old.default_server, cur.default_server, subject="default server", origins=origins)
    if old.tls_context_certificate != cur.tls_context_certificate:
        changes.append(Change(Reason.TLS_CHANGED, "the SSL context's certificate"))
    changes += _option_changes(old.options, cur.options, configmap=new.configmap)
    if not changes and file_certificates(old) != file_certificates(cur):
        changes.append(Change(Reason.OTHER, "certificate files"))  # a change nginx.conf carries
    changes.sort(key=lambda c: _RANK[c.reason])  # stable: servers stay in host order
    return tuple(changes)


def _server_changes(
    old: StaticConfig,
    cur: StaticConfig,
    *,
    old_origins: Mapping[str, tuple[ObjectRef, ...]],
    new_origins: Mapping[str, tuple[ObjectRef, ...]],
) -> Iterable[Change]:
    if old.servers is cur.servers:
        return
    before = {s.host: s for s in old.servers}
    after = {s.host: s for s in cur.servers}
    for host in sorted(before.keys() | after.keys()):
        was, now = before.get(host), after.get(host)
        if was is now:
            continue
        if was is None:
            yield Change(Reason.HOST_ADDED, f"host {host}", new_origins.get(host, ()))
        elif now is None:
            yield Change(Reason.HOST_REMOVED, f"host {host}", old_origins.get(host, ()))
        elif was != now:
            origins = new_origins.get(host, ()) or old_origins.get(host, ())
            yield from _server_diff(was, now, subject=f"host {host}", origins=origins)


def _server_diff(was: Server, now: Server, *, subject: str, origins: tuple[ObjectRef, ...]) -> Iterable[Change]:
    changed = {
        SERVER_FIELDS.get(f.name, Reason.OTHER)
        for f in dataclasses.fields(Server)
        if f.compare and getattr(was, f.name) != getattr(now, f.name) and not _lua_served(f.name, was, now)
    }
    if Reason.PATH_CHANGED in changed and _routing(was.locations) == _routing(now.locations):
        changed.discard(Reason.PATH_CHANGED)  # the same paths and backends: only annotations differ
        changed.add(Reason.ANNOTATIONS_CHANGED)
    reasons = sorted(changed, key=_RANK.__getitem__)
    for reason in reasons:
        yield Change(reason, subject, origins)


def _lua_served(field: str, was: Server, now: Server) -> bool:
    """Another certificate for a host that serves TLS either way: the Lua store's business."""
    return field == "certificate" and was.certificate is not None and now.certificate is not None


def _routing(locations: tuple[Location, ...]) -> list[tuple[str, str, str | None]]:
    return [(loc.path, loc.match, loc.backend) for loc in locations]


def _option_changes(old: GlobalOptions, cur: GlobalOptions, *, configmap: ObjectRef | None) -> Iterable[Change]:
    if old == cur:
        return
    origins = (configmap,) if configmap else ()
    for f in dataclasses.fields(cur):
        if getattr(old, f.name) != getattr(cur, f.name):
            key = KEYS.get(f.name)  # None: set by a flag, not the ConfigMap
            if key:
                yield Change(Reason.OPTIONS_CHANGED, f"option {key}", origins)
            else:
                yield Change(Reason.OPTIONS_CHANGED, f"flag for {f.name}")
