"""Pinning a network namespace to a file with a bind mount.

A pod's network namespace lives as long as a process is in it or a mount
refers to it. Pinning it under the run directory keeps it (and the path CNI
plugins were given) valid after the pause process is gone, so that CNI DEL
still finds the interfaces and releases the pod's IP.

A namespace is either pinned from a process already in it (``pin``) or made
empty and pinned before any process joins it (``create``), so that CNI can
set it up while the pause container is being created, as containerd does.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import threading
from pathlib import Path

from pycrid.adapters import errors

MS_BIND = 0x1000
CLONE_NEWNET = 0x40000000
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class NetnsError(errors.Internal):
    """Pinning or releasing a namespace failed."""


def pin(pid: int, path: Path) -> None:
    """Bind-mount ``/proc/<pid>/ns/net`` on ``path`` (created as an empty file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_pinned(path):
        return
    _bind(f"/proc/{pid}/ns/net", path, f"of pid {pid}")


def create(path: Path) -> None:
    """A new, empty network namespace pinned on ``path``.

    It is made by a thread of its own that ends right after: a thread that
    entered another namespace must never run anything else (a pool thread
    would start CNI plugins and conmon in it). Blocks for about a millisecond.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_pinned(path):
        return
    failures: list[BaseException] = []

    def make() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise NetnsError(f"cannot make a network namespace: {os.strerror(err)}")
            _bind(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, "made")
        except BaseException as e:  # handed to the caller
            failures.append(e)

    maker = threading.Thread(target=make, name="netns-create")
    maker.start()
    maker.join()
    if failures:
        raise failures[0]


def _bind(source: str, path: Path, what: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o444)
    os.close(fd)
    if _libc.mount(source.encode(), str(path).encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        with contextlib.suppress(OSError):
            path.unlink()
        raise NetnsError(f"cannot pin the network namespace {what}: {os.strerror(err)}")


def unpin(path: Path) -> None:
    """Undo ``pin``; a path that is not pinned (or gone) is fine."""
    while is_pinned(path):
        if _libc.umount2(str(path).encode(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                break
            raise NetnsError(f"cannot unmount {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def is_pinned(path: Path) -> bool:
    """True when a namespace is mounted on ``path``."""
    try:
        return path.stat().st_dev != path.parent.stat().st_dev or _is_nsfs(path)
    except OSError:
        return False


def _is_nsfs(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)
