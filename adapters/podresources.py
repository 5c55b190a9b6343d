"""UpdatePodSandboxResources, the same for both adapters: the pod cgroup's limits.

kubelet sends the pod's new total (overhead included) when it resizes a pod
in place. The limits go to the pod's own cgroup (node/podcgroup.py); they
are not recorded, because the cgroup keeps them as long as the pod lives.
When that cgroup is a systemd slice (the systemd cgroup driver), systemd owns
its files and would put its own values back on the next reload: the limits
go through the slice's unit properties instead (``systemctl set-property
--runtime``), which systemd writes to the files itself.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Sequence

from pycrid.adapters.errors import FailedPrecondition
from pycrid.adapters.node import podcgroup, systemdcgroup
from pycrid.adapters.node.cgroups import Hierarchy, host_hierarchy
from pycrid.adapters.records import RecordStore
from pycrid.api.cri import api_pb2 as cri

Members = Callable[[str], tuple[int, list[str]]]
"""A pod's pause PID (0 when not running) and the IDs of its pause and containers."""
SetProperty = Callable[[str, Sequence[str]], None]
SYSTEMCTL_TIMEOUT = 30.0


def systemctl_set_property(unit: str, properties: Sequence[str]) -> None:
    """``systemctl set-property --runtime UNIT PROPERTY...``; FailedPrecondition on failure."""
    argv = ["systemctl", "set-property", "--runtime", "--", unit, *properties]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FailedPrecondition(f"cannot set the limits of {unit}: {e}") from None
    if done.returncode != 0:
        message = done.stderr.strip() or f"exit status {done.returncode}"
        raise FailedPrecondition(f"cannot set the limits of {unit}: {message}")


class PodCgroupResources:
    """The adapters' ``pod_resources`` concern."""

    def __init__(
        self,
        members: Members,
        hierarchy: Hierarchy | None = None,
        systemd: bool | None = None,
        set_property: SetProperty = systemctl_set_property,
    ) -> None:
        self.members = members
        self._hierarchy = hierarchy
        self.systemd = systemdcgroup.booted_with_systemd() if systemd is None else systemd
        """Whether systemd runs this host, and so owns the slices it finds."""
        self.set_property = set_property

    async def update_pod_sandbox_resources(
        self, request: cri.UpdatePodSandboxResourcesRequest
    ) -> cri.UpdatePodSandboxResourcesResponse:
        pid, ids = self.members(request.pod_sandbox_id)
        if pid <= 0:
            raise FailedPrecondition(f"pod sandbox {request.pod_sandbox_id[:13]} is not running")
        if self._hierarchy is None:
            self._hierarchy = host_hierarchy()
        hierarchy = self._hierarchy

        def apply() -> None:
            dirs = podcgroup.pod_dirs(hierarchy, pid, ids)
            unit = next(iter(dirs.values())).name
            if self.systemd and unit.endswith(".slice"):
                properties = podcgroup.unit_properties(request.resources)
                if properties:
                    self.set_property(unit, properties)
                return
            podcgroup.apply_limits(dirs, request.resources, hierarchy.version)

        await asyncio.to_thread(apply)
        return cri.UpdatePodSandboxResourcesResponse()


def store_members(store: RecordStore) -> Members:
    """``Members`` from an adapter's store."""

    def members(sandbox_id: str) -> tuple[int, list[str]]:
        sandbox = store.sandbox(sandbox_id)
        ids = [sandbox.id, *(c.id for c in store.containers_of(sandbox.id))]
        return (sandbox.pid if sandbox.ready else 0), ids

    return members
