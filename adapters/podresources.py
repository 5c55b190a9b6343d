"""UpdatePodSandboxResources, the same for both adapters: the pod cgroup's limits.

kubelet sends the pod's new total (overhead included) when it resizes a pod
in place. The limits go to the pod's own cgroup (node/podcgroup.py); they
are not recorded, because the cgroup keeps them as long as the pod lives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pycrid.adapters.errors import FailedPrecondition
from pycrid.adapters.node import podcgroup
from pycrid.adapters.node.cgroups import Hierarchy, host_hierarchy
from pycrid.adapters.records import RecordStore
from pycrid.api.cri import api_pb2 as cri

Members = Callable[[str], tuple[int, list[str]]]
"""A pod's pause PID (0 when not running) and the IDs of its pause and containers."""


class PodCgroupResources:
    """The adapters' ``pod_resources`` concern."""

    def __init__(self, members: Members) -> None:
        self.members = members
        self._hierarchy: Hierarchy | None = None

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
