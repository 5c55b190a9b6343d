"""Where the gRPC server listens: a socket pycrid creates, or one systemd passed in.

The daemon drives either kind through the same steps: ``prepare`` before the
adapter starts (so a taken socket fails fast), ``address`` for gRPC to bind,
``serving`` once gRPC is up, ``stop_accepting`` on SIGTERM and ``close`` last.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import stat
from pathlib import Path

from pycrid.adapters.base import StartupError
from pycrid.adapters.config import Config
from pycrid.server.activation import listening_socket
from pycrid.server.relay import SocketRelay

log = logging.getLogger("pycrid")

SOCKET_MODE = 0o660
PRIVATE_DIR_MODE = 0o700


def prepare_socket(path: Path) -> None:
    """Create the socket's directory and clear a stale socket left by a crash.

    A socket that still accepts connections belongs to a running daemon and
    is never taken over.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StartupError(f"cannot create socket directory {path.parent}: {e.strerror}") from None
    if not path.parent.is_dir():
        raise StartupError(f"cannot create socket directory {path.parent}: not a directory")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise StartupError(f"cannot use socket path {path}: {e.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"socket path {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        log.info("removed stale socket %s", path)
        return
    finally:
        probe.close()
    raise StartupError(f"another daemon is serving on {path}")


def group_id(group: str) -> int:
    """The GID of a group given by name or number."""
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


class UnixListener:
    """``listen = "unix:///path"``: pycrid binds the socket and removes it on exit."""

    def __init__(self, config: Config) -> None:
        self.path = config.socket_path
        self.group = config.socket_group
        self.address = config.listen

    def prepare(self) -> None:
        prepare_socket(self.path)

    async def serving(self) -> None:
        os.chmod(self.path, SOCKET_MODE)
        if self.group:
            try:
                os.chown(self.path, -1, group_id(self.group))
            except (OSError, KeyError) as e:
                raise StartupError(f"cannot give {self.path} to group {self.group}: {e}") from None

    def stop_accepting(self) -> None:
        """gRPC's own shutdown stops accepting."""

    async def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class ActivatedListener:
    """``listen = "fd://"``: serve the socket systemd passed, through a relay.

    See ``server/relay.py`` for why gRPC binds a private socket instead. The
    passed socket is never unlinked: it belongs to ``pycrid.socket``.
    """

    def __init__(self, config: Config) -> None:
        self.listen = config.listen
        self.private = Path(config.run_dir) / "grpc" / "pycrid.sock"
        self.address = f"unix://{self.private}"
        self._relay: SocketRelay | None = None

    def prepare(self) -> None:
        listener = listening_socket(self.listen)
        directory = self.private.parent
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            os.chmod(directory, PRIVATE_DIR_MODE)
        except OSError as e:
            listener.close()
            raise StartupError(f"cannot create {directory}: {e.strerror}") from None
        prepare_socket(self.private)
        self._relay = SocketRelay(listener, self.private)

    async def serving(self) -> None:
        assert self._relay is not None
        await self._relay.start()
        with contextlib.suppress(OSError):
            log.info("socket from systemd: %s", self._relay.listener.getsockname() or "(unnamed)")

    def stop_accepting(self) -> None:
        if self._relay is not None:
            self._relay.stop_accepting()

    async def close(self) -> None:
        if self._relay is not None:
            await self._relay.stop()
        with contextlib.suppress(FileNotFoundError):
            self.private.unlink()


def listener_for(config: Config) -> UnixListener | ActivatedListener:
    """The listener ``config.listen`` asks for."""
    return ActivatedListener(config) if config.socket_activated else UnixListener(config)
