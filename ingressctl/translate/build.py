"""translate(): a cache snapshot plus settings to the whole Configuration.

Ingresses are taken oldest first (creationTimestamp, then namespace/name), so the oldest one wins
every conflict. A Prefix rule `/foo` (or `/foo/`: its trailing slash is ignored) becomes the nginx
locations `= /foo` and `/foo/` (element-wise match), so `/foo` is served without a redirect; Exact
becomes `= /foo`; ImplementationSpecific a plain string prefix. A location ending in `/` never
answers its bare form with nginx's automatic 301: that form gets an exact location of its own with
what the other rules give it. Each server ends with a `/` fallback: the Ingress's own
defaultBackend, else the --default-backend-service, else 404.

translate() runs named steps over the Ingresses, oldest first: routes (with path conflicts),
default backends, TLS; merges canary Ingresses into those routes (translate/canary.py); then builds
the static part (servers and locations) and the backends.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ingressctl.cache import Snapshot
from ingressctl.config import (
    EWMA,
    EXACT,
    PREFIX,
    REGEX,
    ROUND_ROBIN,
    Backend,
    BackendSource,
    Balancing,
    Certificate,
    Configuration,
    GlobalOptions,
    Htpasswd,
    Limits,
    Location,
    ObjectRef,
    Policy,
    Problem,
    RouteLabels,
    Server,
    ServerPolicy,
    StaticConfig,
    TenancyPolicy,
    route_id,
)
from ingressctl.model import CONFIG_MAP, INGRESS, INGRESS_CLASS, SECRET, SERVICE, Obj
from ingressctl.translate import annotated, canary
from ingressctl.translate import annotations as ann
from ingressctl.translate import ingress as ing
from ingressctl.translate.annotations import servers as server_scope
from ingressctl.translate.backends import BackendResolver
from ingressctl.translate.classes import is_ours, our_classes
from ingressctl.translate.memo import Memo
from ingressctl.translate.options import apply_configmap, apply_policy
from ingressctl.translate.tenancy import Refusal, admit, admit_canaries, object_cap
from ingressctl.translate.tls import BadCertificate, certificate_from_secret, security_level, warnings

_REGEX_TYPE = "Regex"  # the route key type of a use-regex Ingress's Prefix/ImplementationSpecific paths
_TYPE_PRIORITY = {ing.EXACT: 0, ing.PREFIX: 1, ing.IMPLEMENTATION_SPECIFIC: 2, _REGEX_TYPE: 3}
# What a route asks for: its backend name, or (backend, its Ingress's location-scope annotations)
# when it has some (a plain name otherwise: strings cache their hash, the memo keys hash them all).
Target = str | None | tuple[str | None, Policy | None]


@dataclass(frozen=True)
class Settings:
    fallback_certificate: Certificate  # self-signed, generated at start when no default is given
    controller_class: str = "ingressctl.io/controller"
    ingress_class: str = "ingressctl"
    watch_without_class: bool = False
    default_backend_service: tuple[str, str] | None = None
    default_ssl_certificate: tuple[str, str] | None = None
    configmap: tuple[str, str] | None = None
    options: GlobalOptions = field(default_factory=GlobalOptions)
    tenancy: TenancyPolicy = field(default_factory=TenancyPolicy)


def server_name(host: str) -> str:
    """nginx's `*.foo.com` would match any depth; Kubernetes wildcards match exactly one label."""
    if host.startswith("*."):
        return "~^[^.]+" + host[1:].replace(".", r"\.") + "$"
    return host


def tls_covers(tls_host: str, host: str) -> bool:
    if tls_host == host:
        return True
    return tls_host.startswith("*.") and not host.startswith("*.") and host.split(".", 1)[-1] == tls_host[2:]


_FALLBACK = "default"  # the route id kind of a server's `/` fallback (no rule of its own)


