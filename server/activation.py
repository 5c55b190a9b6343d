"""Listening sockets passed by systemd (socket activation, ``listen = "fd://"``).

systemd hands the sockets over as file descriptors from 3 up, announced by
``LISTEN_PID`` (which must be this process: the variables may have leaked from
a parent), ``LISTEN_FDS`` (how many) and optionally ``LISTEN_FDNAMES``
(their ``FileDescriptorName=``, colon-separated). The variables are removed
once read so that no child (conmon, CNI plugins) mistakes them for its own,
and the descriptors are made close-on-exec for the same reason.
"""

from __future__ import annotations

import os
import socket

from pycrid.adapters.base import StartupError
from pycrid.adapters.config import FD_SCHEME

LISTEN_FDS_START = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def passed_fds() -> list[tuple[int, str]]:
    """The descriptors systemd passed to this process, with their names; [] when none."""
    pid = os.environ.get("LISTEN_PID", "")
    count = os.environ.get("LISTEN_FDS", "")
    names = os.environ.get("LISTEN_FDNAMES", "")
    for name in _VARIABLES:
        os.environ.pop(name, None)
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return []
    fds = range(LISTEN_FDS_START, LISTEN_FDS_START + int(count))
    labels = names.split(":") if names else []
    labels += ["unknown"] * (len(fds) - len(labels))
    for fd in fds:
        os.set_inheritable(fd, False)
    return list(zip(fds, labels, strict=False))


def listening_socket(listen: str) -> socket.socket:
    """The passed socket ``listen`` names: ``fd://`` (the only one) or ``fd://<name>``.

    Raises StartupError unless it is a listening Unix stream socket.
    """
    wanted = listen.removeprefix(FD_SCHEME)
    passed = passed_fds()
    if not passed:
        raise StartupError(
            f"listen is {listen} but systemd passed no socket (LISTEN_FDS unset or for another "
            "process); start pycrid through pycrid.socket or listen on unix:///path"
        )
    if wanted:
        chosen = [fd for fd, name in passed if name == wanted]
        if not chosen:
            names = ", ".join(name for _, name in passed)
            raise StartupError(f"systemd passed no socket named {wanted!r} (passed: {names})")
    elif len(passed) != 1:
        raise StartupError(
            f"systemd passed {len(passed)} sockets; name one with fd://<FileDescriptorName>"
        )
    else:
        chosen = [passed[0][0]]
    try:
        sock = socket.socket(fileno=chosen[0])
    except OSError as e:
        raise StartupError(f"descriptor {chosen[0]} from systemd: {e.strerror}") from None
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise StartupError(f"descriptor {chosen[0]} from systemd is not a Unix stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise StartupError(f"descriptor {chosen[0]} from systemd is not listening")
    return sock
