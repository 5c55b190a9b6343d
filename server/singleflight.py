"""Identical concurrent calls answered once, and late results kept for the retry.

kubelet retries RunPodSandbox and CreateContainer with the very same request
when its deadline passes, and may send one while the first is still running.
Run twice, such a request makes two pods, or trips over the first attempt's
half-made container. Here the first call starts the work as a task of its
own; identical calls that arrive meanwhile wait for that task and get its
result or its error. The work does not die with its first caller: it runs
to its end under its own, longer deadline, and when nobody was left waiting
for the result, the result is kept for a few minutes so that the retry gets
it instead of starting over (what CRI-O's resource store does).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pycrid.adapters.deadline import set_call_deadline

T = TypeVar("T")

WORK_DEADLINE = 240.0
"""Seconds the shared work may run, whatever its callers' deadlines (CRI-O waits as long)."""
KEEP_FOR = 300.0
MAX_KEPT = 256


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0


@dataclass
class _Kept:
    result: Any
    expires: float


class SingleFlight:
    """See the module docstring; one per daemon, keys made by the caller."""

    def __init__(
        self,
        work_deadline: float = WORK_DEADLINE,
        keep_for: float = KEEP_FOR,
        max_kept: int = MAX_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._work_deadline = work_deadline
        self._keep_for = keep_for
        self._max_kept = max_kept
        self._clock = clock
        self._flights: dict[bytes, _Flight[Any]] = {}
        self._kept: OrderedDict[bytes, _Kept] = OrderedDict()

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: bytes, work: Callable[[], Awaitable[T]]) -> T:
        """``work()``'s result, shared with every identical call made meanwhile."""
        kept = self._take_kept(key)
        if kept is not None:
            return kept.result  # type: ignore[no-any-return]
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(self._detached(work)))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda task: self._landed(key, flight))
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1

    async def _detached(self, work: Callable[[], Awaitable[T]]) -> T:
        # This task has its own copy of the first caller's context: a deadline
        # set here is the work's alone.
        set_call_deadline(self._work_deadline)
        return await work()

    def _landed(self, key: bytes, flight: _Flight[Any]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        task = flight.task
        if flight.waiters or task.cancelled() or task.exception() is not None:
            return
        self._expire()
        while len(self._kept) >= self._max_kept:
            self._kept.popitem(last=False)
        self._kept[key] = _Kept(task.result(), self._clock() + self._keep_for)

    def _take_kept(self, key: bytes) -> _Kept | None:
        self._expire()
        return self._kept.pop(key, None)

    def _expire(self) -> None:
        now = self._clock()
        while self._kept:
            key, kept = next(iter(self._kept.items()))
            if kept.expires > now:
                break
            del self._kept[key]
