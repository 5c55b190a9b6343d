"""The size of a container's writable layer, measured off the event loop.

The layer's upper directory is walked in a small thread pool and its size is
kept for a while: a stats call never waits for a walk longer than a moment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger("pycrid.stats")

LAYER_MAX_AGE = 10.0
LAYER_FIRST_WAIT = 1.0
LAYER_MAX_ENTRIES = 200_000
LAYER_WORKERS = 2


@dataclass(frozen=True)
class DirUsage:
    used_bytes: int
    inodes: int
    complete: bool = True


def measure_dir(root: str, max_entries: int = LAYER_MAX_ENTRIES) -> DirUsage:
    """Allocated bytes and inodes under ``root``, links not followed, hard links once.

    Stops after ``max_entries`` entries (``complete`` is then False): a
    layer full of small files must not keep a thread busy for minutes.
    """
    try:
        used, inodes = os.lstat(root).st_blocks * 512, 1
    except OSError:
        return DirUsage(0, 0)
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        for entry in _entries(stack.pop()):
            try:
                st = entry.stat(follow_symlinks=False)
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if st.st_nlink > 1 and not is_dir:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            used += st.st_blocks * 512
            inodes += 1
            if inodes >= max_entries:
                return DirUsage(used, inodes, complete=False)
            if is_dir:
                stack.append(entry.path)
    return DirUsage(used, inodes)


def _entries(directory: str) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            yield from entries
    except OSError:
        return  # removed while walking, or unreadable


@dataclass(frozen=True)
class MeasuredLayer:
    at: float
    timestamp: int
    usage: DirUsage


class LayerSizes:
    """Writable layer sizes, measured off the event loop and kept ``max_age`` seconds.

    A stale size is answered at once while a new walk runs; only the first
    measurement of a layer is waited for, and for ``first_wait`` at most.
    """

    def __init__(
        self,
        max_age: float = LAYER_MAX_AGE,
        first_wait: float = LAYER_FIRST_WAIT,
        max_entries: int = LAYER_MAX_ENTRIES,
    ) -> None:
        self.max_age = max_age
        self.first_wait = first_wait
        self.max_entries = max_entries
        self._pool = ThreadPoolExecutor(max_workers=LAYER_WORKERS, thread_name_prefix="layer")
        self._known: dict[str, MeasuredLayer] = {}
        self._pending: dict[str, asyncio.Future[DirUsage]] = {}

    async def get(self, key: str, path: str) -> MeasuredLayer | None:
        known = self._known.get(key)
        if known is None or time.monotonic() - known.at > self.max_age:
            pending = self._measure(key, path)
            if known is None:
                await asyncio.wait({pending}, timeout=self.first_wait)
                known = self._known.get(key)
        return known

    def _measure(self, key: str, path: str) -> asyncio.Future[DirUsage]:
        if key in self._pending:
            return self._pending[key]
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, measure_dir, path, self.max_entries)
        self._pending[key] = future
        future.add_done_callback(lambda done: self._done(key, path, done))
        return future

    def _done(self, key: str, path: str, done: asyncio.Future[DirUsage]) -> None:
        self._pending.pop(key, None)
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            log.debug("measuring %s failed: %s", path, error)
            return
        usage = done.result()
        if not usage.complete:
            log.debug("%s has over %d entries; its size is a lower bound", path, usage.inodes)
        self._known[key] = MeasuredLayer(time.monotonic(), time.time_ns(), usage)

    def keep_only(self, keys: Iterable[str]) -> None:
        keys = set(keys)
        for key in [k for k in self._known if k not in keys]:
            del self._known[key]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
