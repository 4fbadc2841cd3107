"""Memo: results of translate's pure per-object steps, remembered from one translation to the next.

Objects in a snapshot are immutable and replaced (never edited) on change, so a step's result can
be keyed by the identity of the objects it read. Each entry keeps its objects alive, so their ids
cannot be reused while it exists. Entries not used by a translation are dropped after it. The
output of translate is the same with or without a memo; only the time differs.

Memory is bounded by the cluster's size, not by the number of changes: an entry carried over from
the previous translation leaves it (one copy per key), and a result of which only the newest counts
(a Service's backend, which every endpoint change replaces) lives in a slot that holds one entry,
replaced when its key changes, so endpoint-only updates, which never end a translation, cannot pile
up entries (and the objects they keep alive) between two full translations.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# key -> (key, anchors, value); a slot's entry is stored under (_SLOT, slot) with its current key.
_Entry = tuple[Hashable, tuple[Any, ...], Any]
_SLOT = object()


class Memo:
    def __init__(self) -> None:
        # An entry carried over keeps its first key object, so a translation at scale does not keep
        # a second copy of every key alive until it ends. A key is in at most one of the two.
        self._previous: dict[Hashable, _Entry] = {}
        self._current: dict[Hashable, _Entry] = {}

    def _take(self, key: Hashable) -> _Entry | None:
        return self._current.get(key) or self._previous.pop(key, None)

    def get(self, key: Hashable, anchors: tuple[Any, ...], compute: Callable[[*Ts], T], *args: *Ts) -> T:
        """The value for key, `compute(*args)` only if no translation since the last one had it.
        `anchors` are the objects whose ids are part of the key."""
        entry = self._take(key)
        if entry is None:
            entry = (key, anchors, compute(*args))
        self._current[entry[0]] = entry
        value: T = entry[2]
        return value

    def latest(
        self, slot: Hashable, key: Hashable, anchors: tuple[Any, ...], compute: Callable[[*Ts], T], *args: *Ts
    ) -> T:
        """Like get(), for a result of which only the newest matters: `slot` holds one entry, kept
        while `key` stays the same and replaced (its anchors released) when it changes."""
        name = (_SLOT, slot)
        entry = self._take(name)
        if entry is None or entry[0] != key:
            entry = (key, anchors, compute(*args))
        self._current[name] = entry
        value: T = entry[2]
        return value

    def rotate(self) -> None:
        """Ends a translation: entries it did not use are forgotten."""
        self._previous, self._current = self._current, {}

    def __len__(self) -> int:
        """The entries held (those of the last translation and those used since)."""
        return len(self._previous) + len(self._current)
