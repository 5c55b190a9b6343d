"""The docker adapter: the CRI carried out on the Docker Engine API.

Pods are pause containers and app containers join their namespaces, the way
dockershim and cri-dockerd do it. Docker keeps the truth (labels on the
containers); pycrid keeps only small checkpoint files beside it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pycrid.adapters.base import Adapter
from pycrid.adapters.docker.client import DockerClient
from pycrid.adapters.docker.images import DockerImages
from pycrid.api.cri import api_pb2 as cri
from pycrid.server import atomicfile
from pycrid.server.config import Config

log = logging.getLogger("pycrid.docker")

CNI_CONFIG_SUFFIXES = (".conf", ".conflist", ".json")


class DockerAdapter(Adapter):
    name = "docker"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.client = DockerClient(config.docker.endpoint)
        self.state_dir = Path(config.state_dir) / "docker"
        self.images = DockerImages(self.client, config, self.state_dir)
        self._runtime_config_path = self.state_dir / "runtime-config.json"
        self.pod_cidr = ""

    async def start(self) -> None:
        await self.client.connect(self.config.docker.startup_timeout)
        saved = atomicfile.read_json(self._runtime_config_path, default={})
        self.pod_cidr = saved.get("pod_cidr", "")

    async def close(self) -> None:
        await self.client.close()

    # Runtime information.

    def _network_problem(self) -> str:
        """Why pod networking cannot work, or "" when it can."""
        if self.config.network.mode != "cni":
            return ""
        conf_dir = Path(self.config.network.cni_conf_dir)
        try:
            configs = [p for p in conf_dir.iterdir() if p.suffix in CNI_CONFIG_SUFFIXES]
        except OSError:
            configs = []
        if not configs:
            return f"no CNI network config found in {conf_dir}"
        return ""

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
                info = await self.client.call("info")
            except Exception:
                return handlers
            handlers += sorted(info.get("Runtimes") or {})
        return handlers

    async def runtime_config(self, request: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        info = await self.client.call("info")
        driver = cri.SYSTEMD if info.get("CgroupDriver") == "systemd" else cri.CGROUPFS
        return cri.RuntimeConfigResponse(linux=cri.LinuxRuntimeConfiguration(cgroup_driver=driver))

    async def update_runtime_config(
        self, request: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        pod_cidr = request.runtime_config.network_config.pod_cidr
        if pod_cidr and pod_cidr != self.pod_cidr:
            atomicfile.write_json(self._runtime_config_path, {"pod_cidr": pod_cidr})
            self.pod_cidr = pod_cidr
            log.info("pod CIDR set to %s", pod_cidr)
        return cri.UpdateRuntimeConfigResponse()

    # Images.

    async def list_images(self, request: cri.ListImagesRequest) -> cri.ListImagesResponse:
        return await self.images.list_images(request)

    async def image_status(self, request: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        return await self.images.status(request)

    async def pull_image(self, request: cri.PullImageRequest) -> cri.PullImageResponse:
        return await self.images.pull(request)

    async def remove_image(self, request: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        return await self.images.remove(request)

    async def image_fs_info(self, request: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        return await self.images.fs_info(request)