def _locations(
    host: str, routes: dict[tuple[str, str], Target], fallback: str | None, feedback: frozenset[str] = frozenset()
) -> tuple[Location, ...]:
    """The locations of a host; each carries the route id of the rule it serves (a Prefix rule's
    two locations share one)."""
    out: dict[tuple[str, str], tuple[Target, str]] = {}
    for (path, path_type), target in sorted(routes.items(), key=lambda kv: _TYPE_PRIORITY[kv[0][1]]):
        entry = (target, route_id(host, path, path_type))
        if path_type == ing.EXACT:
            out.setdefault((EXACT, path), entry)
        elif path_type == _REGEX_TYPE:
            out.setdefault((REGEX, path), entry)
        elif path_type == ing.PREFIX and path != "/":
            out.setdefault((EXACT, path), entry)
            out.setdefault((PREFIX, path + "/"), entry)
        else:
            out.setdefault((PREFIX, path), entry)
    out.setdefault((PREFIX, "/"), (fallback, route_id(host, "/", _FALLBACK)))
    _no_slash_redirects(out)
    locations = tuple(
        Location(path, match, target, route=route)
        if not isinstance(target, tuple)
        else Location(path, match, *target, route=route)
        for (match, path), (target, route) in sorted(out.items(), key=_location_order)
    )
    if not feedback:
        return locations
    return tuple(dataclasses.replace(loc, feedback=True) if loc.backend in feedback else loc for loc in locations)


def _location_order(item: tuple[tuple[str, str], object]) -> tuple[bool, int, str, str]:
    """By path; regexes last and longest first: nginx tries them in the order they are written."""
    match, path = item[0]
    regex = match == REGEX
    return (regex, -len(path) if regex else 0, path, match)


def _no_slash_redirects(out: dict[tuple[str, str], tuple[Target, str]]) -> None:
    """nginx answers `/foo` with a 301 to `/foo/` when a location named `/foo/` (exact or prefix)
    proxies, unless `= /foo` exists. An Exact `/foo/` (or ImplementationSpecific `/foo/`) must not
    match `/foo`: give `/foo` its own exact location, with what the other rules give it (the longest
    prefix location it starts with; at least the `/` fallback)."""
    prefixes = sorted((path for match, path in out if match == PREFIX), key=len, reverse=True)
    for match, path in list(out):
        bare = path[:-1]
        if match == REGEX or not bare or not path.endswith("/") or (EXACT, bare) in out:
            continue
        longest = next(p for p in prefixes if bare.startswith(p))
        out[(EXACT, bare)] = out[(PREFIX, longest)]


def _parse(obj: Obj, ours: Callable[[Obj], bool]) -> ing.ParsedIngress | ing.InvalidField | None:
    """The parsed Ingress (with its annotations), why it is rejected, or None if it is not ours."""
    if not ours(obj):
        return None
    try:
        ref = ing.ingress_ref(obj)
        return ing.parse(obj, ann.read(ann.annotations_of(obj), namespace=ref.namespace, name=ref.name))
    except ann.AnnotationError as exc:
        return ing.InvalidField(exc.field, exc.reason)
    except ing.InvalidField as exc:
        return exc


def _memo_locations(
    memo: Memo,
    host: str,
    *,
    routes: dict[tuple[str, str], Target],
    fallback: str | None,
    feedback: frozenset[str] = frozenset(),
) -> tuple[Location, ...]:
    """`feedback`: the backends whose algorithm learns from answers (ewma); usually none."""
    # In insertion order, which the oldest-first walk over the Ingresses fixes: no sort needed.
    if feedback:
        targets = [fallback, *(t[0] if isinstance(t, tuple) else t for t in routes.values())]
        feedback = frozenset(t for t in targets if t in feedback)
    key = ("locations", host, fallback, feedback, *routes.items())
    return memo.get(key, (), _locations, host, routes, fallback, feedback)


def _memo_server(
    memo: Memo,
    host: str,
    *,
    locations: tuple[Location, ...],
    certificate: str | None,
    redirect: bool,
    policy: ServerPolicy | None = None,
) -> Server:
    """The same Server object while nothing of it changes: comparing and hashing it is then cheap."""
    return memo.get(
        ("server", host, id(locations), certificate, redirect, policy),
        (locations,),
        lambda: Server(host, server_name(host), locations, certificate, redirect, policy),
    )


