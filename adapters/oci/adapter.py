"""The oci adapter: pycrid pulls, stores and unpacks images itself and runs
containers with runc under conmon, the way CRI-O and containerd do.

Only the runtime information calls exist so far; the rest answers
UNIMPLEMENTED (see docs/adapters.md).
"""

from __future__ import annotations

import shutil

from pycrid.adapters.base import Adapter
from pycrid.api.cri import api_pb2 as cri


class OciAdapter(Adapter):
    name = "oci"

    async def status(self, request: cri.StatusRequest) -> cri.StatusResponse:
        runc = shutil.which("runc")
        runtime = cri.RuntimeCondition(type="RuntimeReady", status=False)
        runtime.reason = "RuntimeNotImplemented"
        runtime.message = "the oci adapter cannot run containers yet" + (
            "" if runc else " (and runc is not installed)"
        )
        network = cri.RuntimeCondition(
            type="NetworkReady",
            status=False,
            reason="NetworkPluginNotReady",
            message="the oci adapter has no pod networking yet",
        )
        return cri.StatusResponse(status=cri.RuntimeStatus(conditions=[runtime, network]))

    async def runtime_config(self, request: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        return cri.RuntimeConfigResponse(
            linux=cri.LinuxRuntimeConfiguration(cgroup_driver=cri.CGROUPFS)
        )
