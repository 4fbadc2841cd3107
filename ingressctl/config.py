"""The Configuration: the pure data that translate produces and apply consumes.

It splits into the *static* part (what nginx.conf holds: servers, locations, certificates, global
options) and the *dynamic* part (backends and their endpoints: what the Lua balancer holds). Apply
reloads nginx only when the static part changes. Everything here is frozen and sorted, so two
translations of the same snapshot compare equal.

The classes there are many of (a Location per path, a Server per host) have slots, and Server
computes its hash once: nginx.conf's per-server block cache looks every Server up by it.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

# Location match kinds, as nginx spells them: "=" exact, "" prefix (longest prefix wins), "~*" a
# case-insensitive regex (use-regex; regexes are tried in order, longest first, before prefixes).
EXACT = "="
PREFIX = ""
REGEX = "~*"

# The balancing algorithms of the Lua balancer's registry (lua/ingressctl/balancer.lua: one module
# per algorithm under lua/ingressctl/balancer/); a test keeps the two lists equal.
ROUND_ROBIN = "round_robin"
EWMA = "ewma"
CHASH = "chash"  # upstream-hash-by
CHASH_SUBSET = "chashsubset"  # upstream-hash-by with upstream-hash-by-subset
STICKY_BALANCED = "sticky_balanced"  # affinity: cookie, affinity-mode: balanced
STICKY_PERSISTENT = "sticky_persistent"  # affinity: cookie, affinity-mode: persistent
ALGORITHMS = (ROUND_ROBIN, EWMA, CHASH, CHASH_SUBSET, STICKY_BALANCED, STICKY_PERSISTENT)
LOAD_BALANCE = (ROUND_ROBIN, EWMA)  # what `load-balance` may name; the others follow from other annotations


@dataclass(frozen=True, slots=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why an object (or part of it) was rejected or degraded. Never stops the others."""

    ref: ObjectRef
    field: str
    reason: str
    # "Warning" for anything a user must fix.
    severity: str = "Warning"

    def __str__(self) -> str:
        return f"{self.ref}: {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Location:
    path: str
    match: str  # EXACT, PREFIX or REGEX
    backend: str | None  # backend name; None answers 404
    policy: Policy | None = None  # the Ingress's location-scope annotations; None: none set
    # Its backend's algorithm learns from answers (ewma): the location runs the balancer's log phase.
    feedback: bool = False
    # The route id of the rule this location serves (route_id(): host, rule path, pathType), which
    # per-route metrics count under; the controller knows id -> labels (Configuration.routes).
    route: str = ""


def route_id(host: str, path: str, kind: str) -> str:
    """A short id for a rule, a function of what the location text already holds (host, path, the
    rule's type; "default" for a server's fallback), so the same routes render the same ids and the
    owner or the Service behind a path can change without changing nginx.conf."""
    return hashlib.blake2b(f"{host}\0{path}\0{kind}".encode(), digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class RouteLabels:
    """The Prometheus labels of a route's request metrics: all from the configuration, none from
    the request (ingressctl.dataplane.monitor)."""

    namespace: str  # the Ingress's ("" for a fallback nobody's Ingress chose)
    ingress: str
    host: str  # "" for rules without a host
    path: str  # the rule's path as written
    service: str  # the Service's name ("" when the route answers 404)


@dataclass(frozen=True, slots=True)
class Server:
    host: str  # "" for the catch-all default server
    server_name: str  # the nginx server_name token: an exact host or a "~^...$" regex
    locations: tuple[Location, ...]
    certificate: str | None = None  # Certificate.name serving this host over HTTPS
    redirect_https: bool = False
    policy: ServerPolicy | None = None  # the host owner's server-scope annotations
    redirect_to: str | None = None  # from-to-www-redirect: this server only redirects to that host
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_hash",
            hash(
                (
                    self.host,
                    self.server_name,
                    self.locations,
                    self.certificate,
                    self.redirect_https,
                    self.policy,
                    self.redirect_to,
                )
            ),
        )

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True)
class Certificate:
    """A certificate chain and its key, as one PEM file named by its content hash."""

    name: str
    pem: bytes = field(repr=False)

    @staticmethod
    def from_pem(cert: bytes, key: bytes) -> Certificate:
        pem = cert.rstrip(b"\n") + b"\n" + key.rstrip(b"\n") + b"\n"
        return Certificate(name=hashlib.sha256(pem).hexdigest()[:32], pem=pem)


