"""What the end-to-end tests share: the scratch daemon's names, tools, the critest lock.

The daemons themselves are started by ``pycrid.tools.scratchdaemon``, which the
benchmarks use too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pycrid.tools.scratchdaemon import (  # noqa: F401 - the tests' names for them
    BUSYBOX_IMAGE,
    DOCKER_SOCKET,
    LOCAL_MIRROR,
    LOCAL_REGISTRY,
    MIRRORED_REGISTRIES,
    OCI_BRIDGE,
    OCI_SUBNET,
    PAUSE_IMAGE,
    WEBSERVER_IMAGE,
    Daemon,
    base_config,
    docker_answers,
    merge,
    new_root,
    registry_answers,
    remove_root,
    start_daemon,
    write_cni_conf,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Where the project's machines keep crictl and critest when they are not on PATH.
SHARED_TOOLS = REPO_ROOT.parent / "shared" / "tools" / "bin"
# critest binds these host ports (host-port mapping and port-forward specs).
CRITEST_HOST_PORTS = range(12000, 12004)
CRITEST_LOCK = Path("/tmp/pycrid-critest.lock")


def in_ci() -> bool:
    """True under CI: CI is set to anything but "" or "false"."""
    return os.environ.get("CI", "").strip().lower() not in ("", "false")


def find_tool(name: str) -> str | None:
    """The path of the program ``name``: on PATH first, then in SHARED_TOOLS."""
    found = shutil.which(name)
    if found is not None:
        return found
    candidate = SHARED_TOOLS / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


@contextlib.contextmanager
def critest_lock() -> Iterator[None]:
    """Hold the machine-wide critest lock.

    critest binds fixed host ports, so two critest runs on one machine (two
    test sessions, say) must take turns.
    """
    with open(CRITEST_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
