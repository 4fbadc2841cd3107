"""Tracing what `nginx -t` refused back to the Ingresses responsible (pure, no I/O).

nginx names what it refused in two ways: a certificate file (`SSL_CTX_use_certificate("<certs>/
<name>.pem") failed`), which is a Certificate of the Configuration and so the Ingresses whose TLS
sections chose it; or a file and line (`... in <file>:<line>`), which lies in a server block of the
rendered text, whose server_name is a host and so the Ingresses of that host (the newest first: the
older ones ran before it came). What cannot be traced to an Ingress (the default certificate, the
http block) has no culprits: the caller then keeps the last good configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingressctl.config import Configuration, ObjectRef

_CERT_FILE = re.compile(r"/([0-9a-f]{32})\.pem\b")
_FILE_LINE = re.compile(r" in (\S+):(\d+)\s*$", re.M)
_SERVER_START = re.compile(r"^    server \{$")
_SERVER_NAME = re.compile(r'^        server_name "([^"]*)"')  # the first name: aliases may follow
_EMERG = re.compile(r"\[(?:emerg|alert|crit)\] (?:[0-9#]+: )?(.*)")
_DIRECTORY = re.compile(r"(?<=[\"\s(])/[^\"\s]*/(?=[^/\"\s]+)")  # the controller's paths: not for tenants
MAX_REASON = 300


@dataclass(frozen=True)
class Trace:
    culprits: tuple[ObjectRef, ...]  # empty: nothing in the configuration could be blamed
    reason: str  # nginx's own words, one line


def reason(output: str) -> str:
    """nginx's first error line, without its timestamp, pid and directories (file names stay),
    at most MAX_REASON characters: it reaches Events and logs that tenants read."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    first = next((m.group(1) for m in map(_EMERG.search, lines) if m), lines[0] if lines else "nginx -t failed")
    return _DIRECTORY.sub("", " " + first.strip())[1:][:MAX_REASON]


def trace(output: str, *, text: str, candidate: str, config: Configuration) -> Trace:
    """The Ingresses to reject for nginx's `output` on the rendered `text` (written to `candidate`)."""
    said = reason(output)
    cert = _CERT_FILE.search(output)
    if cert:
        name = cert.group(1)
        if name == config.static.default_certificate:
            return Trace((), said)
        return Trace(tuple(config.certificate_users.get(name, ())), said)
    for file, line in _FILE_LINE.findall(output):
        if file != candidate:
            continue
        server_name = _enclosing_server_name(text, int(line))
        if server_name is None:
            return Trace((), said)
        host = _host(config, server_name)
        origins = config.origins.get(host, ()) if host is not None else ()
        return Trace(origins[-1:], said)  # the newest Ingress of the host
    return Trace((), said)


def _enclosing_server_name(text: str, line: int) -> str | None:
    """The server_name of the server block (at the template's indentation) holding 1-based `line`."""
    lines = text.splitlines()
    start = None
    for i in range(min(line, len(lines)) - 1, -1, -1):
        if _SERVER_START.match(lines[i]):
            start = i
            break
    if start is None:
        return None
    for candidate in lines[start + 1 : start + 8]:
        found = _SERVER_NAME.match(candidate)
        if found:
            return found.group(1)
    return None


def _host(config: Configuration, server_name: str) -> str | None:
    if server_name == config.static.default_server.server_name:
        return ""
    for server in config.static.servers:
        if server.server_name == server_name:
            return server.host
    return None
