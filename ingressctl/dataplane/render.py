"""Render: StaticConfig -> nginx.conf text through templates/nginx.conf.j2.

Values reach the template already validated; the `q` filter still checks every string against an
allowlist and emits it double-quoted, so nothing from an object can end a token or a block.
"""

from __future__ import annotations

import hashlib
import re
import resource
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ingressctl.config import GlobalOptions, Server, StaticConfig
from ingressctl.dataplane.paths import Paths, templates_dir
from ingressctl.dataplane.version import OLDEST, NginxVersion
from ingressctl.logfields import ACCESS_FIELDS, access_log_format
from ingressctl.translate.realip import header_variable

# Quoted-string content: no quote, whitespace, control character, ';', '{', '}', '#' or '$' (nginx
# expands variables inside quotes in set, return, ssl_certificate...); a backslash only to escape
# a dot, and a '$' only as the end anchor of a `~` server_name regex.
_QUOTABLE = re.compile(r'(?:[^"\\\s;{}#$\x00-\x1f\x7f]|\\\.)*')


class UnsafeValue(ValueError):
    pass


def quote(value: object, *, semicolons: bool = False) -> str:
    """Checks and double-quotes a value. `semicolons` only for the controller's own lua_package_path."""
    text = str(value)
    checked = text.replace(";", "") if semicolons else text
    if checked.startswith("~") and checked.endswith("$"):
        checked = checked[:-1]  # the end anchor of a server_name regex
    if not _QUOTABLE.fullmatch(checked):
        raise UnsafeValue(f"refusing to emit {text!r} into nginx.conf")
    return f'"{text}"'


# In regex contexts only (a `~*` location, an `if` match, a rewrite's pattern: nginx expands no
# variables there): the same characters, plus '$' (an end anchor) and the regex syntax '()|[]^?*+'.
_REGEX = re.compile(r'(?:[^"\\\s;{}#\x00-\x1f\x7f]|\\\.)*')
# A rewrite's replacement: quotable characters and the capture groups $1..$9 (no other variable).
_REWRITE = re.compile(r'(?:[^"\\\s;{}#$\x00-\x1f\x7f]|\$[1-9])*')


def _quoter(pattern: re.Pattern[str], what: str, doc: str) -> Callable[[object], str]:
    """A filter that checks a value against `pattern` and double-quotes it."""

    def check(value: object) -> str:
        text = str(value)
        if not pattern.fullmatch(text):
            raise UnsafeValue(f"refusing to emit {what}{text!r} into nginx.conf")
        return f'"{text}"'

    check.__doc__ = doc
    return check


quote_regex = _quoter(_REGEX, "regex ", "Checks and double-quotes a regular expression (regex paths and origins).")
quote_rewrite = _quoter(_REWRITE, "rewrite target ", "Checks and double-quotes a rewrite replacement ($1..$9 only).")
# Text shown to people (auth-realm): quotable characters and single spaces between words; no variables.
quote_text = _quoter(
    re.compile(r'(?:[^"\\\s;{}#$\x00-\x1f\x7f]| (?! ))*'), "text ", "Checks and double-quotes text with spaces."
)


# A value that may hold variables (auth-signin, auth-cache-key): quotable characters and only these
# variables (translate/annotations/auth.py maps ingress-nginx's names to them), each ending the name.
_VARIABLE = (
    r"\$(?:scheme|host|ingressctl_host|request_uri|ingressctl_escaped_request_uri|remote_user|remote_addr|uri"
    r"|(?:http|cookie|arg)_[A-Za-z0-9_]+)(?![A-Za-z0-9_])"
)
_WITH_VARIABLES = re.compile(r'(?:[^"\\\s;{}#$\x00-\x1f\x7f]|' + _VARIABLE + ")*")


quote_variables = _quoter(
    _WITH_VARIABLES, "", "Checks and double-quotes a value whose only variables are the documented ones."
)


def uses_auth_cache(servers: Iterable[Server]) -> bool:
    """Whether a location caches auth-url answers: nginx.conf then declares the cache."""
    return any(
        loc.policy.external_auth.cache_key
        for server in servers
        for loc in server.locations
        if loc.policy is not None and loc.policy.external_auth is not None
    )


_SEPARATOR = "\n#@ingressctl-server-end@\n"  # cannot occur in a block: `q` refuses '#'
_DIGEST_PLACEHOLDER = "0000digest0000"


@dataclass(frozen=True)
class Rendered:
    text: str
    digest: str  # hash of the text; the running nginx answers it on /configuration/digest


