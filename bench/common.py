"""Building blocks shared by the benchmark sections: processes stopped by PID, static nginx
backends, wrk runs, /proc readings (worker CPU, PSS, peak RSS), manifests and statistics.

Everything listens on 127.0.0.x. Every process a section starts is registered with `Procs` and
stopped by its PID when the section ends, also on Ctrl-C or an exception.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import Controller as Controller  # noqa: E402
from tests.harness import free_port as free_port  # noqa: E402
from tests.harness import wait_for as wait_for  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "/usr/bin/wrk"


# --- processes --------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_pid(
    pid: int, *, sig: int = signal.SIGQUIT, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Stops one process by PID: `sig` first, SIGKILL after the timeout; reaps it if it is our child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return
        if proc is None and not alive(pid):
            return
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=5)


class Procs:
    """Everything a section started, stopped in reverse order by PID on close()."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], None]] = []

    def add(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def controller(self, ctl: Controller) -> Controller:
        self.add(ctl.stop)
        return ctl

    def close(self) -> None:
        errors: list[BaseException] = []
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    try:
        return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return []


def cpu_ticks(pids: Sequence[int]) -> int:
    """utime + stime (clock ticks) summed over pids; a vanished pid counts 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat, after pid and comm
    return total


def pin(pids: Sequence[int], cpus: set[int]) -> None:
    """Restricts the processes (e.g. nginx workers) to the given CPUs."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(pid, cpus)


def pss_kb(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            match = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
            total += int(match.group(1)) if match else 0
    return total


def status_kb(pid: int, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


# --- nginx processes we run ourselves ---------------------------------------------------------


class NginxProcess:
    """An nginx master (daemon off, our child) on a config we write; stopped by PID."""

    def __init__(self, conf: str, *, name: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"ingressctl-bench-{name}-"))
        os.chmod(self.dir, 0o755)
        (self.dir / "tmp").mkdir()
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(conf.replace("@DIR@", str(self.dir)))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NginxProcess:
        log = (self.dir / "stderr.log").open("wb")
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.dir), "-c", str(self.conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()
        try:
            wait_for(self._started, timeout=10, what=f"nginx in {self.dir}")
        except BaseException:
            self.stop()  # not registered with Procs yet: stop it (and remove its dir) here
            raise
        return self

    def _started(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {(self.dir / 'stderr.log').read_text()}")
        return (self.dir / "nginx.pid").exists() and bool(children(self.proc.pid))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        return children(self.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            workers = children(self.proc.pid)
            stop_pid(self.proc.pid, sig=signal.SIGQUIT, proc=self.proc)
            for pid in workers:  # only alive if the master had to be killed
                if alive(pid) and _cmdline(pid).startswith("nginx: worker"):
                    stop_pid(pid, sig=signal.SIGKILL, timeout=2)
        shutil.rmtree(self.dir, ignore_errors=True)


BACKEND_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path @DIR@/tmp/body;
    proxy_temp_path @DIR@/tmp/proxy;
    fastcgi_temp_path @DIR@/tmp/fastcgi;
    uwsgi_temp_path @DIR@/tmp/uwsgi;
    scgi_temp_path @DIR@/tmp/scgi;
%s
}
"""


def backend_nginx(addresses: Sequence[str], port: int, *, name: str = "backends") -> NginxProcess:
    """One nginx (1 worker) answering `200 <its address>` on every address:port: a fast "pod" per address."""
    servers = "\n".join(
        f'    server {{ listen {a}:{port}; location / {{ return 200 "$server_addr\\n"; }} }}' for a in addresses
    )
    return NginxProcess(BACKEND_CONF % servers, name=name)


# --- wrk --------------------------------------------------------------------------------------

STATUS_SCRIPT = """\
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) codes = {} end
function response(status, headers, body) codes[status] = (codes[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("codes")) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("status %d %d\\n", k, v)) end
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)


def parse_wrk(out: str) -> WrkResult:
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[match.group(3)]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), (int(x) for x in errs.groups()), strict=True))
        if errs
        else {
            "connect": 0,
            "read": 0,
            "write": 0,
            "timeout": 0,
        }
    )
    statuses = {int(c): int(n) for c, n in re.findall(r"^status (\d+) (\d+)$", out, re.M)}
    return WrkResult(
        requests=int(match.group(1)),
        seconds=float(match.group(2)) * scale,
        rps=float(rps.group(1)) if rps else 0.0,
        non_2xx_3xx=int(non.group(1)) if non else 0,
        socket_errors=socket_errors,
        statuses=statuses,
    )


