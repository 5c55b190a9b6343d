"""The program a container or an exec runs: a name execve can take.

execve refuses a path longer than PATH_MAX or with a component longer than
NAME_MAX, and runc reports that failure with the name in its message: a
name of some 40 KiB wedges ``runc create`` or ``runc exec`` for good, and
with it the container in dockerd. So such a name is refused before any of
them sees it.
"""

from __future__ import annotations

from pycrid.adapters.errors import InvalidArgument

PATH_MAX = 4096
NAME_MAX = 255


def check_program(value: str, what: str) -> None:
    """Raise InvalidArgument unless ``value`` can name a program to execve."""
    if len(value.encode()) > PATH_MAX:
        raise InvalidArgument(f"{what} is longer than {PATH_MAX} bytes")
    if any(len(part.encode()) > NAME_MAX for part in value.split("/")):
        raise InvalidArgument(f"{what} {value[:64]!r} has a component longer than {NAME_MAX} bytes")