@dataclass
class _Hosts:
    """What the Ingresses ask of each host, filled by translate()'s steps oldest Ingress first:
    the first to claim something keeps it. "" is the default server (rules without a host)."""

    routes: dict[str, dict[tuple[str, str], Target]] = field(default_factory=dict)  # (path, type) -> target
    route_owners: dict[tuple[str, str, str], ObjectRef] = field(default_factory=dict)
    route_services: dict[tuple[str, str, str], str] = field(default_factory=dict)  # the Service's name
    fallback_labels: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # namespace, Ingress, Service
    default_backend: dict[str, str] = field(default_factory=dict)
    catch_all: tuple[str, ObjectRef] | None = None  # defaultBackend of an Ingress without hosts
    tls: dict[str, str | None] = field(default_factory=dict)  # certificate name; None: the default one
    origins: dict[str, list[ObjectRef]] = field(default_factory=dict)
    server_policy: dict[str, ServerPolicy] = field(default_factory=dict)  # the host owner's

    def touch(self, host: str, ref: ObjectRef) -> None:
        owners = self.origins.setdefault(host, [])
        if not owners or owners[-1] != ref:
            owners.append(ref)


class _Builder:
    def __init__(self, snapshot: Snapshot, settings: Settings, memo: Memo) -> None:
        self.snapshot = snapshot
        self.settings = settings
        self.memo = memo
        self.problems: list[Problem] = []
        self.resolver = BackendResolver(snapshot, memo)
        self.sources: dict[tuple[str, ing.ServiceRef], BackendSource] = {}
        self.backends: dict[str, Backend] = {}
        self.certificates: dict[str, Certificate] = {}
        self.policy_certificates: set[str] = set()  # used by locations for their endpoints (proxy-ssl-secret)
        self.htpasswd: dict[str, Htpasswd] = {}  # basic auth user files (auth-secret)
        self._resolved: dict[ing.ServiceRef, str] = {}  # refs used so far, without problems
        self.hosts = _Hosts()
        self.algorithm = ROUND_ROBIN  # the balancing algorithm of every backend (the options' load-balance)
        self.balancing = Balancing()  # of backends no Ingress's balancing annotations decide
        # backend name -> (its Balancing, the Ingress that decided it: the oldest setting any)
        self._decided: dict[str, tuple[Balancing, ObjectRef]] = {}
        self.tenancy = settings.tenancy
        self.security_level = security_level(settings.options.ssl_ciphers)
        self.now = datetime.datetime.now(datetime.UTC)
        self.expiry: dict[str, datetime.datetime] = {}  # "namespace/secret" -> the leaf's notAfter
        self.certificate_users: dict[str, set[ObjectRef]] = {}  # certificate name -> who chose it
        self.canaries: list[ing.ParsedIngress] = []  # admitted canary Ingresses, oldest first (translate/canary.py)

    def problem(self, ref: ObjectRef, *, where: str, reason: str) -> None:
        self.problems.append(Problem(ref, where, reason))

    def use(
        self,
        ref: ing.ServiceRef,
        *,
        owner: ObjectRef,
        where: str,
        suffix: str = "",
        balancing: Balancing | None = None,
    ) -> str:
        """The backend for ref; a problem with it is reported at `where + suffix`. `balancing`: what the
        owner's annotations ask for (None: nothing), decided per backend by the first to ask."""
        name = self._resolved.get(ref)
        if name is not None:
            if balancing is not None:
                self._decide(ref, name, balancing, owner)
            return name
        resolved = self.resolver.resolve(ref, balancing=self.balancing)
        name = resolved.backend.name
        self.backends[name] = resolved.backend
        self.sources[(name, ref)] = BackendSource(name, ref.namespace, ref.name, ref.port, self.balancing)
        if resolved.problem:
            self.problem(
                owner, where=where + suffix, reason=f"{resolved.problem}: {ref.namespace}/{ref.name} (answers 503)"
            )
        else:
            self._resolved[ref] = name
        if balancing is not None:
            self._decide(ref, name, balancing, owner)
        elif name in self._decided:  # another reference to a decided backend (its port by name or number)
            self._decide(ref, name, self._decided[name][0], owner)
        return name

    def _decide(self, ref: ing.ServiceRef, name: str, balancing: Balancing, owner: ObjectRef) -> None:
        """The first Ingress asking for a backend's balancing gets it; a later one asking for other
        settings is reported and not applied (ingress-nginx's rule: the first wins)."""
        decided = self._decided.get(name)
        if decided is None:
            self._decided[name] = decided = (balancing, owner)
        elif decided[0] != balancing and decided[1] != owner:
            self.problem(
                owner,
                where="metadata.annotations",
                reason=f"load-balance, upstream-hash-by and affinity of backend {name} are decided by Ingress "
                f"{decided[1].namespace}/{decided[1].name} (the oldest that sets them); not applied",
            )
        chosen = decided[0]
        source = self.sources.get((name, ref))
        if source is not None and source.balancing != chosen:
            self.backends[name] = self.resolver.resolve(ref, balancing=chosen).backend
            self.sources[(name, ref)] = dataclasses.replace(source, balancing=chosen)

    def certificate(
        self, namespace: str, name: str, *, owner: ObjectRef, where: str, hosts: tuple[str, ...] = ()
    ) -> str | None:
        """The certificate of a TLS Secret, checked as nginx would use it (None: serve the default);
        warnings (expiry, names not covering `hosts`) do not stop it being served."""
        secret = annotated.tls_secret(self.snapshot, namespace, name)
        if secret is None:
            reason = f"TLS Secret {namespace}/{name} not found; serving the default certificate"
            self.problem(owner, where=where, reason=reason)
            return None
        try:
            checked = certificate_from_secret(secret, tenancy=self.tenancy, level=self.security_level)
        except BadCertificate as exc:
            self.problem(
                owner, where=where, reason=f"TLS Secret {namespace}/{name}: {exc}; serving the default certificate"
            )
            return None
        for warning in warnings(checked, hosts, self.now):
            self.problem(owner, where=where, reason=f"TLS Secret {namespace}/{name}: {warning}")
        self.expiry[f"{namespace}/{name}"] = checked.not_after
        cert = checked.certificate
        self.certificates[cert.name] = cert
        self.certificate_users.setdefault(cert.name, set()).add(owner)
        return cert.name

    def options(self) -> GlobalOptions:
        """The options, and the tenancy policy (self.tenancy), with the ConfigMap's keys applied."""
        options = self.settings.options
        if self.settings.configmap:
            cm = self.snapshot.of(CONFIG_MAP).get(self.settings.configmap)
            if cm is not None:
                data = cm.get("data") or {}
                options, errors = apply_configmap(options, data)
                self.tenancy, policy_errors = apply_policy(self.tenancy, data)
                ref = ObjectRef(CONFIG_MAP, *self.settings.configmap)
                for error in (*errors, *policy_errors):
                    self.problem(ref, where=error.field, reason=error.reason + " (ignored)")
        self.security_level = security_level(options.ssl_ciphers)
        return options

    def default_certificate(self) -> str:
        fallback = self.settings.fallback_certificate
        self.certificates[fallback.name] = fallback
        if self.settings.default_ssl_certificate:
            ns, name = self.settings.default_ssl_certificate
            chosen = self.certificate(ns, name, owner=ObjectRef(SECRET, ns, name), where="--default-ssl-certificate")
            if chosen:
                return chosen
        return fallback.name

    def global_default_backend(self) -> str | None:
        if not self.settings.default_backend_service:
            return None
        ns, name = self.settings.default_backend_service
        ref = ing.ServiceRef(ns, name, annotated.first_port(self.snapshot, ns, name))
        return self.use(ref, owner=ObjectRef(SERVICE, ns, name), where="--default-backend-service")

    def parsed_ingresses(self, refused: Mapping[ObjectRef, Refusal]) -> list[ing.ParsedIngress]:
        """Our Ingresses that parse, fit the caps, pass the tenancy policy and were not refused by
        nginx, oldest first; the others are reported."""
        classes = self.snapshot.of(INGRESS_CLASS)
        # Whether an Ingress is ours depends on it, the IngressClasses and the settings: a token
        # that stays the same object while those do lets the memo keep the answer with the parse.
        token = self.memo.get(
            ("classes", id(self.settings), *(id(c) for c in classes.values())),
            (self.settings, *classes.values()),
            object,
        )
        ours = functools.partial(
            is_ours,
            classes=our_classes(classes, self.settings.controller_class),
            ingress_class=self.settings.ingress_class,
            watch_without_class=self.settings.watch_without_class,
        )
        parsed: list[ing.ParsedIngress] = []
        tenancy = self.tenancy
        for obj in self.snapshot.of(INGRESS).values():
            result = self.memo.get(("ingress", id(obj), id(token)), (obj, token), _parse, obj, ours)
            if result is None:
                continue
            if not isinstance(result, ing.InvalidField):
                # An object that is not ours is never measured; one that is, once per policy.
                result = self.memo.get(("caps", id(obj), tenancy), (obj,), object_cap, obj, tenancy) or result
            if isinstance(result, ing.InvalidField):
                self.problem(ing.ingress_ref(obj), where=result.field, reason=f"{result.reason}; Ingress rejected")
                continue
            refusal = refused.get(result.ref)
            if refusal is not None and refusal.current(self.snapshot):
                reason = f"nginx refused the configuration it makes: {refusal.reason}; Ingress rejected"
                self.problem(result.ref, where="spec", reason=reason)
                continue
            if result.annotations.policy is not None and result.annotations.policy.basic_auth is not None:
                authed = annotated.basic_auth(self, result)
                if authed is None:
                    continue
                result = authed
            parsed.append(result)
            for where, reason in result.annotations.warnings:
                self.problem(result.ref, where=where, reason=reason)
        parsed.sort(key=_ORDER)
        canaries = [p for p in parsed if canary.is_canary(p)]
        admission = admit([p for p in parsed if not canary.is_canary(p)] if canaries else parsed, tenancy)
        self.problems.extend(admission.problems)
        if canaries:
            canary_admission = admit_canaries(canaries, tenancy, admission.owners)
            self.problems.extend(canary_admission.problems)
            self.canaries = list(canary_admission.admitted)
        return list(admission.admitted)