def wrk_args(
    url: str,
    *,
    host: str,
    seconds: float,
    connections: int = 32,
    threads: int = 1,
    script: Path | None = None,
    headers: tuple[str, ...] = (),
) -> list[str]:
    args = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-H",
        f"Host: {host}",
    ]
    for header in headers:
        args += ["-H", header]
    if script is not None:
        args += ["-s", str(script)]
    return [*args, url]


def run_wrk(
    url: str,
    *,
    host: str,
    seconds: float,
    connections: int = 32,
    threads: int = 1,
    script: Path | None = None,
    cpus: set[int] | None = None,
    headers: tuple[str, ...] = (),
) -> WrkResult:
    """One bounded wrk run; with `cpus`, wrk is pinned to those CPUs; `headers`: more "Name: value" ones."""
    args = wrk_args(
        url, host=host, seconds=seconds, connections=connections, threads=threads, script=script, headers=headers
    )
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=True, preexec_fn=pin).stdout
    return parse_wrk(out)


class BackgroundWrk:
    """wrk running while the caller does something else; bounded by its -d, stopped by PID."""

    def __init__(
        self, url: str, *, host: str, seconds: float, connections: int = 16, script: Path | None = None
    ) -> None:
        self.args = wrk_args(url, host=host, seconds=seconds, connections=connections, script=script)
        self.seconds = seconds
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> BackgroundWrk:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def result(self) -> WrkResult:
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=self.seconds + 30)
        return parse_wrk(out)

    def __exit__(self, *_: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc.pid, sig=signal.SIGTERM, timeout=5, proc=self.proc)  # type: ignore[arg-type]


def status_script(directory: Path) -> Path:
    path = directory / "statuses.lua"
    path.write_text(STATUS_SCRIPT)
    return path


# --- clients ----------------------------------------------------------------------------------


class Poller:
    """A keep-alive HTTP client for one Host, reconnecting when nginx closes the connection."""

    def __init__(self, port: int, host: str, *, path: str = "/", address: str = "127.0.0.1") -> None:
        self.port, self.host, self.path, self.address = port, host, path, address
        self.conn: http.client.HTTPConnection | None = None

    def get(self) -> tuple[int, str]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.address, self.port, timeout=5)
            try:
                self.conn.request("GET", self.path, headers={"Host": self.host})
                resp = self.conn.getresponse()
                body = resp.read().decode(errors="replace").strip()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, body
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def serves(port: int, host: str, *, path: str = "/", expect: str | None = None) -> bool:
    """One fresh-connection request: 200 (and the expected body, if given)?"""
    p = Poller(port, host, path=path)
    try:
        status, body = p.get()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        p.close()
    return status == 200 and (expect is None or body == expect)


# --- manifests --------------------------------------------------------------------------------


def manifest_text(docs: Sequence[dict[str, Any]]) -> str:
    """Multi-document YAML written as JSON documents (valid YAML; far faster to write at scale)."""
    return "".join(f"---\n{json.dumps(d, separators=(',', ':'))}\n" for d in docs)


def write_atomic(directory: Path, name: str, text: str) -> float:
    """Writes a manifest atomically; returns time.monotonic() right after it appeared."""
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / name)
    return time.monotonic()


def addresses(start: int, count: int, *, prefix: str = "127.0.0.") -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + count)]


# --- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@dataclass
class Row:
    """One line of the printed table."""

    section: str
    metric: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: no target

    def verdict(self) -> str:
        return "" if self.ok is None else ("ok" if self.ok else "MISSED")


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def wait_quiet_workers(master: int, expected: int, *, timeout: float = 30.0) -> int:
    """Waits until old workers are gone (only `expected` children left); returns the count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(children(master)) <= expected:
            break
        time.sleep(0.05)
    return len(children(master))


def local_port() -> int:
    return free_port()


@contextlib.contextmanager
def tempdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"ingressctl-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def port_open(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((address, port)) == 0
