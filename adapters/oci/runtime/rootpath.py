"""Reading a file inside a container's root filesystem as the container would see it.

The rootfs comes from an image, and images are untrusted: ``/etc/passwd`` may
be a symlink to ``/etc/shadow`` of the host, or ``/etc`` a symlink to ``..``.
pycrid runs as root, so the path is walked one component at a time from
directory descriptors, and every symlink is resolved *inside* the rootfs: an
absolute target starts again at the rootfs, ``..`` never climbs above it
(the kernel's ``RESOLVE_IN_ROOT``, done by hand). Each component is opened
with ``O_NOFOLLOW``, so a symlink swapped in between the check and the open
fails instead of being followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque

from pycrid.adapters.errors import Internal, InvalidArgument

MAX_SYMLINKS = 40
"""As many as the kernel follows in one lookup."""
MAX_BYTES = 4 << 20
"""/etc/passwd and /etc/group larger than this are not user databases."""

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def read_in_root(root: str, relative: str, max_bytes: int = MAX_BYTES) -> bytes | None:
    """The contents of ``relative`` inside ``root``; None when it does not exist.

    Raises InvalidArgument when the path loops, names something other than a
    regular file, or is larger than ``max_bytes``; Internal when the rootfs
    cannot be read.
    """
    try:
        return _read_in_root(root, relative, max_bytes)
    except OSError as e:
        raise Internal(f"cannot read {relative[:64]!r} in {root[:64]}: {e.strerror}") from None


def _read_in_root(root: str, relative: str, max_bytes: int) -> bytes | None:
    parts = deque(relative.split("/"))
    stack = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    links = 0
    try:
        while parts:
            name = parts.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                info = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise InvalidArgument(f"too many symlinks in {relative[:64]!r} of the image")
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts.extendleft(reversed(target.split("/")))
                continue
            if not parts:
                return _read_regular(stack[-1], name, relative, max_bytes)
            if not stat.S_ISDIR(info.st_mode):
                return None
            stack.append(_open(stack[-1], name, DIR_FLAGS, relative))
        return None
    finally:
        for fd in stack:
            os.close(fd)


def _open(dir_fd: int, name: str, flags: int, relative: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            # Replaced by a symlink or a file since it was looked at.
            raise InvalidArgument(f"{relative[:64]!r} changed while it was read") from None
        raise


def _read_regular(dir_fd: int, name: str, relative: str, max_bytes: int) -> bytes:
    fd = _open(dir_fd, name, FILE_FLAGS, relative)
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgument(f"{relative[:64]!r} in the image is not a regular file")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidArgument(f"{relative[:64]!r} in the image is larger than {max_bytes} bytes")
    return data