_ORDER = operator.attrgetter("order")


def _add_routes(b: _Builder, p: ing.ParsedIngress) -> None:
    """Rules: each (host, path, pathType) goes to the oldest Ingress that asks for it."""
    hosts = b.hosts
    for host in p.hosts:
        hosts.routes.setdefault(host, {})  # a host with no paths still gets its server
        hosts.touch(host, p.ref)
    regex, policy, cluster_ip, balancing = False, None, False, None
    if p.annotations is not ann.EMPTY:  # most Ingresses: nothing to look at
        regex = p.annotations.regex
        balancing = p.annotations.balancing
        policy = annotated.location_policy(b, p, global_default=b.settings.default_backend_service)
        cluster_ip = bool(p.annotations.values.get("service-upstream"))
    for route in p.routes:
        key = (route.path, _REGEX_TYPE if regex and route.path_type != ing.EXACT else route.path_type)
        host_routes = hosts.routes.setdefault(route.host, {})
        if key in host_routes:
            winner = hosts.route_owners[(route.host, *key)]
            b.problem(
                p.ref,
                where=route.field,
                reason=f"host {route.host or '*'} path {route.path} ({route.path_type}) is already served by "
                f"Ingress {winner.namespace}/{winner.name}, the older one wins",
            )
            continue
        if cluster_ip:
            name = annotated.cluster_ip(b, route.backend, owner=p.ref, where=route.field)
        else:
            name = b.use(route.backend, owner=p.ref, where=route.field, suffix=".backend", balancing=balancing)
        host_routes[key] = name if policy is None else (name, policy)
        hosts.route_owners[(route.host, *key)] = p.ref
        hosts.route_services[(route.host, *key)] = route.backend.name
        hosts.touch(route.host, p.ref)