@dataclass(frozen=True)
class GlobalOptions:
    """Settings that apply to every server, from flags and the controller's ConfigMap."""

    http_port: int = 80
    https_port: int = 443
    listen_address: str = ""  # "" = all addresses
    worker_processes: str = "auto"
    proxy_connect_timeout: int = 5
    proxy_read_timeout: int = 60
    proxy_send_timeout: int = 60
    proxy_body_size: str = "1m"
    proxy_next_upstream_tries: int = 3
    upstream_keepalive: int = 320
    load_balance: str = ROUND_ROBIN  # one of LOAD_BALANCE
    access_log: bool = True
    ssl_redirect: bool = True
    worker_shutdown_timeout: int = 240
    # The client's real address (translate/realip.py): nothing is trusted unless listed here.
    use_proxy_protocol: bool = False
    use_forwarded_headers: bool = False
    compute_full_forwarded_for: bool = False
    forwarded_for_header: str = "X-Forwarded-For"
    proxy_real_ip_cidr: tuple[str, ...] = ()
    # The access log (logfields.py): JSON lines (--log-format json, log-format-escape-json) and the
    # fields it holds, names from logfields.ACCESS_FIELDS (log-format-upstream); () = the default.
    access_log_json: bool = False
    access_log_fields: tuple[str, ...] = ()
    # ingress-nginx's names and defaults (its ConfigMap keys hsts, hsts-max-age, ...).
    hsts: bool = True
    hsts_max_age: int = 31536000
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    ssl_protocols: str = "TLSv1.2 TLSv1.3"
    ssl_ciphers: str = (
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
        "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"
    )
    metrics: bool = True  # enable-metrics: per-route request metrics (log_by_lua, ingressctl.monitor)
    max_worker_open_files: int = 0  # 0: worker_connections * 2 + 1024 (ingress-nginx's rule)
    # Rate and connection limits (translate/annotations/limits.py): the status of a refused request, and the
    # global response rate limit in KB/s (0: none), as ingress-nginx's ConfigMap keys.
    limit_req_status_code: int = 503
    limit_conn_status_code: int = 503
    limit_rate: int = 0
    limit_rate_after: int = 0
    worker_connections: int = 16384


@dataclass(frozen=True)
class TenancyPolicy:
    """What one tenant (namespace) may ask of the shared data plane: host ownership, catch-alls and
    caps (ingressctl.translate.tenancy and tls enforce them). From flags and the ConfigMap."""

    # Cross-namespace sharing of a host (ingress-nginx's behaviour): for single-team clusters.
    allow_cross_namespace_hosts: bool = False
    # Namespaces whose Ingresses may serve hosts nobody named: a defaultBackend alone, or rules
    # without a host. Others are reported and ignored.
    catch_all_namespaces: tuple[str, ...] = ("default",)
    # Wildcards with fewer than two labels after `*.` that are allowed anyway (e.g. "*.internal").
    allowed_wildcards: tuple[str, ...] = ()
    max_rules_per_ingress: int = 100
    max_paths_per_rule: int = 100
    max_hosts: int = 20000  # named hosts in the whole configuration
    max_annotation_bytes: int = 65536  # keys and values of one Ingress's annotations
    max_object_bytes: int = 1048576  # one Ingress as JSON
    max_secret_bytes: int = 131072  # tls.crt plus tls.key, decoded
    max_chain_length: int = 10  # certificates in tls.crt


