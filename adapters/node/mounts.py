"""mount(2) and umount2(2) called directly, not through the mount program.

Every pod start mounts an overlay root filesystem for the pause container and
one per container, and a tmpfs for the pod's /dev/shm; running util-linux's
``mount`` for each cost an exec and a few milliseconds of CPU apiece.
Python 3.11 has no mount call, hence libc through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

FLAG_OPTIONS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
"""The mount options that are flags; the rest go to the file system as data."""

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class MountError(OSError):
    """mount or umount failed; ``errno`` and ``strerror`` say why."""


def split_options(options: str) -> tuple[int, str]:
    """(flags, data) of a comma-separated option string as ``mount -o`` takes it."""
    flags = 0
    data = []
    for option in filter(None, options.split(",")):
        if option in FLAG_OPTIONS:
            flags |= FLAG_OPTIONS[option]
        else:
            data.append(option)
    return flags, ",".join(data)


def mount(source: str, target: Path, fstype: str, options: str = "") -> None:
    """``mount -t fstype -o options source target``; blocks, call it from a thread."""
    flags, data = split_options(options)
    if (
        _libc.mount(
            source.encode(), os.fsencode(target), fstype.encode(), flags, data.encode() or None
        )
        != 0
    ):
        err = ctypes.get_errno()
        raise MountError(err, f"mount -t {fstype} on {target}: {os.strerror(err)}")


def unmount(target: Path, *, lazy: bool = False) -> None:
    """Unmount ``target`` (not following a symlink there); ``lazy`` detaches a busy one.

    A target that is not mounted, or gone, is fine.
    """
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if lazy else 0)
    if _libc.umount2(os.fsencode(target), flags) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return
        raise MountError(err, f"umount {target}: {os.strerror(err)}")
