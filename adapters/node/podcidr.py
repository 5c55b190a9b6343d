"""The pod CIDR kubelet hands the runtime (UpdateRuntimeConfig), kept across restarts."""

from __future__ import annotations

import logging
from pathlib import Path

from pycrid.adapters.node import atomicfile
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid")


class PodCidr:
    """The last pod CIDR kubelet sent, in ``<state dir>/runtime-config.json``."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "runtime-config.json"
        self.value = ""

    def load(self) -> None:
        """Read back the pod CIDR saved before a restart."""
        saved = atomicfile.read_json(self._path, default={})
        self.value = saved.get("pod_cidr", "")

    async def update_runtime_config(
        self, request: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        pod_cidr = request.runtime_config.network_config.pod_cidr
        if pod_cidr and pod_cidr != self.value:
            await atomicfile.write_json_async(self._path, {"pod_cidr": pod_cidr})
            self.value = pod_cidr
            log.info("pod CIDR set to %s", pod_cidr)
        return cri.UpdateRuntimeConfigResponse()
