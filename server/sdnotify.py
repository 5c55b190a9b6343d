"""Readiness and stopping notices to systemd (``Type=notify`` services).

The protocol is one datagram of ``KEY=VALUE`` lines sent to the Unix socket
named by ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract
namespace. Outside systemd the variable is unset and every notice is a no-op,
so the daemon calls these unconditionally.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("pycrid")


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``) to systemd; True when a datagram went out."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("ignoring NOTIFY_SOCKET %r: not a Unix socket path", address)
        return False
    message = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
    except OSError as e:
        log.warning("cannot notify systemd at %s: %s", address.replace("\0", "@"), e.strerror)
        return False
    return True


def ready(status: str) -> bool:
    """Tell systemd the daemon serves (``READY=1``) with a human-readable status."""
    return notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")


def stopping() -> bool:
    """Tell systemd the daemon is shutting down (``STOPPING=1``)."""
    return notify("STOPPING=1", "STATUS=shutting down")
