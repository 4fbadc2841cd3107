"""Memo: results of translate's pure per-object steps, remembered from one translation to the next.

Objects in a snapshot are immutable and replaced (never edited) on change, so a step's result can
be keyed by the identity of the objects it read. Each entry keeps its objects alive, so their ids
cannot be reused while it exists. Entries not used by a translation are dropped after it. The
output of translate is the same with or without a memo; only the time differs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Memo:
    def __init__(self) -> None:
        # key -> (key, anchors, value): an entry carried over keeps its first key object, so a
        # translation at scale does not keep a second copy of every key alive until it ends.
        self._previous: dict[Hashable, tuple[Hashable, tuple[Any, ...], Any]] = {}
        self._current: dict[Hashable, tuple[Hashable, tuple[Any, ...], Any]] = {}

    def get(self, key: Hashable, anchors: tuple[Any, ...], compute: Callable[[*Ts], T], *args: *Ts) -> T:
        """The value for key, `compute(*args)` only if no translation since the last one had it.
        `anchors` are the objects whose ids are part of the key."""
        entry = self._current.get(key) or self._previous.get(key)
        if entry is None:
            entry = (key, anchors, compute(*args))
        self._current[entry[0]] = entry
        value: T = entry[2]
        return value

    def rotate(self) -> None:
        """Ends a translation: entries it did not use are forgotten."""
        self._previous, self._current = self._current, {}

    def __len__(self) -> int:
        return len(self._previous)
