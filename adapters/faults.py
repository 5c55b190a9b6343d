"""Named fault points: the daemon kills itself where a test asks it to.

Crash-consistency tests need a SIGKILL at an exact step of a call (after
``runc start`` but before the record says so, between CNI DEL and the pause
kill, ...); a timer cannot hit those reliably. ``PYCRID_FAULT_POINT`` names
one or more points (comma-separated), read once when this module is
imported; when execution reaches a named point the process sends itself
SIGKILL and dies as a crashed daemon would. Unset, ``reach`` is one
membership test on an empty set.

For tests only: no configuration key sets it, and ``docs/development.md``
lists the points.
"""

from __future__ import annotations

import logging
import os
import signal

ENV = "PYCRID_FAULT_POINT"

_armed: frozenset[str] = frozenset(
    name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()
)


def reach(point: str) -> None:
    """Die here, by SIGKILL, when ``point`` is armed."""
    if point in _armed:
        logging.getLogger("pycrid.faults").critical("fault point %s reached: SIGKILL", point)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def armed() -> frozenset[str]:
    """The points this process dies at."""
    return _armed
