"""Letting runc's init reach a rootfs whose host path the pod's root cannot search.

In a pod with a user namespace, runc 1.1's init prepares the rootfs as the
container's root, that is as the host UID/GID it maps to: it bind-mounts the
rootfs' host path onto itself and resolves every mount destination below it
by path. Each directory above the rootfs must then let that UID search it,
which a private ``0700`` directory owned by host root (a ``mkdtemp`` above
the state directory, say) does not. Making such a directory searchable on
the host would open it to everyone (CRI-O's ``makeAccessible`` adds ``--x--x--x``
to every parent). pycrid instead leaves the host as it is and has conmon run
``runc create`` through a wrapper (``python -m`` this module) that enters a
new mount namespace of its own, slave to the host's, and there covers each
such directory with a tmpfs of mode 0711 (search only, no listing) holding
bind mounts of the directory's real entries. Paths stay the same, so runc's
state, the bundle and the rootfs are where pycrid expects them; runc's init
inherits the view, pivots into the rootfs and drops the rest, and the
namespace ends with ``runc create``. Nothing outside it changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shlex
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

CLONE_NEWNS = 0x20000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 1 << 19
ACL_XATTR = "system.posix_acl_access"
WRAPPER = "runtime"
"""The wrapper's file name in the bundle."""


def unsearchable_parents(path: str | Path, uid: int, gid: int) -> list[str]:
    """The directories above ``path`` that host ``uid``/``gid`` (no other groups)
    cannot search, topmost first; "/" is never one (nothing could cover it).

    A directory with an ACL counts as unsearchable: covering it is harmless,
    and the ACL may deny what the mode bits allow.
    """
    found = []
    for parent in reversed(Path(os.path.realpath(path)).parents):
        if parent == Path("/"):
            continue
        st = os.stat(parent)
        if st.st_uid == uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid == gid:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed or _has_acl(parent):
            found.append(str(parent))
    return found


def _has_acl(path: Path) -> bool:
    try:
        os.getxattr(path, ACL_XATTR)
    except OSError:
        return False
    return True


def write_wrapper(bundle: Path, runtime: str, cover: Sequence[str]) -> Path:
    """The runtime conmon runs instead of ``runtime``: a script in the bundle."""
    argv = [sys.executable, "-I", "-m", __name__]
    for directory in cover:
        argv += ["--cover", directory]
    argv += ["--", runtime]
    script = bundle / WRAPPER
    script.write_text(f'#!/bin/sh\nexec {shlex.join(argv)} "$@"\n')
    script.chmod(0o700)
    return script


# The wrapper itself, run as root by conmon.

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount(source: str | None, target: str, kind: str | None, flags: int, data: str) -> None:
    encode = os.fsencode
    result = _libc.mount(
        None if source is None else encode(source),
        encode(target),
        None if kind is None else encode(kind),
        ctypes.c_ulong(flags),
        encode(data) if data else None,
    )
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def cover(directory: str) -> None:
    """Replace ``directory``, in this mount namespace, with a searchable tmpfs
    that holds bind mounts of its entries."""
    real = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        names = os.listdir(real)
        _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0711")
        for name in names:
            source = f"/proc/self/fd/{real}/{name}"
            target = os.path.join(directory, name)
            st = os.stat(name, dir_fd=real, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(name, dir_fd=real), target)
                continue
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(target, 0o700)
            else:
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            _mount(source, target, None, MS_BIND | MS_REC, "")
    finally:
        os.close(real)


def main(argv: Sequence[str]) -> None:
    """``--cover DIR ... -- RUNTIME ARGS...``: cover the directories, then exec the runtime."""
    args = list(argv)
    directories = []
    while args and args[0] == "--cover":
        directories.append(args[1])
        del args[:2]
    if not args or args[0] != "--" or len(args) < 2:
        raise SystemExit("usage: reach [--cover DIR]... -- RUNTIME [ARG]...")
    runtime = args[1:]
    try:
        if _libc.unshare(CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
        _mount(None, "/", None, MS_REC | MS_SLAVE, "")
        for directory in directories:
            cover(directory)
    except OSError as e:
        print(f"pycrid runtime wrapper: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    os.execv(runtime[0], runtime)


if __name__ == "__main__":
    main(sys.argv[1:])
