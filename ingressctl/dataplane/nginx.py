"""The nginx process: prepare the work dir, test a config, install one, start, reload, stop.

One master per controller, started in the foreground (`daemon off`) as our child, so its PID is
known and it dies with us. The first start `nginx -t`s its configuration; a reload is the test
itself: SIGHUP to the master, which parses the new nginx.conf and keeps running the old one if it
cannot load it (one parse instead of two, the dominant cost with thousands of Ingresses). A refused
reload is read from the [emerg] log (Paths.emerg_log: the master's messages for a configuration it
refuses; truncated before each reload) and the last good nginx.conf is put back on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import grp
import logging
import os
import pwd
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ingressctl.dataplane.paths import Paths

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1
_SYSTEM_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class TestResult:
    ok: bool
    output: str


def worker_user() -> tuple[str, int, int] | None:
    """When started as root, workers run as nobody (nginx's default user), never as root."""
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam("nobody")
    group = grp.getgrgid(user.pw_gid).gr_name
    if not (_SYSTEM_NAME.fullmatch(user.pw_name) and _SYSTEM_NAME.fullmatch(group)):
        raise RuntimeError(f"unexpected worker user {user.pw_name}:{group}")
    return f"{user.pw_name} {group}", user.pw_uid, user.pw_gid


def _die_with_parent() -> None:
    """In the forked child: the kernel sends SIGTERM (nginx's fast shutdown) to the master if the
    controller dies, even by SIGKILL, so no orphaned nginx keeps serving a stale configuration."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _orphaned_worker(pid: int) -> bool:
    """An nginx worker whose master is gone (it was reparented): not a worker of another master
    that happens to have a PID we saw."""
    try:
        if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx: worker process"):
            return False
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return not Path(f"/proc/{parent}/cmdline").read_bytes().startswith(b"nginx: master process")
    except (OSError, ValueError, IndexError):
        return False


def _accepting_worker(pid: int) -> bool:
    """A worker that has not been told to quit (its title lacks "is shutting down")."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return title.startswith(b"nginx: worker process") and b"shutting down" not in title


_ERROR_LINE = re.compile(r"(?:\S+ \S+ )?\[(\w+)\] (?:\d+#\d+: )?(.*)")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO, "warn": logging.WARNING}
nginx_log = logging.getLogger("nginx.error")


async def _forward_error_log(stream: asyncio.StreamReader) -> None:
    """nginx's error log (stderr) as log records of `nginx.error`, so that with --log-format json
    every line the controller writes is JSON; ends when the master and its workers have all exited."""
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip("\n")
        match = _ERROR_LINE.fullmatch(text)
        level, message = (match.group(1), match.group(2)) if match else ("warn", text)
        nginx_log.log(_LEVELS.get(level, logging.ERROR), "%s", message)


