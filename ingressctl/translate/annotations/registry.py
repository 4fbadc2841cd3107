"""The annotation registry: one declaration per annotation (name, value parser, scope, ConfigMap key of
its global default, default, accepted values, one-line doc, difference from ingress-nginx).

Everything else reads this table: translate (annotations.read), README's annotation table
(annotations.doc) and `ingressctl check`. Both prefixes are read with the same suffix and meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ingressctl.translate.annotations import auth
from ingressctl.translate.annotations import balancing as lb
from ingressctl.translate.annotations import values as v

OURS = "ingressctl.io/"
NGINX = "nginx.ingress.kubernetes.io/"
PREFIXES = (OURS, NGINX)

LOCATION = "location"  # applies to every path of the Ingress
SERVER = "server"  # applies to the host; the host's owner (its oldest Ingress) decides


@dataclass(frozen=True)
class Annotation:
    name: str  # the suffix after either prefix
    parse: Callable[[str], object]
    scope: str  # LOCATION or SERVER
    default: str  # what applies when unset ("" = nothing)
    accepts: str  # the accepted values, as README says them
    doc: str
    configmap: str = ""  # ConfigMap key that sets the global default
    difference: str = ""  # documented difference from ingress-nginx ("" = none)
    shared_only: bool = False  # the difference shows only when other Ingresses serve the same host


def _a(
    name: str,
    parse: Callable[[str], object],
    accepts: str,
    doc: str,
    *,
    scope: str = LOCATION,
    default: str = "",
    configmap: str = "",
    difference: str = "",
    shared_only: bool = False,
) -> Annotation:
    return Annotation(name, parse, scope, default, accepts, doc, configmap, difference, shared_only)


_SECONDS = "seconds, 1-3600"
_SIZE = "nginx size (`8m`, `512k`, `0`)"
_BOOL = "`true` / `false`"
_ONOFF = "`on` / `off`"
_URL = "http(s) URL, at most 1024 characters"
_MAX_RATE = 1000000
_MAX_KB = 10485760  # 10 GB

ANNOTATIONS: tuple[Annotation, ...] = (
    # Proxy behaviour
    _a(
        "proxy-connect-timeout",
        v.seconds,
        _SECONDS,
        "Seconds to connect to an endpoint.",
        default="5",
        configmap="proxy-connect-timeout",
    ),
    _a(
        "proxy-read-timeout",
        v.seconds,
        _SECONDS,
        "Seconds between two reads from an endpoint.",
        default="60",
        configmap="proxy-read-timeout",
    ),
    _a(
        "proxy-send-timeout",
        v.seconds,
        _SECONDS,
        "Seconds between two writes to an endpoint.",
        default="60",
        configmap="proxy-send-timeout",
    ),
    _a(
        "proxy-body-size",
        v.size,
        _SIZE,
        "Largest request body (413 above it).",
        default="1m",
        configmap="proxy-body-size",
    ),
    _a(
        "proxy-next-upstream",
        v.next_upstream,
        "space-separated: error timeout invalid_header http_500 http_502 http_503 http_504 http_403 http_404 "
        "http_429 non_idempotent, or off",
        "When to try the next endpoint.",
        default="error timeout",
    ),
    _a(
        "proxy-next-upstream-tries",
        v.integer(0, 10),
        "0-10 (0 = no limit)",
        "Tries over endpoints.",
        default="3",
        configmap="proxy-next-upstream-tries",
    ),
    _a(
        "proxy-next-upstream-timeout",
        v.seconds_or_zero,
        "seconds, 0-3600 (0 = no limit)",
        "Time limit for trying further endpoints.",
        default="0",
    ),
    _a(
        "proxy-buffering",
        v.on_off,
        _ONOFF,
        "Buffer responses from the endpoint (off: stream them to the client as they come).",
        default="on (nginx's; ingress-nginx's ConfigMap default is off)",
    ),
    _a("proxy-buffer-size", v.size, _SIZE, "Buffer for the response head.", default="nginx's (4k/8k)"),
    _a("proxy-buffers-number", v.integer(3, 64), "3-64", "Number of response buffers.", default="4"),
    _a("proxy-request-buffering", v.on_off, _ONOFF, "Buffer the request body before proxying.", default="on"),
    _a(
        "client-body-buffer-size",
        v.size,
        _SIZE,
        "Request body buffer (bigger bodies go to a temp file).",
        default="nginx's (8k/16k)",
    ),
    _a("proxy-http-version", v.http_version, "`1.0` / `1.1`", "HTTP version to the endpoint.", default="1.1"),
    _a(
        "upstream-vhost",
        v.host_port,
        "host name with optional `:port`",
        "Host header sent to the endpoint.",
        default="the request's Host",
    ),
    _a(
        "connection-proxy-header",
        v.token,
        "header token (`keep-alive`, `close`)",
        "Connection header sent to the endpoint.",
        default="upgrade when the client upgrades, else none",
    ),
    _a("x-forwarded-prefix", v.plain_path, "plain path", "Adds X-Forwarded-Prefix with this value."),
    _a(
        "proxy-redirect-from",
        v.url_or_path,
        "path or http(s) URL",
        "Rewrites this prefix of Location/Refresh headers (with proxy-redirect-to).",
        default="off",
    ),
    _a("proxy-redirect-to", v.url_or_path, "path or http(s) URL", "Replacement for proxy-redirect-from."),
    _a("proxy-ssl-name", v.host_port, "host name", "TLS server name checked and sent to HTTPS/GRPCS endpoints."),
    _a("proxy-ssl-server-name", v.on_off, _ONOFF, "Send SNI to HTTPS/GRPCS endpoints.", default="off"),
    _a(
        "proxy-ssl-secret",
        v.secret_ref,
        "`name` or `namespace/name` of a kubernetes.io/tls Secret of the Ingress's namespace",
        "ca.crt verifies HTTPS/GRPCS endpoints (with proxy-ssl-verify); tls.crt/tls.key is the client "
        "certificate sent to them.",
        difference="the Secret must be of type kubernetes.io/tls; one in another namespace rejects the Ingress",
    ),
    _a("proxy-ssl-verify", v.on_off, _ONOFF, "Verify the endpoint's certificate against ca.crt.", default="off"),
    _a("proxy-ssl-verify-depth", v.integer(1, 10), "1-10", "Certificate chain depth checked.", default="1"),
    _a(
        "backend-protocol",
        v.backend_protocol,
        "`HTTP`, `HTTPS`, `GRPC`, `GRPCS` (`AJP`, `FCGI` rejected)",
        "Protocol spoken to the endpoints.",
        default="HTTP",
    ),
    # Redirects
    _a("permanent-redirect", v.url, _URL, "Answers every path of the Ingress with a redirect to this URL."),
    _a("permanent-redirect-code", v.redirect_code(301), "3xx status", "Status of permanent-redirect.", default="301"),
    _a(
        "temporal-redirect",
        v.url,
        _URL,
        "Answers every path of the Ingress with a temporary redirect (wins over permanent-redirect).",
    ),
    _a("temporal-redirect-code", v.redirect_code(302), "3xx status", "Status of temporal-redirect.", default="302"),
    _a(
        "ssl-redirect",
        v.boolean,
        _BOOL,
        "Redirect HTTP to HTTPS (308) when the host has TLS.",
        scope=SERVER,
        default="true",
        configmap="ssl-redirect",
        difference="server scope: the host's owner decides for all its paths (ingress-nginx: per Ingress)",
        shared_only=True,
    ),
    _a(
        "force-ssl-redirect",
        v.boolean,
        _BOOL,
        "Redirect HTTP to HTTPS (308) even without TLS.",
        scope=SERVER,
        default="false",
        difference="server scope: the host's owner decides for all its paths",
        shared_only=True,
    ),
    _a(
        "from-to-www-redirect",
        v.boolean,
        _BOOL,
        "Redirect www.<host> to <host> (or the reverse) with 308.",
        scope=SERVER,
        default="false",
    ),
    _a("app-root", v.plain_path, "plain path", "Redirect `/` to this path (302).", scope=SERVER),
    # Paths
    _a(
        "use-regex",
        v.boolean,
        _BOOL,
        "Paths of this Ingress are case-insensitive regexes (`~*`).",
        default="false",
        difference="applies to this Ingress's paths only (ingress-nginx: every path of the host); "
        "a safe regex subset (no braces or backslashes except `\\.`)",
        shared_only=True,
    ),
    _a(
        "rewrite-target",
        v.rewrite_target,
        "path or URL with `$1`..`$9`",
        "Rewrites the matched path before proxying (implies use-regex, as ingress-nginx).",
    ),
    # Errors and defaults
    _a(
        "default-backend",
        v.service_name,
        "Service name (same namespace; its first port)",
        "Serves the Ingress's hosts' unmatched paths and its custom-http-errors.",
        difference="a path whose Service has no ready endpoint still answers 503 (ingress-nginx: this backend)",
    ),
    _a(
        "custom-http-errors",
        v.status_codes,
        "comma-separated statuses 400-599",
        "These statuses from the backend are answered by default-backend (else --default-backend-service), "
        "with X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port",
    ),
    _a(
        "service-upstream",
        v.boolean,
        _BOOL,
        "Proxy to the Service's cluster IP instead of its endpoints.",
        default="false",
    ),
    _a(
        "preserve-trailing-slash",
        v.boolean,
        _BOOL,
        "Keep a trailing slash in the HTTPS redirect.",
        default="false",
        difference="ingressctl's redirects always keep the URI as sent (trailing slash included)",
    ),
    # Hosts
    _a(
        "server-alias",
        v.hosts,
        "comma-separated host names",
        "More names for the Ingress's hosts.",
        scope=SERVER,
        difference="an alias another Ingress already serves as a host is reported and skipped",
        shared_only=True,
    ),
    # Client address policy
    _a(
        "whitelist-source-range",
        v.cidrs,
        "comma-separated CIDRs (IPv4, IPv6)",
        "Only these client addresses are served (others get 403).",
    ),
    _a(
        "allowlist-source-range",
        v.cidrs,
        "comma-separated CIDRs (IPv4, IPv6)",
        "Newer name of whitelist-source-range (wins if both are set).",
    ),
    _a("denylist-source-range", v.cidrs, "comma-separated CIDRs (IPv4, IPv6)", "These client addresses get 403."),
    # Balancing: decided per backend (Service port) by the oldest Ingress that sets any of them (as
    # ingress-nginx: the first wins), sent to the Lua balancer with the backend (a change is no reload,
    # except switching ewma on or off)
    _a(
        "load-balance",
        lb.load_balance,
        "`round_robin`, `ewma`",
        "How the balancer picks an endpoint (ewma: the lower peak-EWMA response time of two random ones).",
        default="round_robin",
        configmap="load-balance",
    ),
    _a(
        "upstream-hash-by",
        lb.hash_by,
        "text with `$remote_addr`, `$request_uri`, `$http_<name>`, `$cookie_<name>`, `$arg_<name>` (or "
        "`${name}`); letters, digits and `._:/@,=~+|-` between them",
        "Consistent hash of this key picks the endpoint (wins over load-balance); N to N+1 endpoints moves "
        "about 1/(N+1) of the keys.",
    ),
    _a(
        "upstream-hash-by-subset",
        v.boolean,
        _BOOL,
        "The hash picks a subset of endpoints; requests go to a random one of it.",
        default="false",
    ),
    _a("upstream-hash-by-subset-size", v.integer(1, 64), "1-64", "Endpoints per subset.", default="3"),
    _a(
        "affinity",
        lb.affinity,
        "`cookie`",
        "Sticky sessions: a cookie keeps a client on one endpoint (wins over upstream-hash-by); an endpoint "
        "that left is replaced, never an error.",
        difference="every path to the Service port is sticky, also other Ingresses' (ingress-nginx: only this "
        "Ingress's paths set the cookie)",
        shared_only=True,
    ),
    _a(
        "affinity-mode",
        lb.affinity_mode,
        "`balanced`, `persistent`",
        "balanced: the cookie's key is hashed consistently (scaling moves about 1/(N+1) of the sessions); "
        "persistent: the cookie names its endpoint (scaling moves none).",
        default="balanced",
    ),
    _a("session-cookie-name", lb.cookie_name, "1-64 letters, digits, `_.-`", "Cookie name.", default="INGRESSCOOKIE"),
    _a(
        "session-cookie-path",
        lb.cookie_path,
        "plain path",
        "Cookie Path.",
        default="/",
        difference="the default is `/` (ingress-nginx: the location's path)",
    ),
    _a("session-cookie-domain", lb.cookie_domain, "host name, optionally with a leading `.`", "Cookie Domain."),
    _a("session-cookie-max-age", v.integer(1, lb.MAX_COOKIE_SECONDS), "seconds", "Cookie Max-Age."),
    _a("session-cookie-expires", v.integer(1, lb.MAX_COOKIE_SECONDS), "seconds", "Cookie Expires, from the answer."),
    _a("session-cookie-samesite", lb.samesite, "`None`, `Lax`, `Strict`", "Cookie SameSite."),
    _a(
        "session-cookie-conditional-samesite-none",
        v.boolean,
        _BOOL,
        "Omit SameSite=None for browsers that reject it (ingress-nginx's list).",
        default="false",
    ),
    _a(
        "session-cookie-secure",
        v.boolean,
        _BOOL,
        "Cookie Secure.",
        default="Secure when the request came over HTTPS",
    ),
    _a(
        "session-cookie-change-on-failure",
        v.boolean,
        _BOOL,
        "After a failed try, the session moves to the endpoint that answers (new cookie); otherwise only that "
        "request goes elsewhere.",
        default="false",
        difference="without it, the retry goes to another endpoint (ingress-nginx retries the cookie's own)",
    ),
    # CORS
    _a("enable-cors", v.boolean, _BOOL, "Answer CORS preflights (204) and add CORS headers.", default="false"),
    _a(
        "cors-allow-origin",
        v.origins,
        "`*` or comma-separated origins (`https://*.a.com` for one label)",
        "Origins allowed.",
        default="*",
    ),
    _a(
        "cors-allow-methods",
        v.methods,
        "comma-separated method names",
        "Access-Control-Allow-Methods.",
        default="GET, PUT, POST, DELETE, PATCH, OPTIONS",
    ),
    _a(
        "cors-allow-headers",
        v.headers,
        "comma-separated header names",
        "Access-Control-Allow-Headers.",
        default="DNT, Keep-Alive, User-Agent, X-Requested-With, If-Modified-Since, Cache-Control, Content-Type, "
        "Range, Authorization",
    ),
    _a(
        "cors-expose-headers", v.expose_headers, "`*` or comma-separated header names", "Access-Control-Expose-Headers."
    ),
    _a("cors-allow-credentials", v.boolean, _BOOL, "Access-Control-Allow-Credentials.", default="true"),
    _a("cors-max-age", v.integer(0, 315360000), "seconds", "Access-Control-Max-Age.", default="1728000"),
    # Authentication: external (auth_request) and client certificates
    _a(
        "auth-url",
        auth.auth_url,
        "http(s) URL whose host is an IP address, a Service's `<name>.<namespace>.svc[.cluster.local]` or "
        "`$host` (no other names or variables)",
        "Each request is first sent (without its body) to this URL: 2xx lets it through, 401/403 answer the "
        "client, anything else 500. Headers sent: X-Original-URL, X-Original-URI, X-Original-Method, X-Scheme, "
        "X-Auth-Request-Redirect, X-Real-IP, X-Forwarded-For, X-Request-ID, X-Sent-From and the client's.",
        difference="a Service's cluster DNS name is replaced by its cluster IP, `$host` is asked through this "
        "nginx; other DNS names and variables are refused (nginx resolves no name)",
    ),
    _a("auth-method", auth.method, ", ".join(auth.METHODS), "Method of the auth request.", default="the request's"),
    _a(
        "auth-signin",
        auth.signin,
        "http(s) URL; variables `$host`, `$http_host`, `$best_http_host`, `$scheme`, `$pass_access_scheme`, "
        "`$request_uri`, `$escaped_request_uri` only",
        "A 401 from auth-url becomes a 302 to this URL, with the original URL in the redirect parameter.",
    ),
    _a(
        "auth-signin-redirect-param",
        auth.redirect_param,
        "query parameter name",
        "Parameter of auth-signin that carries the original URL (unless auth-signin sets it itself).",
        default="rd",
    ),
    _a(
        "auth-response-headers",
        v.headers,
        "comma-separated header names",
        "Headers of the auth response copied to the request sent to the endpoints.",
    ),
    _a(
        "auth-request-redirect",
        v.url_or_path,
        "path or http(s) URL",
        "X-Auth-Request-Redirect sent to auth-url.",
        default="the request URI",
    ),
    _a(
        "auth-cache-key",
        auth.cache_key,
        "text with `$remote_user`, `$remote_addr`, `$host`, `$uri`, `$request_uri`, `$http_<name>`, "
        "`$cookie_<name>`, `$arg_<name>`",
        "Caches auth responses under this key (per host and auth-url).",
    ),
    _a(
        "auth-cache-duration",
        auth.cache_duration,
        "comma-separated `[statuses] time` (`200 202 401 5m`)",
        "How long each auth status is cached (with auth-cache-key).",
        default=auth.DEFAULT_CACHE_DURATION,
    ),
    _a(
        "auth-always-set-cookie",
        v.boolean,
        _BOOL,
        "Send the auth response's Set-Cookie on every answer, errors included (else on 2xx/3xx only).",
        default="false",
    ),
    _a(
        "auth-tls-secret",
        v.secret_ref,
        "`name` or `namespace/name` of a kubernetes.io/tls or Opaque Secret of the Ingress's namespace with a `ca.crt`",
        "Verify client certificates against the Secret's ca.crt.",
        scope=SERVER,
        difference="server scope: the host's owner decides; the Secret must be of type kubernetes.io/tls or "
        "Opaque (ingress-nginx: any type); one of another namespace rejects the Ingress; a missing or bad one "
        "makes the host answer 503",
    ),
    _a(
        "auth-tls-verify-client",
        auth.verify_client,
        "`on` / `off` / `optional` / `optional_no_ca`",
        "Whether a client certificate is required (`on`: 400 without a valid one).",
        scope=SERVER,
        default="on",
    ),
    _a("auth-tls-verify-depth", v.integer(1, 10), "1-10", "Client certificate chain depth.", scope=SERVER, default="1"),
    _a(
        "auth-tls-error-page",
        v.url_or_path,
        "path or http(s) URL",
        "Where a missing or invalid client certificate is redirected (instead of 400).",
        scope=SERVER,
    ),
    _a(
        "auth-tls-pass-certificate-to-upstream",
        v.boolean,
        _BOOL,
        "Send the client certificate (URL-encoded PEM) in the ssl-client-cert header.",
        scope=SERVER,
        default="false",
    ),
    _a(
        "auth-tls-match-cn",
        auth.match_cn,
        "`CN=` and a regex (no whitespace)",
        "Client certificates whose subject DN does not match get 403.",
        scope=SERVER,
    ),
    # Canary (a canary Ingress adds no route: it takes requests of the main Ingress's host and path)
    _a(
        "canary",
        v.boolean,
        _BOOL,
        "This Ingress is a canary: requests for the same host and path as a main Ingress (of the host's "
        "namespace) that match the canary-* rules go to its Service; its other annotations, TLS and "
        "defaultBackend are not used; a path with no main Ingress is reported and not served.",
        default="false",
    ),
    _a(
        "canary-by-header",
        v.header_name,
        "header name (letters, digits, `-`)",
        "Requests with this header set to `always` go to the canary, `never` to the main Ingress (checked first).",
    ),
    _a(
        "canary-by-header-value",
        v.header_value,
        "printable text, at most 256 characters",
        "With canary-by-header: the value that sends a request to the canary (instead of `always`); "
        "other values fall through to the cookie and the weight.",
    ),
    _a(
        "canary-by-header-pattern",
        v.header_pattern,
        "regular expression, at most 256 characters, a safe subset: no backreferences, lookarounds, inline "
        "flags, braces or quantified groups (others are invalid: ingress-nginx would serve the canary and send "
        "such requests to the main Ingress)",
        "With canary-by-header and no canary-by-header-value: a header value matching it (PCRE, case-sensitive) "
        "sends the request to the canary.",
    ),
    _a(
        "canary-by-cookie",
        v.cookie_name,
        "cookie name",
        "A cookie of this name set to `always` sends the request to the canary, `never` to the main Ingress "
        "(checked after the header).",
    ),
    _a(
        "canary-weight",
        v.integer(0, 1000000),
        "0 to canary-weight-total (above it is invalid: ingress-nginx would send the canary everything)",
        "This many requests out of canary-weight-total go to the canary (checked last; 0 none, the total all).",
        default="0",
    ),
    _a(
        "canary-weight-total",
        v.integer(1, 1000000),
        "1-1000000 (below 100 counts as 100, as in ingress-nginx)",
        "The total canary-weight is out of.",
        default="100",
    ),
    # Rate and connection limits (nginx's limit_req, limit_conn, limit_rate; zones per Ingress)
    _a(
        "limit-rps",
        v.integer(0, _MAX_RATE),
        f"0-{_MAX_RATE} (0 = none)",
        "Requests per second per client address; excess answered with limit-req-status-code.",
        default="0",
    ),
    _a(
        "limit-rpm",
        v.integer(0, _MAX_RATE),
        f"0-{_MAX_RATE} (0 = none)",
        "Requests per minute per client address; excess answered with limit-req-status-code.",
        default="0",
    ),
    _a(
        "limit-connections",
        v.integer(0, _MAX_RATE),
        f"0-{_MAX_RATE} (0 = none)",
        "Concurrent connections per client address; excess answered with limit-conn-status-code.",
        default="0",
    ),
    _a(
        "limit-burst-multiplier",
        v.integer(1, 100),
        "1-100",
        "Burst allowed above limit-rps/limit-rpm (without delay): the limit times this.",
        default="5",
    ),
    _a(
        "limit-rate",
        v.integer(0, _MAX_KB),
        f"KB per second, 0-{_MAX_KB} (0 = none)",
        "Response rate to the client, per request (nginx applies it only with proxy-buffering on, the default).",
        default="0",
        configmap="limit-rate",
    ),
    _a(
        "limit-rate-after",
        v.integer(0, _MAX_KB),
        f"KB, 0-{_MAX_KB}",
        "Response bytes sent at full speed before limit-rate applies.",
        default="0",
        configmap="limit-rate-after",
    ),
    _a(
        "limit-whitelist",
        v.cidrs,
        "comma-separated CIDRs (IPv4, IPv6)",
        "Client addresses never limited by limit-rps, limit-rpm and limit-connections.",
    ),
    _a(
        "limit-allowlist",
        v.cidrs,
        "comma-separated CIDRs (IPv4, IPv6)",
        "Newer name of limit-whitelist (wins if both are set).",
    ),
    # Authentication: basic
    _a(
        "auth-type",
        v.auth_type,
        "`basic` (`digest` rejected)",
        "HTTP basic authentication with the users of auth-secret (401 without valid credentials).",
    ),
    _a(
        "auth-secret",
        v.secret_ref,
        "`name` or `namespace/name` of a Secret of the Ingress's namespace",
        "The users and password hashes (see auth-secret-type); a missing Secret rejects the Ingress.",
        difference="only the hash schemes listed under Basic authentication; other lines are skipped and reported",
    ),
    _a(
        "auth-secret-type",
        v.choice("auth-file", "auth-map"),
        "`auth-file` / `auth-map`",
        "auth-file: key `auth` holds an htpasswd file; auth-map: each key a user, its value the hash.",
        default="auth-file",
    ),
    _a(
        "auth-realm",
        v.realm,
        "up to 128 letters, digits, spaces and `.,:!?@()/_+=*&%~-`",
        "Realm sent in WWW-Authenticate.",
    ),
)

BY_NAME = {a.name: a for a in ANNOTATIONS}

# Snippets are refused for good: the Ingress is rejected (a snippet may be a security control, so it is
# never served without it). The safe annotation that does the same job, where one exists.
SNIPPET_ALTERNATIVES = {
    "configuration-snippet": "the dedicated annotations (proxy-*-timeout, proxy-body-size, enable-cors, "
    "x-forwarded-prefix, upstream-vhost, whitelist-source-range, rewrite-target ...)",
    "server-snippet": "server-alias, app-root, from-to-www-redirect, permanent-redirect or temporal-redirect",
    "auth-snippet": "",
    "stream-snippet": "",
    "modsecurity-snippet": "",
}


def snippet_reason(name: str) -> str:
    alternative = SNIPPET_ALTERNATIVES.get(name, "")
    text = "snippet annotations are refused: no object may carry raw nginx or Lua configuration"
    return f"{text}; use {alternative} instead" if alternative else f"{text} (no safe equivalent exists)"


def is_snippet(name: str) -> bool:
    return name.endswith("-snippet") or name == "snippet"
