"""ID-mapped mounts, which pycrid makes itself because runc 1.1 cannot.

An ID-mapped mount shows a filesystem with its owners translated through a
user namespace's mapping: with ``0 100000 65536``, a file that host root owns
on disk appears owned by host UID 100000, which is root inside a pod whose user
namespace has that mapping. The kernel (5.12+, and per filesystem) makes one
from a detached copy of a mount: ``open_tree(OPEN_TREE_CLONE)``, then
``mount_setattr(MOUNT_ATTR_IDMAP)`` with a descriptor of the user namespace,
then ``move_mount`` onto a path. runc 1.2 does this for ``mounts[]`` that
carry ``uidMappings``; runc 1.1 has no such code, so pycrid makes the mounts
on *staging* paths under its run directory and gives runc plain bind mounts of
them. They are needed only until ``runc create`` has bound them into the
container (or overlayfs has taken its own reference to a lower layer), then
detached: nothing stays mounted on the host.

The user namespace whose mapping a mount uses need not be the pod's: a
short-lived helper (``unshare --user cat``) gets a new one, pycrid writes the
mapping into its ``uid_map`` and ``gid_map``, and a descriptor of it outlives
the helper for as long as pycrid needs it.

Python 3.11 has none of these calls, hence libc's ``syscall`` through ctypes.
The numbers of the new mount calls are the same on every architecture
(the kernel's unified table from 5.1 on).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from pycrid.adapters.errors import Internal, InvalidArgument

SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x100000
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

HELPER_TIMEOUT = 10.0
"""Seconds for the helper process to be running in its new user namespace."""

IdMappings = Sequence[Mapping[str, int]]
"""OCI form: ``[{"containerID": 0, "hostID": 100000, "size": 65536}]``."""

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def map_text(mappings: IdMappings) -> str:
    """The ``/proc/<pid>/uid_map`` lines of OCI mappings."""
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


@contextlib.asynccontextmanager
async def user_namespace(uid_mappings: IdMappings, gid_mappings: IdMappings) -> AsyncIterator[int]:
    """A descriptor of a new user namespace with these mappings, closed on exit.

    Raises InvalidArgument when the kernel refuses the mappings.
    """
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    helper = await asyncio.create_subprocess_exec(
        *(unshare, "--user", "--", "cat"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert helper.stdin is not None and helper.stdout is not None
        # cat echoes the line once it runs, that is once unshare(2) is done.
        try:
            helper.stdin.write(b"\n")
            await helper.stdin.drain()
            echoed = await asyncio.wait_for(helper.stdout.readline(), HELPER_TIMEOUT)
        except (TimeoutError, ConnectionError):
            echoed = b""
        if not echoed:
            with contextlib.suppress(ProcessLookupError):
                helper.kill()
            assert helper.stderr is not None
            said = (await helper.stderr.read()).decode(errors="replace").strip()
            raise Internal(f"cannot make a user namespace with {unshare}: {said or 'no answer'}")
        for name, mappings in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
            try:
                Path(f"/proc/{helper.pid}/{name}").write_text(map_text(mappings))
            except OSError as e:
                raise InvalidArgument(
                    f"the kernel refuses the ID mapping {map_text(mappings).strip()!r}: "
                    f"{e.strerror}"
                ) from None
        fd = os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        with contextlib.suppress(ProcessLookupError):
            helper.kill()
        await helper.wait()
    try:
        yield fd
    finally:
        os.close(fd)


def mount_idmapped(source: str | Path, target: str | Path, userns_fd: int, recursive: bool) -> None:
    """Mount an ID-mapped copy of the mount tree at ``source`` on ``target``.

    ``recursive`` copies (and maps) the mounts below ``source`` too. Raises
    OSError: EINVAL when a filesystem cannot be ID-mapped.
    """
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    tree = _check(
        _libc.syscall(
            ctypes.c_long(SYS_OPEN_TREE),
            ctypes.c_int(AT_FDCWD),
            ctypes.c_char_p(os.fsencode(source)),
            ctypes.c_uint(flags),
        ),
        f"open_tree {source}",
    )
    try:
        attr = _MountAttr(attr_set=MOUNT_ATTR_IDMAP, userns_fd=userns_fd)
        _check(
            _libc.syscall(
                ctypes.c_long(SYS_MOUNT_SETATTR),
                ctypes.c_int(tree),
                ctypes.c_char_p(b""),
                ctypes.c_uint(AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)),
                ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)),
            ),
            f"mount_setattr {source}",
        )
        _check(
            _libc.syscall(
                ctypes.c_long(SYS_MOVE_MOUNT),
                ctypes.c_int(tree),
                ctypes.c_char_p(b""),
                ctypes.c_int(AT_FDCWD),
                ctypes.c_char_p(os.fsencode(target)),
                ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
            ),
            f"move_mount {target}",
        )
    finally:
        os.close(tree)


def detach(path: str | Path) -> None:
    """Lazily unmount everything mounted on ``path``; nothing mounted there is fine."""
    encoded = os.fsencode(path)
    while _libc.umount2(encoded, MNT_DETACH | UMOUNT_NOFOLLOW) == 0:
        pass
    err = ctypes.get_errno()
    if err not in (errno.EINVAL, errno.ENOENT):
        raise OSError(err, f"cannot unmount {path}: {os.strerror(err)}")


def make_mount_point(path: Path, like: str | Path) -> None:
    """An empty directory, or an empty file when ``like`` is not a directory."""
    if os.path.isdir(like):
        path.mkdir(mode=0o700)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))


def clear_entry(entry: Path) -> str:
    """Detach what is mounted on ``entry`` and remove it; "" or what went wrong.

    Never recursive: a path still mounted must not be emptied through the mount.
    """
    try:
        detach(entry)
        if entry.is_dir() and not entry.is_symlink():
            entry.rmdir()
        else:
            entry.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        return f"{entry}: {e.strerror or e}"
    return ""


def clear_staging(directory: Path) -> list[str]:
    """Detach every mount staged in ``directory`` (one level deep) and remove them
    and it; returns what could not go."""
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    problems = [p for p in map(clear_entry, entries) if p]
    if not problems:
        with contextlib.suppress(OSError):
            directory.rmdir()
    return problems