def _add_default_backend(b: _Builder, p: ing.ParsedIngress) -> None:
    """spec.defaultBackend: the `/` fallback of the Ingress's hosts, or with no hosts the catch-all."""
    hosts = b.hosts
    if p.default_backend is None:
        annotation = annotated.default_backend(b, p) if p.hosts else None  # for its hosts only
        if annotation is not None:
            for host in p.hosts:
                hosts.default_backend.setdefault(host, annotation)
        return
    name = b.use(p.default_backend, owner=p.ref, where="spec.defaultBackend", balancing=p.annotations.balancing)
    labels = (p.ref.namespace, p.ref.name, p.default_backend.name)
    if p.hosts:
        for host in p.hosts:
            if host not in hosts.default_backend:
                hosts.default_backend[host] = name
                hosts.fallback_labels[host] = labels
    elif hosts.catch_all is None:
        hosts.catch_all = (name, p.ref)
        hosts.fallback_labels[""] = labels
        hosts.touch("", p.ref)
    else:
        winner = hosts.catch_all[1]
        b.problem(
            p.ref,
            where="spec.defaultBackend",
            reason=f"the catch-all default backend is already set by Ingress {winner.namespace}/{winner.name}, "
            "the older one wins",
        )


def _add_tls(b: _Builder, p: ing.ParsedIngress) -> None:
    """spec.tls: the first TLS section covering a host of the Ingress chooses its certificate."""
    hosts = b.hosts
    for i, tls in enumerate(p.tls):
        covered = [h for h in p.hosts if h not in hosts.tls and any(tls_covers(t, h) for t in tls.hosts)]
        if not covered:
            continue
        where = f"spec.tls[{i}].secretName"
        cert = (
            b.certificate(p.ref.namespace, tls.secret, owner=p.ref, where=where, hosts=tuple(covered))
            if tls.secret
            else None
        )
        for host in covered:
            hosts.tls[host] = cert


