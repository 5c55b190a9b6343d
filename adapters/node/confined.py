"""Opening a file below a directory without ever leaving it.

Container log paths come from the client: ``log_directory`` (absolute, the
pod's) and ``log_path`` (relative, the container's). pycrid runs as root, so
the file is opened one component at a time from the directory's descriptor
with ``O_NOFOLLOW``: a ``..`` or a symlink planted anywhere below the log
directory cannot send the container's output to another file.
"""

from __future__ import annotations

import contextlib
import errno
import os

from pycrid.adapters.errors import InvalidArgument

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: str, relative: str, flags: int, mode: int = 0o640) -> int:
    """A descriptor of ``root/relative``, made with missing parent directories.

    Raises InvalidArgument when ``relative`` is absolute, has ``..``, or
    crosses a symlink or a non-directory below ``root``.
    """
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if os.path.isabs(relative) or not parts or ".." in parts:
        raise InvalidArgument(f"{relative[:64]!r} is not a path inside {root[:64]!r}")
    os.makedirs(root, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            parent, fd = fd, _open_at(fd, part, DIR_FLAGS, 0, relative)
            os.close(parent)
        return _open_at(fd, parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, relative)
    finally:
        os.close(fd)


def _open_at(dir_fd: int, name: str, flags: int, mode: int, relative: str) -> int:
    try:
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
            raise InvalidArgument(
                f"{relative[:64]!r} crosses a symlink or a non-directory ({e.strerror})"
            ) from None
        raise
