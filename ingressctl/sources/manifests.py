"""The local source: a folder of YAML manifests (multi-document *.yaml / *.yml, recursively).

It emits ADDED/MODIFIED/DELETED for the objects whose content changed, working per file: a change
re-reads only the files it touched and compares only their objects, so its cost does not grow with
the size of the folder. How changes are noticed (inotify, or a poll) is `folderwatch`'s business.

- A malformed file is reported and its last good content kept, so a half-saved edit never takes
  routes down. A deleted file removes its objects.
- An object defined in two files is reported; the file that sorts last wins, and when it goes the
  other definition takes over (an object moved from one file to another is a MODIFIED at most).
- Objects without a creationTimestamp get the time they were first seen, kept across edits and
  moves, so "oldest wins" stays stable.
- Objects are handed out as they were parsed (strings interned, no copies): the cache and this
  source hold the same dicts, and an object whose content did not change keeps its identity, so
  translate's memo keeps its results. Nobody edits an object after it was handed out.
Kinds the controller does not read are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import re
import stat
import sys
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ingressctl.model import INGRESS, INGRESS_CLASS, KINDS, Event, EventType
from ingressctl.sources.folderwatch import FolderWatch
from ingressctl.sources.legacy import LEGACY_INGRESS_VERSIONS, convert_ingress

log = logging.getLogger(__name__)

CLUSTER_SCOPED = (INGRESS_CLASS,)
SUFFIXES = (".yaml", ".yml")
ObjKey = tuple[str, str, str]  # kind, namespace, name
Signature = tuple[int, int, int, int]  # mtime_ns, ctime_ns, size, inode


class ManifestError(ValueError):
    pass


# Strings up to this length are interned as they are read: keys, kinds, API versions, path
# types and the names that several objects repeat (a Service's name in its EndpointSlice and its
# Ingresses) are then stored once. At 10,000 Ingresses this takes a third off the objects' memory.
_INTERN_MAX = 64
_SCALARS = (str, int, float, bool, type(None))


class _Shared:
    """Within one file, equal small mappings are one object: `{"ready": true}` in every endpoint,
    `{"number": 80}` in every backend, a backend repeated on each path. Only mappings whose values
    are scalars or mappings shared this way qualify. Safe because nothing edits an object once
    parsed, but the top level and metadata, which _normalise copies first."""

    def __init__(self) -> None:
        self._seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._shared: set[int] = set()  # ids of the mappings in _seen

    def mapping(self, value: dict[str, Any]) -> dict[str, Any]:
        key: list[Any] = []
        for k, v in value.items():
            t = type(v)
            if t in _SCALARS:
                key += (k, t, v)
            elif t is dict and id(v) in self._shared:
                key += (k, t, id(v))
            else:
                return value
        shared = self._seen.setdefault(tuple(key), value)
        self._shared.add(id(shared))
        return shared

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        """json's object_pairs_hook."""
        return self.mapping(
            {sys.intern(k): (sys.intern(v) if type(v) is str and len(v) <= _INTERN_MAX else v) for k, v in pairs}
        )

    def tree(self, value: Any) -> Any:
        """The YAML loader's documents, bottom up (keys and strings are interned by the loader)."""
        if type(value) is dict:
            for k, v in value.items():
                if type(v) in (dict, list):
                    value[k] = self.tree(v)
            return self.mapping(value)
        if type(value) is list:
            value[:] = [self.tree(v) if type(v) in (dict, list) else v for v in value]
        return value


# libyaml's safe loader when PyYAML was built with it (Debian's and the wheels are): the same
# documents, about 7x faster than the pure-Python one (10,000 Ingresses with their Services and
# EndpointSlices: 14 s instead of 101 s, measured).
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    def construct_yaml_str(self, node: Any) -> Any:
        value = super().construct_yaml_str(node)
        return sys.intern(value) if isinstance(value, str) and len(value) <= _INTERN_MAX else value


_Loader.add_constructor("tag:yaml.org,2002:str", _Loader.construct_yaml_str)

# A line that is only a document marker: in YAML it can never be part of a document's content.
_MARKER = re.compile(r"^---[ \t]*$", re.M)


def _documents(text: str) -> list[Any]:
    """The documents of one file. A file whose documents are all JSON objects (what `kubectl get
    -o json` and generators write) is read with the json module, 7x faster than libyaml; any
    other file, or one JSON cannot read, goes through the YAML loader as a whole."""
    chunks = [c for c in _MARKER.split(text) if c.strip()]
    if chunks and all(c.lstrip().startswith("{") for c in chunks):
        with contextlib.suppress(ValueError):
            shared = _Shared()
            return [json.loads(c, object_pairs_hook=shared.pairs) for c in chunks]
    shared = _Shared()
    return [shared.tree(doc) for doc in yaml.load_all(text, Loader=_Loader)]


