"""Status, RuntimeConfig and UpdateRuntimeConfig on the docker adapter."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.docker.api import DockerApi
from pycrid.adapters.errors import CRIError
from pycrid.adapters.node import atomicfile, cni
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker")


class DockerRuntimeInfo:
    """What the runtime reports about itself, and the pod CIDR kubelet hands it."""

    def __init__(self, config: Config, client: DockerApi, state_dir: Path) -> None:
        self.config = config
        self.client = client
        self._runtime_config_path = state_dir / "runtime-config.json"
        self.pod_cidr = ""

    def load(self) -> None:
        """Read back the pod CIDR saved before a restart."""
        saved = atomicfile.read_json(self._runtime_config_path, default={})
        self.pod_cidr = saved.get("pod_cidr", "")

    def _network_problem(self) -> str:
        """Why pod networking cannot work, or "" when it can."""
        if self.config.network.mode != "cni":
            return ""
        return cni.network_problem(
            self.config.network.cni_conf_dir, self.config.network.cni_bin_dirs
        )

    async def status(self, request: cri.StatusRequest) -> cri.StatusResponse:
        runtime_ready = await self.client.ping()
        runtime = cri.RuntimeCondition(type="RuntimeReady", status=runtime_ready)
        if not runtime_ready:
            runtime.reason = "DockerDaemonNotReady"
            runtime.message = f"docker is not reachable at {self.client.endpoint}"
        problem = self._network_problem()
        if not runtime_ready and not problem:
            problem = "docker is not reachable, so neither is its network"
        network = cri.RuntimeCondition(type="NetworkReady", status=not problem)
        if problem:
            network.reason = "NetworkPluginNotReady"
            network.message = problem
        response = cri.StatusResponse(
            status=cri.RuntimeStatus(conditions=[runtime, network]),
            runtime_handlers=[
                cri.RuntimeHandler(name=name, features=cri.RuntimeHandlerFeatures())
                for name in await self._runtime_handlers(runtime_ready)
            ],
            features=cri.RuntimeFeatures(supplemental_groups_policy=False),
        )
        if request.verbose:
            response.info["config"] = json.dumps(self.config.to_dict())
            response.info["podCIDR"] = self.pod_cidr
        return response

    async def _runtime_handlers(self, runtime_ready: bool) -> list[str]:
        """ "" (the default) and the OCI runtimes dockerd knows."""
        handlers = [""]
        if runtime_ready:
            try:
                info = await self.client.info()
            except CRIError:
                return handlers
            handlers += sorted(info.get("Runtimes") or {})
        return handlers

    async def runtime_config(self, request: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        info = await self.client.info()
        driver = cri.SYSTEMD if info.get("CgroupDriver") == "systemd" else cri.CGROUPFS
        return cri.RuntimeConfigResponse(linux=cri.LinuxRuntimeConfiguration(cgroup_driver=driver))

    async def update_runtime_config(
        self, request: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        pod_cidr = request.runtime_config.network_config.pod_cidr
        if pod_cidr and pod_cidr != self.pod_cidr:
            await atomicfile.write_json_async(self._runtime_config_path, {"pod_cidr": pod_cidr})
            self.pod_cidr = pod_cidr
            log.info("pod CIDR set to %s", pod_cidr)
        return cri.UpdateRuntimeConfigResponse()
