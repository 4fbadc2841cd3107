"""Log lines as JSON: the field names the controller's logs and nginx's access log share.

`--log-format json` makes both streams one JSON object per line. The access log's fields are a fixed
allowlist (name -> nginx variable); the ConfigMap's `log-format-upstream` may only pick names from it,
never carry a format string, so no object can put text of its own into nginx.conf.
"""

from __future__ import annotations

import datetime
import json
import logging

# Every line, either stream: time (ISO 8601, seconds, as nginx's $time_iso8601), level, logger.
COMMON = ("time", "level", "logger")

# Access log fields, in their default order. Numbers are emitted unquoted (nginx always gives digits).
ACCESS_FIELDS: dict[str, str] = {
    "remote_addr": "$remote_addr",  # the client, after the real-IP rules
    "peer_addr": "$realip_remote_addr",  # the TCP peer
    "request_id": "$ingressctl_request_id",
    "host": "$host",
    "method": "$request_method",
    "uri": "$request_uri",
    "protocol": "$server_protocol",
    "status": "$status",
    "bytes_sent": "$body_bytes_sent",
    "request_length": "$request_length",
    "request_time": "$request_time",
    "backend": "$ingressctl_backend",
    "upstream_addr": "$upstream_addr",
    "upstream_status": "$upstream_status",
    "upstream_response_time": "$upstream_response_time",
    "user_agent": "$http_user_agent",
    "referer": "$http_referer",
}
NUMBERS = frozenset({"status", "bytes_sent", "request_length", "request_time"})
ACCESS_LOGGER = "nginx.access"


def access_log_format(fields: tuple[str, ...], *, json_lines: bool) -> str:
    """The body of nginx's `log_format` for the chosen fields (names from ACCESS_FIELDS only)."""
    unknown = [f for f in fields if f not in ACCESS_FIELDS]
    if unknown:
        raise ValueError(f"unknown access log fields: {unknown}")
    if not json_lines:
        return " ".join(ACCESS_FIELDS[f] if f in NUMBERS else f'"{ACCESS_FIELDS[f]}"' for f in fields)
    parts = ['"time":"$time_iso8601"', '"level":"info"', f'"logger":"{ACCESS_LOGGER}"']
    for name in fields:
        value = ACCESS_FIELDS[name]
        parts.append(f'"{name}":{value}' if name in NUMBERS else f'"{name}":"{value}"')
    return "{" + ",".join(parts) + "}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, msg, and `error` with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat(timespec="seconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup_logging(*, level: str, json_lines: bool) -> None:
    """The controller's logging: text lines, or JSON lines with the access log's common fields."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