@dataclass(frozen=True)
class StaticConfig:
    servers: tuple[Server, ...]
    default_server: Server
    # Every certificate in use: those the Lua store serves by SNI (Server.certificate and the
    # default) and those nginx.conf names as files (the SSL context's, proxy-ssl-secret's).
    certificates: tuple[Certificate, ...]
    default_certificate: str  # Certificate.name, served by Lua to names without a certificate
    options: GlobalOptions
    # The file the one shared SSL context is built with (the self-signed fallback, fixed for the
    # controller's life, so that rotating the default certificate reloads nothing); "": the default.
    context_certificate: str = ""
    # http{}-level zones of the locations' rate and connection limits, one set per Ingress (sorted).
    limits: tuple[Limits, ...] = ()
    # The htpasswd files basic auth locations read (sorted by name).
    htpasswd: tuple[Htpasswd, ...] = ()

    @property
    def tls_context_certificate(self) -> str:
        return self.context_certificate or self.default_certificate


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Cookie:
    """The session affinity cookie (affinity: cookie and the session-cookie-* annotations)."""

    persistent: bool = False  # affinity-mode: persistent (else balanced)
    name: str = "INGRESSCOOKIE"
    path: str = "/"
    domain: str | None = None
    max_age: int | None = None
    expires: int | None = None  # seconds from the answer
    samesite: str | None = None  # None, Lax or Strict
    conditional_samesite_none: bool = False
    secure: bool | None = None  # None: Secure when the request came over HTTPS
    change_on_failure: bool = False

    def document(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.name != "INGRESSCOOKIE":
            out["name"] = self.name
        if self.path != "/":
            out["path"] = self.path
        for key in ("domain", "max_age", "expires", "samesite", "secure"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("conditional_samesite_none", "change_on_failure"):
            if getattr(self, key):
                out[key] = True
        return out


@dataclass(frozen=True, slots=True)
class Canary:
    """A canary Ingress's traffic policy for one route (ingress-nginx's canary-* annotations), checked
    per request by the balancer (lua/ingressctl/canary.lua) in this order: header, cookie, weight."""

    main: str  # the main Ingress's backend name
    backend: str  # the canary Ingress's backend name
    header: str | None = None  # canary-by-header
    header_value: str | None = None  # canary-by-header-value (exact; else `always`/`never`)
    header_pattern: str | None = None  # canary-by-header-pattern (PCRE, when no header_value)
    cookie: str | None = None  # canary-by-cookie (`always`/`never`)
    weight: int = 0  # canary-weight: this many requests out of weight_total go to the canary
    weight_total: int = 100  # canary-weight-total
    # affinity-canary-behavior: sticky (True, the default): when the main backend has cookie affinity, a
    # client sent to the canary is pinned there by that cookie; legacy (False): decided per request.
    sticky: bool = True

    def document(self) -> dict[str, object]:
        """Its JSON form for the Lua API (fields left unset are left out)."""
        out: dict[str, object] = {"main": self.main, "backend": self.backend}
        for key, value in (
            ("header", self.header),
            ("header_value", self.header_value),
            ("header_pattern", self.header_pattern),
            ("cookie", self.cookie),
        ):
            if value is not None:
                out[key] = value
        out["weight"] = self.weight
        out["weight_total"] = self.weight_total
        if not self.sticky:
            out["legacy"] = True
        return out


@dataclass(frozen=True, slots=True)
class Balancing:
    """How the Lua balancer picks an endpoint of a backend: load-balance, upstream-hash-by (and its
    subset), affinity. As ingress-nginx: affinity wins over upstream-hash-by, which wins over load-balance."""

    load_balance: str = ROUND_ROBIN  # one of LOAD_BALANCE
    hash_by: str = ""  # a validated upstream-hash-by expression
    subset_size: int = 0  # > 0: upstream-hash-by-subset with this size
    cookie: Cookie | None = None  # affinity: cookie

    @property
    def algorithm(self) -> str:
        if self.cookie is not None:
            return STICKY_PERSISTENT if self.cookie.persistent else STICKY_BALANCED
        if self.hash_by:
            return CHASH_SUBSET if self.subset_size else CHASH
        return self.load_balance

    def document(self) -> dict[str, object]:
        """The settings the configuration API stores with the backend (beside "algorithm")."""
        algorithm = self.algorithm
        out: dict[str, object] = {}
        if algorithm in (CHASH, CHASH_SUBSET):
            out["hash_by"] = self.hash_by
        if algorithm == CHASH_SUBSET:
            out["subset_size"] = self.subset_size
        if self.cookie is not None:
            out["cookie"] = self.cookie.document()
        return out


DEFAULT_BALANCING = Balancing()


@dataclass(frozen=True, slots=True)
class Backend:
    name: str  # "namespace/service:port"; a route with a canary: "<main>~<canary>~<canary Ingress ns/name>"
    endpoints: tuple[Endpoint, ...]
    algorithm: str = ROUND_ROBIN  # how the balancer picks an endpoint: one of ALGORITHMS
    # A route with a canary Ingress: no endpoints of its own; the balancer picks the main or the
    # canary backend per request.
    canary: Canary | None = None
    balancing: Balancing | None = None  # the algorithm's settings (None: none beyond the algorithm)

    def settings(self) -> dict[str, object]:
        return self.balancing.document() if self.balancing is not None else {}


@dataclass(frozen=True, slots=True)
class BackendSource:
    """How a backend was asked for: a Service's port, by number or name."""

    backend: str  # Backend.name
    namespace: str
    service: str
    port: int | str
    balancing: Balancing = DEFAULT_BALANCING


@dataclass(frozen=True)
class Configuration:
    static: StaticConfig
    backends: tuple[Backend, ...]
    # Ingresses this controller serves (accepted, even if partly degraded), for status updates.
    ingresses: tuple[ObjectRef, ...] = ()
    problems: tuple[Problem, ...] = ()
    # Where things came from (for reload reasons; never compared): the Ingresses of each host ("":
    # the default server), oldest first, and the ConfigMap the options were read from.
    origins: Mapping[str, tuple[ObjectRef, ...]] = field(default_factory=dict, compare=False, repr=False)
    configmap: ObjectRef | None = field(default=None, compare=False)
    # Lets an endpoint-only change re-resolve just the backends of the Services it touched.
    backend_sources: tuple[BackendSource, ...] = field(default=(), compare=False, repr=False)
    # The leaf's notAfter of each TLS Secret in use ("namespace/name", UTC), for the expiry metric.
    certificate_expiry: tuple[tuple[str, datetime.datetime], ...] = field(default=(), compare=False, repr=False)
    # The Ingresses whose TLS sections chose each certificate (by Certificate.name): what nginx
    # refusing that certificate file is traced back to.
    certificate_users: Mapping[str, tuple[ObjectRef, ...]] = field(default_factory=dict, compare=False, repr=False)
    # Route id (Location.route) -> its metrics labels; empty while metrics are off.
    routes: Mapping[str, RouteLabels] = field(default_factory=dict, compare=False, repr=False)

    def backends_document(self) -> dict[str, object]:
        """The JSON document the Lua configuration API accepts."""
        return {
            "backends": [
                {
                    "name": b.name,
                    **({"algorithm": b.algorithm} if b.algorithm != ROUND_ROBIN else {}),
                    **b.settings(),
                    "endpoints": [{"address": e.address, "port": e.port} for e in b.endpoints],
                    **({"canary": b.canary.document()} if b.canary is not None else {}),
                }
                for b in self.backends
            ]
        }


# --- annotation settings (ingressctl/translate/annotations) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Cors:
    """enable-cors and its cors-* settings: answered by nginx (preflight 204), ingress-nginx's defaults."""

    origins: tuple[str, ...] = ("*",)  # "*" or origins, "https://*.a.com" for one label
    methods: tuple[str, ...] = ("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS")
    headers: tuple[str, ...] = (
        "DNT",
        "Keep-Alive",
        "User-Agent",
        "X-Requested-With",
        "If-Modified-Since",
        "Cache-Control",
        "Content-Type",
        "Range",
        "Authorization",
    )
    expose: tuple[str, ...] = ()
    credentials: bool = True
    max_age: int = 1728000

    @property
    def origin_regex(self) -> str:
        """The allowed origins as one anchored regex (a `*.` label matches one DNS label)."""
        alternatives = []
        for origin in self.origins:
            scheme, _, rest = origin.partition("://")
            wildcard = rest.startswith("*.")
            rest = rest[2:] if wildcard else rest
            alternatives.append(scheme + "://" + ("[a-z0-9-]+\\." if wildcard else "") + rest.replace(".", "\\."))
        return "^(" + "|".join(alternatives) + ")$"


@dataclass(frozen=True, slots=True)
class ErrorPages:
    """custom-http-errors: these statuses from the Ingress's backends are answered by `backend`,
    which gets ingress-nginx's headers (X-Code, X-Format, X-Original-URI, X-Namespace, ...)."""

    codes: tuple[int, ...]
    backend: str  # backend name
    namespace: str  # the Ingress's
    ingress: str
    service: str  # the default backend's Service and port, for X-Service-Name/Port
    port: str

    def location(self, code: int) -> str:
        """The named location that answers `code`, one per Ingress and code (names are DNS-1123)."""
        return f"@ingressctl_error_{self.namespace}_{self.ingress}_{int(code)}"


@dataclass(frozen=True, slots=True)
class ExternalAuth:
    """auth-url and its auth-* settings: nginx's auth_request to an internal location of the server
    (ingress-nginx's headers), a 401 optionally answered by a redirect to `signin`. URLs, header names
    and the cache key are validated (translate/annotations/auth.py); `signin` and `cache_key` may hold
    only the variables auth.py lists, already renamed to ours."""

    url: str  # http(s) URL whose host is an IP address, a Service's cluster DNS name or "$host"
    host: str  # the URL's host[:port]: the Host header sent to it
    scheme: str = "http"
    path: str = "/"  # the URL's path and query
    service: str | None = None  # "namespace/name" when the host is a Service's cluster DNS name
    address: str | None = None  # that Service's cluster IP, once resolved
    method: str | None = None  # proxy_method
    signin: str | None = None  # the redirect URL (with its redirect parameter), else 401 goes to the client
    response_headers: tuple[str, ...] = ()  # copied from the auth response to the upstream request
    request_redirect: str | None = None  # X-Auth-Request-Redirect (default $request_uri)
    cache_key: str | None = None  # None: no caching
    cache_valid: tuple[tuple[str, ...], ...] = ()  # proxy_cache_valid arguments (("200", "202", "401", "5m"),)
    always_set_cookie: bool = False

    @property
    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]

    @property
    def loop(self) -> bool:
        """The auth service is served by this nginx (the URL's host is `$host`)."""
        return self.host == "$host"

    @property
    def unusable(self) -> bool:
        """A Service's name that did not resolve to a cluster IP: the paths answer 503."""
        return self.service is not None and self.address is None

    @property
    def name(self) -> str:
        """The URL's host name (no port): the TLS server name sent to an HTTPS Service."""
        return self.host.rsplit(":", 1)[0] if not self.host.endswith("]") else self.host

    @property
    def upstream(self) -> str:
        """What proxy_pass is given (not for `loop`): the URL, with a Service's name replaced by its cluster IP."""
        if self.service is None or self.address is None:
            return self.url
        port = self.host.rsplit(":", 1)[1] if ":" in self.host else ("443" if self.scheme == "https" else "80")
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{address}:{port}{self.path}"

    @property
    def location(self) -> str:
        """The internal location that asks the auth service; equal settings share one per server. The
        '|' is no Ingress path's character, so no path of any Ingress can be this location."""
        return f"/_ingressctl_auth|{self.digest}"

    @property
    def signin_location(self) -> str:
        return f"@ingressctl_signin_{self.digest}"


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """auth-tls-*: client certificates verified against a Secret's ca.crt (server scope)."""

    secret: str  # Secret name in the Ingress's namespace
    verify: str = "on"  # on, off, optional, optional_no_ca
    depth: int = 1
    error_page: str | None = None  # URL or path answering a missing or bad certificate
    pass_certificate: bool = False  # ssl-client-cert header to the endpoints
    match_cn: str | None = None  # regex over the subject DN, starting with CN=
    ca: str | None = None  # Certificate name of ca.crt once resolved; None: the host answers 503

    @property
    def unusable(self) -> bool:
        return self.ca is None


@dataclass(frozen=True, slots=True)
class Policy:
    """Location-scope annotation settings of one Ingress, printed in each of its locations.

    None (or empty) keeps the global setting; the template prints only what is set, so Ingresses
    without annotations get locations exactly as before (no per-location cost).
    """

    connect_timeout: int | None = None
    read_timeout: int | None = None
    send_timeout: int | None = None
    body_size: str | None = None
    next_upstream: tuple[str, ...] = ()
    next_upstream_tries: int | None = None
    next_upstream_timeout: int | None = None
    buffering: bool | None = None
    buffer_size: str | None = None
    buffers_number: int | None = None
    request_buffering: bool | None = None
    client_body_buffer_size: str | None = None
    http_version: str | None = None
    upstream_vhost: str | None = None
    connection_header: str | None = None
    x_forwarded_prefix: str | None = None
    proxy_redirect: tuple[str, str] | None = None  # (from, to)
    redirect: tuple[int, str] | None = None  # permanent/temporal redirect: (status, URL)
    allow: tuple[str, ...] = ()  # CIDRs allowed (then everything else denied)
    deny: tuple[str, ...] = ()  # CIDRs denied
    cors: Cors | None = None
    rewrite_target: str | None = None  # with $1..$9 of the location's regex
    protocol: str = "HTTP"  # HTTP, HTTPS, GRPC, GRPCS
    ssl_name: str | None = None  # proxy_ssl_name
    ssl_server_name: bool | None = None  # proxy_ssl_server_name
    errors: ErrorPages | None = None  # custom-http-errors, resolved against the default backend
    ssl_secret: str | None = None  # proxy-ssl-secret's Secret name (its namespace is the Ingress's)
    ssl_verify: bool | None = None  # proxy_ssl_verify
    ssl_verify_depth: int | None = None
    ssl_trusted: str | None = None  # Certificate name of the Secret's ca.crt, once resolved
    ssl_client: str | None = None  # Certificate name of its tls.crt + tls.key, once resolved
    external_auth: ExternalAuth | None = None  # auth-url
    limits: Limits | None = None  # limit-rps, limit-rpm, limit-connections, limit-rate...
    basic_auth: BasicAuth | None = None  # auth-type: basic

    @property
    def ssl_unusable(self) -> bool:
        """Verification or a client certificate was asked for and its Secret is missing or bad:
        the location answers 503 rather than talk to endpoints unverified."""
        return bool(self.ssl_verify and not self.ssl_trusted) or bool(
            self.ssl_secret and not self.ssl_client and not self.ssl_trusted
        )

    @property
    def auth_unusable(self) -> bool:
        """auth-url names a Service that did not resolve: the location answers 503, never unchecked."""
        return self.external_auth is not None and self.external_auth.unusable

    @property
    def scheme(self) -> str:
        return {"HTTP": "http", "HTTPS": "https", "GRPC": "grpc", "GRPCS": "grpcs"}[self.protocol]

    @property
    def upstream(self) -> str:
        """The nginx upstream: one per protocol (idle connections never cross protocols); TLS with
        this location's own settings uses one that keeps no idle connections, so none is shared."""
        if self.scheme == "http":
            return "ingressctl_upstream"
        own = self.ssl_trusted or self.ssl_client or self.ssl_verify or self.ssl_name or self.ssl_server_name
        return f"ingressctl_upstream_{self.scheme}" + ("_once" if own else "")

    @property
    def grpc(self) -> bool:
        return self.protocol in ("GRPC", "GRPCS")


@dataclass(frozen=True, slots=True)
class ServerPolicy:
    """Server-scope annotation settings: the host owner's (the oldest Ingress of the host) apply."""

    ssl_redirect: bool | None = None  # None: the global ssl-redirect option
    force_ssl_redirect: bool = False
    aliases: tuple[str, ...] = ()
    from_to_www: bool = False
    app_root: str | None = None
    client_auth: ClientAuth | None = None  # auth-tls-secret and its settings


@dataclass(frozen=True, slots=True)
class Limits:
    """An Ingress's rate and connection limits (limit-* annotations), as ingress-nginx has them: nginx's
    limit_req / limit_conn with zones of their own per Ingress (5 MB each, keyed by the client address,
    $binary_remote_addr; a client of `allowlist` gets an empty key, which nginx never limits; a burst of
    limit times burst_multiplier, without delay), and limit_rate on the response (KB/s)."""

    namespace: str  # the Ingress's: the zones are named after it
    ingress: str
    rps: int = 0  # 0: no such limit
    rpm: int = 0
    connections: int = 0
    burst_multiplier: int = 5
    rate: int | None = None  # limit_rate, KB/s (None: the global one)
    rate_after: int | None = None  # limit_rate_after, KB
    allowlist: tuple[str, ...] = ()  # CIDRs never limited

    ZONE_SIZE = "5m"

    @property
    def zoned(self) -> bool:
        return bool(self.rps or self.rpm or self.connections)

    @property
    def key_id(self) -> str:
        """ "" without an allowlist; else a name part for the allowlist's key variables (hex), shared by
        the Ingresses with the same allowlist."""
        if not self.allowlist:
            return ""
        return hashlib.sha256(",".join(self.allowlist).encode()).hexdigest()[:16]

    @property
    def key(self) -> str:
        """The zones' key: the client address, or its allowlist's variable (empty for listed clients)."""
        return f"$ingressctl_limit_{self.key_id}" if self.allowlist else "$binary_remote_addr"

    def zone(self, kind: str) -> str:
        """The zone of `kind` (conn, rps, rpm): namespace and name are DNS names, '_' separates them. The
        allowlist is part of the name: nginx refuses a reload that gives a zone another key variable, so a
        changed allowlist gets new zones."""
        suffix = f"_{self.key_id}" if self.allowlist else ""
        return f"{self.namespace}_{self.ingress}_{kind}{suffix}"


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """auth-type: basic: the realm and the htpasswd file (Htpasswd.name) of the auth-secret, set once
    translate read the Secret (an Ingress whose Secret is missing or gives no valid user is rejected,
    never served open, so a location never has a BasicAuth without a file)."""

    realm: str
    secret: str  # the Secret's name (the Ingress's namespace)
    secret_type: str = "auth-file"  # auth-file or auth-map
    file: str | None = None  # Htpasswd.name


@dataclass(frozen=True)
class Htpasswd:
    """An htpasswd file made of the validated lines of an auth Secret. Named by where it comes from
    (`source`: the Secret and how it is read), not by its content: nginx reads the file at each
    request, so a rotated Secret rewrites the same file and needs no reload."""

    name: str
    content: bytes = field(repr=False)

    @staticmethod
    def of(lines: tuple[str, ...], source: str) -> Htpasswd:
        content = "".join(f"{line}\n" for line in lines).encode()
        return Htpasswd(name=hashlib.sha256(source.encode()).hexdigest()[:32], content=content)
