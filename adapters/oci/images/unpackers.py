"""Where layers are unpacked: large ones in worker processes, small ones in a thread.

Unpacking is gunzip, sha256 and tar parsing. The first two release the GIL;
tarfile's reading does not. Four large layers unpacked by the daemon's own
threads took turns on one core, with the event loop (receiving the next
layers) waiting behind them: four concurrent pulls of 300 MB images took as
long as four pulls one after the other. Worker processes unpack side by
side and leave the event loop alone.

The workers are started by a fork server (a fresh interpreter, never a fork
of the daemon and its gRPC threads) on the first large layer, and stop after
IDLE_SECONDS without one. A small layer (the pause image, most test images)
is not worth a process start and is unpacked in a thread as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from pycrid.adapters import errors
from pycrid.adapters.oci.images.unpack import UnpackResult, unpack_file

PROCESS_THRESHOLD = 8 * 1024 * 1024
"""Compressed bytes from which a layer is unpacked in a worker process."""
IDLE_SECONDS = 60.0


class Unpackers:
    """Unpacks layers for one image service."""

    def __init__(self, threads: concurrent.futures.Executor, workers: int = 0) -> None:
        self.threads = threads
        self.workers = workers or min(4, os.cpu_count() or 2)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._busy = 0
        self._idle: asyncio.TimerHandle | None = None

    async def unpack(self, blob: Path, root: Path, diff_id: str) -> UnpackResult:
        """Unpack ``blob`` into the empty directory ``root``; raises UnpackError or OSError."""
        loop = asyncio.get_running_loop()
        if blob.stat().st_size < PROCESS_THRESHOLD:
            return await loop.run_in_executor(self.threads, unpack_file, blob, root, diff_id)
        pool = self._started()
        self._busy += 1
        try:
            return await loop.run_in_executor(pool, unpack_file, blob, root, diff_id)
        except BrokenProcessPool:
            self._stop()  # a worker was killed: the next layer gets new ones
            raise errors.Internal(f"the process unpacking {blob.name[:12]} died") from None
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle = loop.call_later(IDLE_SECONDS, self._stop)

    def _started(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["pycrid.adapters.oci.images.unpack"])
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context)
        return self._pool

    def _stop(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self._stop()
