"""One daemon per state directory and per run directory.

Two daemons on one state directory would both adopt the same containers
(two log copiers writing one CRI log, each missing the other's pods), and two
on one run directory would release each other's namespace pins at start-up.
Each directory gets a lock file held with ``flock`` for the daemon's life:
the kernel drops it when the process dies, even by ``kill -9``, so a crash
never leaves a stale lock. A daemon refused at start takes back the
directories it made on the way, so that a mistyped ``--state-dir`` leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from pycrid.adapters.base import StartupError

LOCK_NAME = "pycrid.lock"


class InstanceLock:
    """Exclusive locks on a set of directories; ``release`` (or exit) frees them."""

    def __init__(self) -> None:
        self._fds: list[int] = []
        self._made: list[Path] = []
        """Directories and lock files this lock made, in the order made."""

    def acquire(self, directory: Path, what: str) -> None:
        """Lock ``directory`` or raise StartupError naming the daemon that holds it.

        On StartupError, whatever this lock made (here or in earlier calls)
        is removed again and the locks it holds are released.
        """
        try:
            missing = [p for p in (directory, *directory.parents) if not p.exists()]
            directory.mkdir(parents=True, exist_ok=True)
            self._made += reversed(missing)
            lock_path = directory / LOCK_NAME
            made_lock = not lock_path.exists()
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if made_lock:
                self._made.append(lock_path)
        except OSError as e:
            self._abandon()
            raise StartupError(f"cannot lock {what} {directory}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            self._abandon()
            raise StartupError(
                f"another pycrid daemon (pid {holder}) uses {what} {directory}; "
                "give this one its own --state-dir and --run-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fds.append(fd)

    def _abandon(self) -> None:
        """Release, then remove what this lock made, newest first, if still empty."""
        self.release()
        for path in reversed(self._made):
            with contextlib.suppress(OSError):
                if path.name == LOCK_NAME and not path.is_dir():
                    path.unlink()
                else:
                    path.rmdir()
        self._made.clear()

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
