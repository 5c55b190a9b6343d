"""Host device nodes given to a container: ``linux.devices`` and their cgroup rules.

A CRI device names a host path (a node, or a directory of nodes, symlinks
resolved) and where it appears in the container; runc creates a node of the
same type and number there, and the device cgroup lets the container use it
with the CRI's permissions. A privileged container gets every node of the
host's ``/dev`` and may use any device, as in containerd.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from pycrid.adapters.errors import InvalidArgument
from pycrid.api.cri import api_pb2 as cri

SKIPPED_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})
"""Directories of /dev that hold no device the container should get (or are mounts)."""
MAX_WALKED = 16384
"""Entries a device directory may hold, all levels together (a host's /dev has hundreds)."""
ALLOW_ALL = {"allow": True, "access": "rwm"}
DENY_ALL = {"allow": False, "access": "rwm"}
"""The first cgroup rule of every container; runc then allows its own default nodes."""


def device_node(path: str, container_path: str = "") -> dict[str, Any] | None:
    """The ``linux.devices`` entry of a host node; None when ``path`` is not one."""
    info = os.lstat(path)
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    else:
        return None
    return {
        "path": container_path or path,
        "type": kind,
        "major": os.major(info.st_rdev),
        "minor": os.minor(info.st_rdev),
        "fileMode": stat.S_IMODE(info.st_mode),
        "uid": info.st_uid,
        "gid": info.st_gid,
    }


def nodes_under(path: str, container_path: str, limit: int = MAX_WALKED) -> list[dict[str, Any]]:
    """Every device node at or below ``path``, placed below ``container_path``.

    A directory is walked through at most ``limit`` entries, else InvalidArgument:
    a device path of ``/`` must not walk the whole filesystem.
    """
    return _nodes_under(path, container_path, [limit], path, limit)


def _nodes_under(
    path: str, container_path: str, budget: list[int], named: str, limit: int
) -> list[dict[str, Any]]:
    if not os.path.isdir(path):
        node = device_node(path, container_path)
        return [node] if node else []
    found = []
    with os.scandir(path) as listing:
        entries = []
        for entry in listing:
            budget[0] -= 1
            if budget[0] < 0:
                raise InvalidArgument(
                    f"device {named[:64]} is a directory of more than {limit} entries"
                )
            entries.append(entry)
    for entry in sorted(entries, key=lambda e: e.name):
        target = os.path.join(container_path, entry.name)
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in SKIPPED_DIRS:
                found += _nodes_under(entry.path, target, budget, named, limit)
        elif entry.name != "console":
            try:
                node = device_node(entry.path, target)
            except FileNotFoundError:
                continue  # gone since the directory was read
            if node:
                found.append(node)
    return found


def host_devices() -> list[dict[str, Any]]:
    """Every device node of the host's /dev, for a privileged container."""
    return nodes_under("/dev", "/dev")


def cri_devices(devices: list[cri.Device]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(``linux.devices``, cgroup allow rules) for the CRI's devices."""
    nodes: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for device in devices:
        permissions = device.permissions or "rwm"
        if not set(permissions) <= set("rwm"):
            raise InvalidArgument(f"device permissions {permissions[:64]!r} are not from 'rwm'")
        if not device.host_path:
            raise InvalidArgument("a device has no host_path")
        container_path = device.container_path or device.host_path
        if not os.path.isabs(container_path):
            raise InvalidArgument(f"device path {container_path[:64]!r} is not absolute")
        source = os.path.realpath(device.host_path)
        if not os.path.exists(source):
            raise InvalidArgument(f"device {device.host_path[:64]} does not exist")
        found = nodes_under(source, container_path)
        if not found:
            raise InvalidArgument(f"{device.host_path[:64]} is not a device node")
        for node in found:
            nodes.append(node)
            rules.append(
                {
                    "allow": True,
                    "type": node["type"],
                    "major": node["major"],
                    "minor": node["minor"],
                    "access": permissions,
                }
            )
    return nodes, rules
