"""Opening a file below a directory without ever leaving it.

Container log paths come from the client: ``log_directory`` (absolute, the
pod's) and ``log_path`` (relative, the container's). pycrid runs as root, so
the file is opened one component at a time from the directory's descriptor
with ``O_NOFOLLOW``: a ``..`` or a symlink planted anywhere below the log
directory cannot send the container's output to another file. The log
directory itself must not be a symlink either (its parents may be).

The file must be a regular file: it is opened with ``O_NONBLOCK`` (a FIFO
there fails at once instead of blocking the event loop until someone reads
it) after a look through ``O_PATH`` that opens no device, and is refused
when it is anything else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node.clientfile import describe, require_regular

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: str, relative: str, flags: int, mode: int = 0o640) -> int:
    """A descriptor of ``root/relative``, made with missing parent directories.

    Raises InvalidArgument when ``relative`` is absolute, has ``..``, or
    crosses a symlink or a non-directory below ``root``, when ``root`` is a
    symlink, and when the file is not a regular file.
    """
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if os.path.isabs(relative) or not parts or ".." in parts:
        raise InvalidArgument(f"{relative[:64]!r} is not a path inside {root[:64]!r}")
    if "\0" in root or "\0" in relative:
        raise InvalidArgument("a log path has a NUL byte")
    try:
        os.makedirs(root, exist_ok=True)
        fd = os.open(root, DIR_FLAGS)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ELOOP, errno.ENOTDIR):
            raise InvalidArgument(
                f"log_directory {root[:64]!r} is a symlink or not a directory"
            ) from None
        raise
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            parent, fd = fd, _open_at(fd, part, DIR_FLAGS, 0, relative)
            os.close(parent)
        return _open_file(fd, parts[-1], flags, mode, relative)
    finally:
        os.close(fd)


def remove_beneath(root: str, path: str) -> None:
    """Remove whatever non-directory is at ``path`` (absolute, below ``root``), if anything,
    without following a symlink on the way."""
    relative = os.path.relpath(path, root)
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or "\0" in path:
        raise InvalidArgument(f"{relative[:64]!r} is not a path inside {root[:64]!r}")
    try:
        fd = os.open(root, DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError as e:
        raise InvalidArgument(
            f"log directory {root[:64]!r} cannot be opened: {e.strerror}"
        ) from None
    try:
        for part in parts[:-1]:
            try:
                parent, fd = fd, _open_at(fd, part, DIR_FLAGS, 0, relative)
            except FileNotFoundError:
                return
            os.close(parent)
        try:
            os.unlink(parts[-1], dir_fd=fd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise InvalidArgument(f"{relative[:64]!r} is a directory") from None
    finally:
        os.close(fd)


def make_file(root: str, path: str, mode: int = 0o640) -> None:
    """Make the regular file at ``path`` (absolute, below ``root``) if it is missing,
    checked as ``open_beneath`` checks it: done before a container is made, so
    that a log path no one can write to is refused before any work."""
    os.close(open_beneath(root, os.path.relpath(path, root), os.O_WRONLY | os.O_CREAT, mode))


def _open_file(dir_fd: int, name: str, flags: int, mode: int, relative: str) -> int:
    """The last component: a regular file, opened without waiting on anything."""
    what = f"log file {relative[:64]!r}"
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{what} is {describe(st.st_mode)}, not a regular file")
    try:
        fd = _open_at(
            dir_fd, name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, relative
        )
    except OSError as e:
        if e.errno == errno.ENXIO:  # a FIFO with no reader, swapped in since the stat
            raise InvalidArgument(f"{what} is a FIFO, not a regular file") from None
        raise
    try:
        require_regular(fd, what)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_at(dir_fd: int, name: str, flags: int, mode: int, relative: str) -> int:
    try:
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
            raise InvalidArgument(
                f"{relative[:64]!r} crosses a symlink or a non-directory ({e.strerror})"
            ) from None
        raise
