"""Noticing changes in the manifests folder, without statting every file many times a second.

With inotify (the `watchfiles` library, a thread of its own) the kernel names the paths that
changed, and only those files are read again: nothing runs while the folder is quiet. inotify can
still miss a change (its queue overflows in a burst of thousands of writes, network filesystems
do not report other hosts' writes), so a full rescan (one stat per file, re-reading only files
whose signature changed) also runs once the watcher is up and then every `RESCAN_FACTOR` times
the cost of a rescan, and at least every `RESCAN_MIN` seconds.

Without inotify (watchfiles missing or failing), the folder is polled with full rescans. The poll
interval grows with the folder: `POLL_FACTOR` times what a rescan costs, so polling never takes
more than about 1/POLL_FACTOR of a core (a folder of 30,000 files is not statted 20 times a
second), and small folders keep the short interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

RESCAN_MIN = 10.0  # seconds between safety rescans while inotify works, at least
RESCAN_FACTOR = 200  # ... and at least this many times what one rescan costs
POLL_FACTOR = 20  # without inotify: poll interval at least this many times a rescan's cost
# watchfiles groups the events of one burst: it returns once no new event came for STEP_MS
# (so a single write is seen after 1-2 steps), and after DEBOUNCE_MS of a continuous burst.
STEP_MS = 5
DEBOUNCE_MS = 100
TICK_MS = 1000  # the watcher thread reports "nothing happened" this often

# watchfiles logs every batch at INFO level.
logging.getLogger("watchfiles").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Change:
    paths: frozenset[Path] = field(default_factory=frozenset)  # what inotify named
    rescan: bool = False  # scan the whole folder (also re-reading `paths`)


class FolderWatch:
    """`async with FolderWatch(...) as watch:` then `await watch.next()` for each change; call
    `scanned(seconds)` after each full rescan so the intervals follow its cost."""

    def __init__(self, directory: Path, *, notify: bool = True, interval: float = 0.05) -> None:
        self.directory = directory
        self.notify = notify
        self.interval = interval
        self.poll_interval = interval
        self.rescan_interval = RESCAN_MIN
        self._next_rescan = time.monotonic() + RESCAN_MIN
        self._queue: asyncio.Queue[frozenset[Path] | BaseException] = asyncio.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = False  # the watcher has reported once: it is watching

    async def __aenter__(self) -> FolderWatch:
        if self.notify:
            try:
                import watchfiles  # noqa: F401
            except ImportError:
                log.warning("watchfiles is not installed: polling %s for changes", self.directory)
            else:
                loop = asyncio.get_running_loop()
                self._thread = threading.Thread(target=self._run, args=(loop,), name="manifests-watch", daemon=True)
                self._thread.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()  # the thread sees it within STEP_MS and ends

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        import watchfiles

        def post(item: frozenset[Path] | BaseException) -> bool:
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, item)
            except RuntimeError:  # the loop is closed
                return False
            return True

        try:
            for changes in watchfiles.watch(
                self.directory,
                watch_filter=None,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                rust_timeout=TICK_MS,
                yield_on_timeout=True,
                stop_event=self._stop,
            ):
                if not post(frozenset(Path(p) for _, p in changes)):
                    return
        except Exception as exc:  # anything the watcher raises: fall back to polling
            post(exc)

    def scanned(self, seconds: float) -> None:
        """A full rescan just statted every file in `seconds`: schedules the next one."""
        self.poll_interval = max(self.interval, POLL_FACTOR * seconds)
        self.rescan_interval = max(RESCAN_MIN, RESCAN_FACTOR * seconds)
        self._next_rescan = time.monotonic() + self.rescan_interval

    async def next(self) -> Change:
        """The next change; waits for one."""
        while self._thread is not None:
            try:
                item = await asyncio.wait_for(self._queue.get(), max(0.0, self._next_rescan - time.monotonic()))
            except TimeoutError:
                return Change(rescan=True)  # the safety rescan is due
            if isinstance(item, BaseException):
                log.warning("watching %s failed (%s): polling it instead", self.directory, item)
                self._thread = None
                return Change(rescan=True)
            paths = set(item)
            while not self._queue.empty():
                more = self._queue.get_nowait()
                if isinstance(more, BaseException):
                    self._queue.put_nowait(more)
                    break
                paths |= more
            if not self._live:
                # The watcher is up now: one full scan covers whatever changed before it was.
                self._live = True
                return Change(frozenset(paths), rescan=True)
            if paths:
                return Change(frozenset(paths))
        await asyncio.sleep(self.poll_interval)
        return Change(rescan=True)