def _add_server_policy(b: _Builder, p: ing.ParsedIngress) -> None:
    """Server-scope annotations: the host's owner (its oldest Ingress, the first of its origins)
    decides; another Ingress of the host that sets different ones is reported, and they are not applied."""
    hosts, mine = b.hosts, p.annotations.server
    if mine is None:
        return
    owned = {h for h in p.hosts if hosts.origins[h][0] == p.ref}
    resolved = annotated.client_ca(b, p, mine) if owned and mine.client_auth else mine
    for host in p.hosts:
        owner = hosts.origins[host][0]
        if host in owned:
            hosts.server_policy[host] = resolved
        elif annotated.unresolved(hosts.server_policy.get(host)) != mine:
            b.problem(
                p.ref,
                where="metadata.annotations",
                reason=f"server-scope annotations of host {host} are decided by its owner, Ingress "
                f"{owner.namespace}/{owner.name} (the oldest); not applied",
            )


def _feedback(backends: Mapping[str, Backend]) -> frozenset[str]:
    """The backends whose routes run the balancer's log phase: ewma ones, and canary routes with one."""
    ewma = {name for name, backend in backends.items() if backend.algorithm == EWMA}
    if not ewma:
        return frozenset()
    canaries = {
        name
        for name, backend in backends.items()
        if backend.canary is not None and (backend.canary.main in ewma or backend.canary.backend in ewma)
    }
    return frozenset(ewma | canaries)