class Nginx:
    def __init__(self, *, binary: str, paths: Paths, error_log_as_records: bool = False) -> None:
        self.binary = binary
        self.paths = paths
        self.error_log_as_records = error_log_as_records
        self._forwarder: asyncio.Task[None] | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.conf = Path(paths.work) / "nginx.conf"
        self.workers_seen: list[int] = []  # workers of the live configuration, for cleanup

    @property
    def user(self) -> str | None:
        wu = worker_user()
        return wu[0] if wu else None

    def prepare(self) -> None:
        """Creates the work dir layout: keys private to us, temp dirs writable by the workers."""
        work = Path(self.paths.work)
        work.mkdir(parents=True, exist_ok=True)
        wu = worker_user()
        os.chmod(work, 0o711 if wu else 0o700)
        for private in (Path(self.paths.certs), Path(self.paths.api)):
            private.mkdir(exist_ok=True)
            os.chmod(private, 0o700)
        tmp = Path(self.paths.tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / sub).mkdir(exist_ok=True)
        for directory in [tmp, *tmp.iterdir()]:
            if wu:
                os.chown(directory, wu[1], wu[2])
            os.chmod(directory, 0o700)
        auth = Path(self.paths.auth)  # basic auth user files: the workers read them at each request
        auth.mkdir(parents=True, exist_ok=True)
        if wu:
            os.chown(auth, wu[1], wu[2])
        os.chmod(auth, 0o700)
        if self.paths.run:
            # Sockets the workers connect to (the no-endpoints server): the worker user needs to
            # traverse this directory and its parents, not to list it.
            run = Path(self.paths.run)
            run.mkdir(parents=True, exist_ok=True)
            os.chmod(run, 0o711 if wu else 0o700)
        # A socket file left by an nginx that did not exit cleanly would make the bind fail.
        for socket in (self.paths.socket, *self.paths.no_endpoints_sockets.values()):
            Path(socket).unlink(missing_ok=True)

    async def test(self, conf: Path) -> TestResult:
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            "-t",
            "-q",
            "-p",
            self.paths.work,
            "-c",
            str(conf),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return TestResult(proc.returncode == 0, out.decode(errors="replace").strip())

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.returncode is None else None

    def alive(self) -> bool:
        return self.pid is not None

    def died(self) -> bool:
        """Started once and exited since (a stop() by us included)."""
        return self.process is not None and self.process.returncode is not None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            "-p",
            self.paths.work,
            "-c",
            str(self.conf),
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE if self.error_log_as_records else None,
            preexec_fn=_die_with_parent,
        )
        if self.process.stderr is not None:
            self._forwarder = asyncio.create_task(_forward_error_log(self.process.stderr))
        log.info("nginx started (master pid %d)", self.process.pid)

    @property
    def _good(self) -> Path:
        return self.conf.with_name("nginx.conf.good")

    def install(self, candidate: Path) -> None:
        """Makes `candidate` nginx.conf, keeping the current one (if any) to restore on refusal."""
        self._good.unlink(missing_ok=True)
        if self.conf.exists():
            os.link(self.conf, self._good)
        os.replace(candidate, self.conf)

    def restore(self) -> None:
        """Puts the last good nginx.conf back (the master refused the new one and runs the old)."""
        if self._good.exists():
            os.replace(self._good, self.conf)

    def reload(self) -> None:
        """SIGHUP: the master loads nginx.conf, or logs why not and keeps the running one."""
        if self.pid is None:
            raise RuntimeError("nginx is not running")
        # Only this reload's messages in the log from here on (the master appends: O_APPEND).
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.paths.emerg_log, 0)
        os.kill(self.pid, signal.SIGHUP)

    def refusal(self) -> str | None:
        """Why the master refused the configuration since the last reload(), or None (not, or not yet)."""
        try:
            text = Path(self.paths.emerg_log).read_text(errors="replace")
        except FileNotFoundError:
            return None
        master = f"[emerg] {self.pid}#"
        lines = [line for line in text.splitlines() if master in line]
        return "\n".join(lines) or None

    def worker_pids(self) -> list[int]:
        if self.pid is None:
            return []
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        pids = sorted(int(p) for p in children.split())
        if pids:
            self.workers_seen = pids
        return pids

    async def wait_stopped_accepting(self, pids: list[int], *, timeout: float) -> None:
        """Waits until each of these (old) workers has exited or is shutting down, i.e. no longer
        accepts connections. Old workers finishing long requests do not hold this up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [pid for pid in pids if _accepting_worker(pid)]
            if not pending:
                return
            await asyncio.sleep(0.002)
        log.warning("old nginx workers %s still accept connections after %.0fs", pending, timeout)

    def stop_orphans(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stops the workers a dead master left behind (they would go on serving)."""
        for pid in self.workers_seen:
            if not _orphaned_worker(pid):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                log.warning("stopped nginx worker %d left by the dead master", pid)

    async def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGQUIT lets workers finish requests); SIGKILL after the timeout, to the
        master and to the workers that would not finish. Workers a master that died on its own
        left behind are stopped too."""
        proc = self.process
        if proc is None:
            return
        if proc.returncode is None:
            self.worker_pids()  # remembers the current workers
            proc.send_signal(signal.SIGQUIT)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                log.warning("nginx did not stop within %.0fs; killing it", timeout)
                proc.kill()
                await proc.wait()
                self.stop_orphans(signal.SIGKILL)
            log.info("nginx stopped")
        self.stop_orphans()
