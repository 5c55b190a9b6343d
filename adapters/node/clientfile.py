"""Reading a file the client names, without ever blocking or reading without end.

A request can name any path on the node (a seccomp ``localhost_ref``, a log
file). Opening a FIFO blocks until someone opens its other end, and reading
``/dev/zero`` never ends; either on the event loop would freeze every call.
So the path is first opened with ``O_PATH``, which opens nothing behind it
(no FIFO wait, no device's open handler), and its type is checked on that
descriptor; only a regular file is then opened for reading, through the same
descriptor (so a file swapped in between is not the one read), with
``O_NONBLOCK`` all the same, and read up to a cap.
"""

from __future__ import annotations

import errno
import os
import stat

from pycrid.adapters.errors import InvalidArgument

MIB = 1 << 20


def describe(mode: int) -> str:
    """What kind of file ``mode`` is, in words for an error message."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "not a regular file"


def require_regular(fd: int, what: str) -> os.stat_result:
    """The descriptor's stat; InvalidArgument unless it is a regular file."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgument(f"{what} is {describe(st.st_mode)}, not a regular file")
    return st


def read_regular(path: str, limit: int, what: str) -> bytes:
    """The bytes of the regular file at absolute ``path``, at most ``limit`` of them.

    ``what`` names the field in errors ("seccomp profile /x"). Anything but
    a regular file, a missing file and a file above ``limit`` bytes are
    InvalidArgument; nothing here waits on a FIFO or a device.
    """
    if not path or not os.path.isabs(path):
        raise InvalidArgument(f"{what} is not an absolute path")
    if "\0" in path:
        raise InvalidArgument(f"{what} has a NUL byte")
    try:
        handle = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidArgument(f"{what} does not exist") from None
    except OSError as e:
        raise InvalidArgument(f"cannot open {what}: {e.strerror}") from None
    try:
        require_regular(handle, what)
        try:
            fd = os.open(
                f"/proc/self/fd/{handle}",
                os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
            )
        except OSError as e:
            raise InvalidArgument(f"cannot open {what}: {e.strerror}") from None
    finally:
        os.close(handle)
    try:
        st = require_regular(fd, what)
        if st.st_size > limit:
            raise InvalidArgument(f"{what} is larger than {_size(limit)}")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            try:
                chunk = os.read(fd, min(limit + 1 - total, 1 << 16))
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    raise InvalidArgument(f"{what} cannot be read without waiting") from None
                raise InvalidArgument(f"cannot read {what}: {e.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise InvalidArgument(f"{what} is larger than {_size(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _size(limit: int) -> str:
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    return f"{limit} bytes"
