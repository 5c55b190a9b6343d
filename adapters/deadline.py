"""The deadline of the CRI call being served, for the backends it calls.

The server publishes each call's deadline here as it enters the call; Docker,
runc, conmon and CNI calls read what is left of it, so that a client's
deadline reaches the backend instead of stopping at the gRPC layer.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

# Monotonic time at which the current call's deadline passes; None without one.
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "call_deadline", default=None
)


def set_call_deadline(seconds: float | None) -> None:
    """Start the current call's clock: ``seconds`` from now, or no deadline."""
    call_deadline.set(None if seconds is None else time.monotonic() + seconds)


def seconds_left() -> float | None:
    """Seconds until the current call's deadline (None without one)."""
    deadline = call_deadline.get()
    return None if deadline is None else deadline - time.monotonic()


@contextlib.contextmanager
def without_deadline() -> Iterator[None]:
    """Let clean-up after a failed call run to its end, past the call's deadline."""
    token = call_deadline.set(None)
    try:
        yield
    finally:
        call_deadline.reset(token)
