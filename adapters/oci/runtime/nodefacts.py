"""What the spec translation needs to know about this node, read once at start-up.

``HostFacts`` (shared with the docker adapter) says what the host withholds;
this adds what only an OCI spec cares about: the cgroup version and
controllers, whether runc can make recursive read-only mounts, the machine
architecture (for the seccomp filter), the node's hostname and the cgroup
under which pods go when the CRI names none. Tests build it by hand.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrid.adapters.node.cgroups import host_hierarchy
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.oci.runtime.devices import host_devices

CGROUP_ROOT = Path("/sys/fs/cgroup")
DEFAULT_CGROUP_PARENT = "/pycrid"
"""Where pods go when the CRI gives no cgroup_parent (critest, crictl without one).

containerd leaves ``cgroupsPath`` unset then, and runc nests the container
under its caller's cgroup, which for pycrid would be the monitor's. A named
parent keeps every pycrid container in one place, visible to an operator.
"""
DEFAULT_SLICE = "pycrid.slice"
"""The same place under the systemd cgroup driver: ``/pycrid.slice``."""
CONTAINER_SCOPE_PREFIX = "pycrid"
"""Containers run in ``pycrid-<id>.scope`` under the systemd driver."""
RRO_KERNEL = (5, 12)
"""mount_setattr(2), which runc needs for recursive read-only mounts."""


@dataclass(frozen=True)
class NodeFacts:
    host: HostFacts = field(default_factory=HostFacts)
    cgroup_v2: bool = False
    swap_controller: bool = True
    """Whether memory+swap can be limited (v1 ``memory.memsw.*``, v2 ``memory.swap.max``)."""
    hugetlb_controller: bool = True
    controllers: frozenset[str] | None = None
    """The cgroup controllers mounted (v1) or available (v2); None: all of them.

    A limit whose controller is missing is left out of the spec with a note,
    as containerd does, instead of failing every container."""
    recursive_read_only: bool = True
    arch: str = "x86_64"
    """``uname -m`` of the node."""
    hostname: str = "localhost"
    cgroup_parent: str = DEFAULT_CGROUP_PARENT
    systemd_cgroups: bool = False
    """runc's systemd cgroup driver: pods in slices, containers and monitors in scopes."""
    list_host_devices: Callable[[], list[dict[str, Any]]] = field(
        default=host_devices, compare=False
    )
    """Every device node of the host, in ``linux.devices`` form (privileged containers)."""

    @classmethod
    def probe(
        cls, host: HostFacts, cgroup_manager: str = "cgroupfs", cgroup_parent: str = ""
    ) -> NodeFacts:
        """The node's facts; ``cgroup_manager`` is "systemd" or "cgroupfs"."""
        v2 = (CGROUP_ROOT / "cgroup.controllers").is_file()
        controllers = _controllers(v2)
        systemd = cgroup_manager == "systemd"
        return cls(
            host=host,
            cgroup_v2=v2,
            swap_controller=_swap_controller(v2),
            hugetlb_controller="hugetlb" in controllers,
            controllers=controllers,
            recursive_read_only=_kernel_at_least(RRO_KERNEL),
            arch=platform.machine(),
            hostname=socket.gethostname(),
            cgroup_parent=cgroup_parent or (DEFAULT_SLICE if systemd else DEFAULT_CGROUP_PARENT),
            systemd_cgroups=systemd,
        )


def _swap_controller(v2: bool) -> bool:
    if not v2:
        return (CGROUP_ROOT / "memory" / "memory.memsw.limit_in_bytes").exists()
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                own = line[3:].lstrip("/")
                return (CGROUP_ROOT / own / "memory.swap.max").exists()
    except OSError:
        pass
    return False


def _controllers(v2: bool) -> frozenset[str]:
    """What is mounted, not what has a directory: kubelet makes a directory for
    every controller it knows, ``hugetlb`` too, where none is mounted."""
    if not v2:
        return frozenset(host_hierarchy().v1)
    try:
        return frozenset((CGROUP_ROOT / "cgroup.controllers").read_text().split())
    except OSError:
        return frozenset()


def _kernel_at_least(version: tuple[int, int]) -> bool:
    numbers = []
    for part in os.uname().release.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit()) or "0"
        numbers.append(int(digits))
    return tuple(numbers) >= version
