"""dockerd's answers that kubelet polls but that change rarely, kept instead of asked again.

kubelet calls Status every few seconds and ImageFsInfo about every 10 s (its
eviction manager and summary API). Asked each time, ``docker info`` costs
dockerd a walk of its state, and ``/system/df`` sizes every container's
writable layer: tens of milliseconds per call, 40-100 times what the other
runtimes answer in. So:

- ``Sampled`` keeps the last answer and refreshes it in the background once it
  is older than ``interval`` (or was marked stale), never more often than
  ``min_interval``; a caller waits only when there is no answer yet.
- Status still pings dockerd on every call: that is its liveness, and cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from pycrid.adapters.errors import CRIError

log = logging.getLogger("pycrid.docker")

T = TypeVar("T")


class Sampled(Generic[T]):
    """The last value of an expensive call, refreshed in the background."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[T]],
        interval: float,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.interval = interval
        self.min_interval = min_interval
        self._clock = clock
        self._value: T | None = None
        self._taken_at = 0.0
        self._stale = False
        self._refresh: asyncio.Task[T] | None = None

    async def get(self) -> T:
        """The last value; the first call, and a call after ``forget``, wait for one."""
        if self._value is None:
            return await self._refreshed()
        age = self._clock() - self._taken_at
        if age >= self.interval or (self._stale and age >= self.min_interval):
            self._start_refresh()
        return self._value

    def mark_stale(self) -> None:
        """Something changed what the call answers: refresh soon (after ``min_interval``)."""
        self._stale = True

    def forget(self) -> None:
        """The backend went away: the next caller waits for a new value."""
        self._value = None

    async def _refreshed(self) -> T:
        self._start_refresh()
        assert self._refresh is not None
        return await asyncio.shield(self._refresh)

    def _start_refresh(self) -> None:
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._take())
            self._refresh.add_done_callback(_retrieve)

    async def _take(self) -> T:
        self._stale = False
        try:
            value = await self._fetch()
        except BaseException:
            self._stale = True
            raise
        self._value, self._taken_at = value, self._clock()
        return value

    async def close(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, CRIError):
                await self._refresh


def _retrieve(task: asyncio.Task[T]) -> None:
    """A background refresh that failed is tried again by the next caller; say why here."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.debug("a background refresh failed: %s", error)