def _static(b: _Builder, *, options: GlobalOptions, default_cert: str, global_default: str | None) -> StaticConfig:
    """The servers, one per host (sorted), and the default server."""
    memo, hosts = b.memo, b.hosts
    named = sorted(h for h in hosts.routes if h)
    feedback = _feedback(b.backends)
    policies: dict[str, ServerPolicy] = {}
    if hosts.server_policy:
        policies = server_scope.resolve(
            hosts.server_policy,
            owners={h: hosts.origins[h][0] for h in hosts.server_policy},
            hosts=named,
            report=lambda ref, reason: b.problem(ref, where="metadata.annotations", reason=reason),
        )

    def certificate(host: str) -> str | None:
        return hosts.tls.get(host) or (default_cert if host in hosts.tls else None)

    for host, policy in policies.items():
        if policy.client_auth is not None and host not in hosts.tls:
            b.problem(
                hosts.origins[host][0],
                where="metadata.annotations",
                reason=f"auth-tls-secret: host {host} has no TLS section (spec.tls), so nginx cannot ask for "
                "client certificates: its HTTPS requests get 400",
            )

    servers = tuple(
        _memo_server(
            memo,
            host,
            locations=_memo_locations(
                memo,
                host,
                routes=hosts.routes[host],
                fallback=hosts.default_backend.get(host, global_default),
                feedback=feedback,
            ),
            certificate=certificate(host),
            redirect=server_scope.redirects_https(
                policies.get(host), tls=host in hosts.tls, default=options.ssl_redirect
            ),
            policy=policies.get(host),
        )
        for host in named
    )
    redirects = server_scope.redirect_servers(policies, {h: certificate(h) for h in policies}) if policies else []
    if redirects:
        servers = tuple(sorted((*servers, *redirects), key=_HOST))
    catch_all = hosts.catch_all[0] if hosts.catch_all else global_default
    default_server = Server(
        host="",
        server_name="_",
        locations=_memo_locations(memo, "", routes=hosts.routes.get("", {}), fallback=catch_all, feedback=feedback),
    )
    context_cert = b.settings.fallback_certificate.name
    used_certs = {default_cert, context_cert} | {s.certificate for s in servers if s.certificate}
    used_certs |= b.policy_certificates
    used = {loc.policy for s in (default_server, *servers) for loc in s.locations if loc.policy is not None}
    limits = {p.limits for p in used if p.limits is not None and p.limits.zoned}
    files = {p.basic_auth.file for p in used if p.basic_auth is not None and p.basic_auth.file}
    return StaticConfig(
        servers=servers,
        default_server=default_server,
        certificates=tuple(sorted((b.certificates[n] for n in used_certs), key=lambda c: c.name)),
        default_certificate=default_cert,
        options=options,
        context_certificate=context_cert,
        limits=tuple(sorted(limits, key=_zone_order)),
        htpasswd=tuple(sorted((b.htpasswd[n] for n in files), key=_NAME)),
    )


def _zone_order(limits: Limits) -> tuple[str, str]:
    return (limits.namespace, limits.ingress)


_HOST = operator.attrgetter("host")


def _route_labels(hosts: _Hosts, static: StaticConfig, global_service: str) -> dict[str, RouteLabels]:
    """Route id -> the labels its requests are counted under, for the locations of `static`."""
    rules = {
        route_id(host, path, kind): RouteLabels(owner.namespace, owner.name, host, path, hosts.route_services[key])
        for key, owner in hosts.route_owners.items()
        for host, path, kind in (key,)
    }
    labels: dict[str, RouteLabels] = {}
    for server in (static.default_server, *static.servers):
        for loc in server.locations:
            if loc.route in labels or not loc.route:
                continue
            found = rules.get(loc.route)
            if found is None:  # a fallback: an Ingress's defaultBackend, the global one, or 404
                namespace, ingress, service = hosts.fallback_labels.get(server.host, ("", "", global_service))
                found = RouteLabels(namespace, ingress, server.host, "/", service if loc.backend else "")
            labels[loc.route] = found
    return labels