def open_files_limit() -> int | None:
    """The most open files nginx's workers may ask for: the hard limit we run under (root without
    CAP_SYS_RESOURCE, as in a container, cannot raise it either). Asking for more logs an alert per
    worker and changes nothing."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else hard


class Renderer:
    def __init__(
        self,
        *,
        paths: Paths,
        user: str | None = None,
        directory: Path | None = None,
        version: NginxVersion = OLDEST,
        max_open_files: int | None = None,
    ) -> None:
        """`max_open_files`: the most worker_rlimit_nofile may ask for (open_files_limit() where
        nginx will run; None: no cap), so that rendering alone never depends on the environment."""
        self.paths = paths
        self.user = user
        self.version = version  # of the nginx that will load the text: which directive forms it takes
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory or templates_dir())),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["q"] = quote
        env.globals["open_files_limit"] = max_open_files
        env.filters["qre"] = quote_regex
        env.filters["qrw"] = quote_rewrite
        env.filters["qtext"] = quote_text
        env.filters["qv"] = quote_variables
        self._template = env.get_template("nginx.conf.j2")
        self._server_template = env.get_template("server.conf.j2")
        # Server blocks of the last render, reused while the Server is unchanged (and the options
        # and the SSL context's certificate, for which they were rendered): with thousands of hosts, a
        # change of one re-renders one block. Servers hash cheaply (computed once).
        self._blocks: dict[Server, str] = {}
        self._blocks_for: tuple[GlobalOptions, str] | None = None

    def render(self, static: StaticConfig) -> Rendered:
        """nginx.conf for the static part, and the digest the configuration API will answer."""
        options = static.options
        default = static.tls_context_certificate
        if self._blocks_for != (options, default):
            self._blocks, self._blocks_for = {}, (options, default)
        previous = self._blocks
        servers = (static.default_server, *static.servers)
        missing = [s for s in dict.fromkeys(servers) if s not in previous]
        # In chunks: one Jinja render of 10,000 servers holds a million fragments at once.
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            text = self._server_template.render(
                servers=chunk,
                o=options,
                paths=self.paths,
                listen=_listen(options),
                separator=_SEPARATOR,
                context_certificate=default,
                http2_directive=self.version.http2_directive,
            )
            previous.update(zip(chunk, text.split(_SEPARATOR), strict=False))
        self._blocks = blocks = {s: previous[s] for s in servers}
        # The template's pieces (the server blocks themselves, not copies), hashed one by one: the
        # whole text is built once, not also encoded and copied again to put the digest in.
        pieces = list(
            self._template.generate(
                static=static,
                o=options,
                paths=self.paths,
                user=self.user,
                server_blocks=blocks.values(),
                digest=_DIGEST_PLACEHOLDER,
                access_log_format=_access_log_format(options),
                **realip_context(options),
                auth_cache=uses_auth_cache(servers),
                http2_directive=self.version.http2_directive,
            )
        )
        hasher = hashlib.sha256()
        for piece in pieces:
            hasher.update(piece.encode())
        digest = hasher.hexdigest()[:16]
        pieces = [p.replace(_DIGEST_PLACEHOLDER, digest) if _DIGEST_PLACEHOLDER in p else p for p in pieces]
        return Rendered(text="".join(pieces), digest=digest)


_CHUNK = 500


def _listen(options: GlobalOptions) -> Callable[[int], str]:
    address = options.listen_address

    def listen(port: int) -> str:
        if not address:
            return str(int(port))
        return quote(f"[{address}]:{int(port)}" if ":" in address else f"{address}:{int(port)}")

    return listen


def realip_context(options: GlobalOptions) -> dict[str, object]:
    """What the template needs for the client's real address: whether the realip module rewrites
    $remote_addr (only with trusted hops), and whether X-Forwarded-For carries the whole chain."""
    realip = bool(options.proxy_real_ip_cidr) and (options.use_forwarded_headers or options.use_proxy_protocol)
    full_chain = realip and options.use_forwarded_headers and options.compute_full_forwarded_for
    return {
        "realip": realip,
        "full_chain": full_chain,
        "chain_variable": header_variable(options.forwarded_for_header),
    }


def _access_log_format(options: GlobalOptions) -> str:
    """The access log's format from named fields; "" keeps the classic text line."""
    if not options.access_log_json and not options.access_log_fields:
        return ""
    fields = options.access_log_fields or tuple(ACCESS_FIELDS)
    return access_log_format(fields, json_lines=options.access_log_json)
