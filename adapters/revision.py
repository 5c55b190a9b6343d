"""One number that moves whenever anything a CRI list shows may have changed.

kubelet lists every pod and container every second, and between two lists
nothing has usually changed. A list answer is kept with the revision it was
made at (``criviews.KeptAnswer``) and given again while the revision stands.
The revision moves on every attribute set of a record or of a pod's network
state (``Tracked``) and on every change of a store's tables
(``records.RecordTables``), so no code path can change a record without
the kept answers hearing of it.
"""

from __future__ import annotations

from typing import Any

_revision = 0


def current() -> int:
    """The revision now: equal numbers mean no record changed in between."""
    return _revision


def move() -> None:
    global _revision
    _revision += 1


class Tracked:
    """A record whose every attribute set moves the revision."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        global _revision
        _revision += 1
        object.__setattr__(self, name, value)