def translate(
    snapshot: Snapshot,
    settings: Settings,
    *,
    memo: Memo | None = None,
    refused: Mapping[ObjectRef, Refusal] | None = None,
) -> Configuration:
    """The whole Configuration for a snapshot. Pass the same `memo` to successive calls to reuse
    per-object results of objects that did not change (the result is the same either way).
    `refused`: Ingresses nginx refused, rejected while they and their Secrets stay the same."""
    memo = Memo() if memo is None else memo
    b = _Builder(snapshot, settings, memo)
    options = b.options()
    b.algorithm = options.load_balance
    b.balancing = Balancing(load_balance=options.load_balance)
    default_cert = b.default_certificate()
    global_default = b.global_default_backend()
    parsed = b.parsed_ingresses(refused or {})
    for step in (_add_routes, _add_default_backend, _add_tls, _add_server_policy):
        for p in parsed:
            step(b, p)
    serving_canaries = canary.merge(b, b.canaries, routes=b.hosts.routes, touch=b.hosts.touch) if b.canaries else []
    static = _static(b, options=options, default_cert=default_cert, global_default=global_default)
    global_service = settings.default_backend_service[1] if settings.default_backend_service else ""
    routes = _route_labels(b.hosts, static, global_service) if options.metrics else {}
    memo.rotate()
    return Configuration(
        static=static,
        backends=tuple(sorted(b.backends.values(), key=_NAME)),
        ingresses=tuple(sorted((*(p.ref for p in parsed), *serving_canaries), key=_NAMESPACE_NAME)),
        problems=tuple(sorted(set(b.problems), key=lambda x: (x.ref.namespace, x.ref.name, x.field, x.reason))),
        origins={host: tuple(refs) for host, refs in b.hosts.origins.items()},
        configmap=ObjectRef(CONFIG_MAP, *settings.configmap) if settings.configmap else None,
        backend_sources=tuple(sorted(b.sources.values(), key=_source_order)),
        certificate_expiry=tuple(sorted(b.expiry.items())),
        certificate_users={
            name: tuple(sorted(users, key=_NAMESPACE_NAME))
            for name, users in b.certificate_users.items()
            if name in {c.name for c in static.certificates}
        },
        routes=routes,
    )


def _source_order(s: BackendSource) -> tuple[str, str, str, str]:
    return (s.backend, s.namespace, s.service, str(s.port))


_NAME = operator.attrgetter("name")
_NAMESPACE_NAME = operator.attrgetter("namespace", "name")


def update_endpoints(
    previous: Configuration, snapshot: Snapshot, *, services: set[tuple[str, str]], memo: Memo
) -> Configuration:
    """translate() for a snapshot that differs from the one `previous` came from only in the
    EndpointSlices/Endpoints of `services`: re-resolves just their backends, in O(changes).
    Endpoints never change the static part or the problems, so those are kept as they are."""
    resolver = BackendResolver(snapshot, memo)
    fresh: dict[str, Backend] = {}
    for source in previous.backend_sources:
        if (source.namespace, source.service) in services:
            ref = ing.ServiceRef(source.namespace, source.service, source.port)
            fresh[source.backend] = resolver.resolve(ref, balancing=source.balancing).backend
    if not fresh:
        return previous
    backends = tuple(fresh.get(b.name, b) for b in previous.backends)
    return dataclasses.replace(previous, backends=backends)


class Translator:
    """translate() and update_endpoints() with one Memo carried from sync to sync."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.memo = Memo()
        # Ingresses nginx refused (ingressctl.dataplane.refusal traces them): kept out until they
        # or their Secrets change.
        self.refused: dict[ObjectRef, Refusal] = {}

    def refuse(self, refusal: Refusal) -> None:
        self.refused[refusal.ref] = refusal

    def full(self, snapshot: Snapshot) -> Configuration:
        self.refused = {ref: r for ref, r in self.refused.items() if r.current(snapshot)}
        return translate(snapshot, self.settings, memo=self.memo, refused=self.refused)

    def endpoints(
        self, previous: Configuration, snapshot: Snapshot, *, services: set[tuple[str, str]]
    ) -> Configuration:
        return update_endpoints(previous, snapshot, services=services, memo=self.memo)