def _normalise(doc: Any, where: str) -> tuple[ObjKey, dict[str, Any]] | None:
    """The object's key and the object (namespace defaulted), None for the kinds we do not read."""
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: not a Kubernetes object")
    kind = doc.get("kind")
    if kind not in KINDS:
        return None
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ManifestError(f"{where}: {kind} without metadata.name")
    # Fresh top level and metadata, the only parts edited here (YAML aliases may share the rest).
    meta = dict(meta)
    obj = {**doc, "metadata": meta}
    if kind == INGRESS and doc.get("apiVersion") in LEGACY_INGRESS_VERSIONS:
        log.warning(
            "%s: Ingress %s uses %s; converted to networking.k8s.io/v1",
            where,
            meta["name"],
            doc["apiVersion"],
        )
        obj = convert_ingress(obj)
        meta = obj["metadata"]
    if kind in CLUSTER_SCOPED:
        meta.pop("namespace", None)
    else:
        meta["namespace"] = sys.intern(str(meta.get("namespace") or "default"))
    return (kind, meta.get("namespace", ""), meta["name"]), obj


def parse_file(path: Path) -> dict[ObjKey, dict[str, Any]]:
    """Parses one file; raises ManifestError (with the file named) if any document is malformed,
    FileNotFoundError if it is gone."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except (UnicodeDecodeError, OSError) as exc:
        raise ManifestError(f"{path}: {exc}") from None
    try:
        docs = _documents(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    del text
    out: dict[ObjKey, dict[str, Any]] = {}
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "List":
            items = doc.get("items") or []
        else:
            items = [doc]
        for item in items:
            found = _normalise(item, f"{path} document {i + 1}")
            if found:
                out[found[0]] = found[1]
    return out


def signature(st: os.stat_result) -> Signature:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


@dataclass
class _File:
    signature: Signature | None
    objects: dict[ObjKey, dict[str, Any]]  # the last good content


_GONE: dict[ObjKey, dict[str, Any]] = {}  # marks a file that no longer exists


class ManifestsSource:
    """`notify`: notice changes through inotify (watchfiles) when it works; `interval` is the
    poll interval otherwise (it grows with the folder, see folderwatch)."""

    def __init__(self, directory: str | Path, *, interval: float = 0.05, notify: bool = True) -> None:
        self.directory = Path(directory)
        self.interval = interval
        self.notify = notify
        self._files: dict[Path, _File] = {}
        # Which files define each object, sorted: the last one wins.
        self._owners: dict[ObjKey, tuple[Path, ...]] = {}
        # What was handed out for each object (the winning file's object itself, not a copy).
        self._current: dict[ObjKey, dict[str, Any]] = {}
        self._first_seen: dict[ObjKey, str] = {}
        self._dirs: set[Path] = set()  # directories the last full scan walked
        self.walk_seconds = 0.0  # what the last full scan's stat calls took (not its parsing)
        self.errors: dict[Path, str] = {}

    # --- reading files ----------------------------------------------------------------------

    def walk(self) -> dict[Path, Signature]:
        """Every manifest file under the folder with its signature (one stat each); the same
        files `Path.rglob("*.yaml")` and `("*.yml")` find: symlinked directories are not
        entered, symlinked files are read."""
        found: dict[Path, Signature] = {}
        dirs: set[Path] = set()
        for top, _, names in os.walk(self.directory):
            dirs.add(Path(top))
            for name in names:
                if name.endswith(SUFFIXES):
                    path = Path(top, name)
                    with contextlib.suppress(OSError):
                        st = path.stat()
                        if stat.S_ISREG(st.st_mode):
                            found[path] = signature(st)
        self._dirs = dirs
        return found

    def _read(self, path: Path) -> dict[ObjKey, dict[str, Any]] | None:
        """The file's objects, _GONE if it no longer exists, None if it is malformed (reported)."""
        try:
            objects = parse_file(path)
        except FileNotFoundError:
            return _GONE
        except ManifestError as exc:
            if self.errors.get(path) != str(exc):
                log.error("skipping malformed manifest (its last good content stays): %s", exc)
            self.errors[path] = str(exc)
            return None
        if self.errors.pop(path, None):
            log.info("%s: parses again", path)
        return objects

    # --- applying new file contents -----------------------------------------------------------

    def _apply(
        self, contents: dict[Path, dict[ObjKey, dict[str, Any]]], signatures: dict[Path, Signature | None]
    ) -> list[Event]:
        """Installs new contents of some files (_GONE: the file is gone) and returns the events
        for the objects whose winning definition changed. Costs O(objects of those files)."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        touched: set[ObjKey] = set()
        for path in sorted(contents):
            new = contents[path]
            old = self._files.get(path)
            old_objects = old.objects if old else {}
            for key, obj in new.items():
                meta: dict[str, Any] = obj["metadata"]
                if not meta.get("creationTimestamp"):
                    meta["creationTimestamp"] = self._first_seen.setdefault(key, now)
                previous = old_objects.get(key)
                if previous is not None and previous == obj:
                    new[key] = previous  # unchanged: keep its identity (translate's memo)
            for key in old_objects.keys() - new.keys():
                owners = tuple(p for p in self._owners.get(key, ()) if p != path)
                if owners:
                    self._owners[key] = owners
                else:
                    self._owners.pop(key, None)
                touched.add(key)
            for key in new.keys() - old_objects.keys():
                self._owners[key] = tuple(sorted({*self._owners.get(key, ()), path}))
            touched.update(new)
            if new is _GONE:
                self._files.pop(path, None)
                self.errors.pop(path, None)
            else:
                self._files[path] = _File(signatures.get(path), new)
        return self._events(touched)

    def _events(self, keys: Iterable[ObjKey]) -> list[Event]:
        deleted: list[Event] = []
        changed: list[Event] = []
        for key in sorted(keys):
            owners = self._owners.get(key, ())
            old = self._current.get(key)
            if not owners:
                if old is not None:
                    deleted.append(Event(EventType.DELETED, key[0], self._current.pop(key)))
                self._first_seen.pop(key, None)
                continue
            if len(owners) > 1:
                log.warning(
                    "%s %s/%s is defined twice (%s); %s wins",
                    *key,
                    ", ".join(map(str, owners)),
                    owners[-1],
                )
            objects = self._files[owners[-1]].objects
            obj = objects[key]
            if old is None:
                changed.append(Event(EventType.ADDED, key[0], obj))
            elif obj is old:
                continue
            elif obj == old:
                objects[key] = old  # the same content from another file: keep the one handed out
                continue
            else:
                changed.append(Event(EventType.MODIFIED, key[0], obj))
            self._current[key] = obj
        return [*deleted, *changed]

    # --- change detection entry points ----------------------------------------------------------

    def _load(self, path: Path, sig: Signature, contents: dict[Path, dict[ObjKey, dict[str, Any]]]) -> None:
        """Reads one file into `contents`; a malformed one keeps its last good content (none if
        it never parsed) and only its signature is updated, so it is not read again unchanged."""
        objects = self._read(path)
        if objects is None:
            known = self._files.setdefault(path, _File(sig, {}))
            known.signature = sig
        else:
            contents[path] = objects

    def rescan(self, *, force: Iterable[Path] = ()) -> list[Event]:
        """A full scan: stats every file, re-reads those whose signature changed (and `force`),
        drops the files that are gone."""
        started = time.monotonic()
        found = self.walk()
        self.walk_seconds = time.monotonic() - started
        forced = set(force)
        contents: dict[Path, dict[ObjKey, dict[str, Any]]] = dict.fromkeys(self._files.keys() - found.keys(), _GONE)
        for path, sig in sorted(found.items()):
            known = self._files.get(path)
            if known is None or known.signature != sig or path in forced:
                self._load(path, sig, contents)
        return self._apply(contents, dict(found))

    def update(self, paths: Iterable[Path]) -> list[Event]:
        """The files at `paths` changed (as inotify says): re-reads just those. Anything else
        (a directory came or went, a symlink to a directory was swapped) is a full rescan."""
        paths = set(paths)
        manifests = {p for p in paths if p.name.endswith(SUFFIXES)}
        for path in paths:
            if path in self._dirs or (path not in self._files and path.is_dir()):
                return self.rescan(force=manifests)
        contents: dict[Path, dict[ObjKey, dict[str, Any]]] = {}
        signatures: dict[Path, Signature | None] = {}
        for path in sorted(manifests):
            if path.parent not in self._dirs:
                continue  # not under a directory the scan enters (e.g. behind a symlink)
            try:
                st = path.stat()
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                if path in self._files:
                    contents[path] = _GONE
                continue
            sig = signatures[path] = signature(st)
            self._load(path, sig, contents)
        return self._apply(contents, signatures)

    def load_once(self) -> list[Event]:
        """One full read: REPLACED per kind, then SYNCED (used by `ingressctl render`)."""
        self.rescan()
        by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for key, obj in sorted(self._current.items()):
            by_kind[key[0]].append(obj)
        events = [Event(EventType.REPLACED, kind, objects=tuple(objs)) for kind, objs in by_kind.items()]
        return [*events, Event(EventType.SYNCED)]

    async def events(self) -> AsyncGenerator[Event, None]:
        if not self.directory.is_dir():
            raise ManifestError(f"{self.directory} is not a directory")
        # Watching starts before the first read, so nothing written in between is missed.
        async with FolderWatch(self.directory, notify=self.notify, interval=self.interval) as watch:
            events = await asyncio.to_thread(self.load_once)
            watch.scanned(self.walk_seconds)
            for event in events:
                yield event
            while True:
                change = await watch.next()
                if change.rescan:
                    events = await asyncio.to_thread(self.rescan, force=change.paths)
                    watch.scanned(self.walk_seconds)
                else:
                    events = await asyncio.to_thread(self.update, change.paths)
                for event in events:
                    yield event
