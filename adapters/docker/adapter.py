"""The docker adapter: the CRI carried out on the Docker Engine API.

Pods are pause containers and app containers join their namespaces, the way
dockershim and cri-dockerd do it. Docker keeps the truth (labels on the
containers); pycrid keeps only small checkpoint files beside it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pycrid.adapters.base import ImageBackedAdapter
from pycrid.adapters.docker import naming, recovery, spec
from pycrid.adapters.docker.client import DockerClient
from pycrid.adapters.docker.containers import DockerContainers
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.execsync import exec_sync
from pycrid.adapters.docker.images import DockerImages
from pycrid.adapters.docker.logs import LogCopiers
from pycrid.adapters.docker.sandboxes import DockerSandboxes
from pycrid.adapters.docker.spec import HostFacts
from pycrid.adapters.docker.stats import DockerStats
from pycrid.adapters.docker.store import Checkpoints, Store
from pycrid.adapters.docker.streaming import DockerStreamingRuntime
from pycrid.api.cri import api_pb2 as cri
from pycrid.server import atomicfile, cni, errors
from pycrid.server.config import Config
from pycrid.server.streaming.server import StreamingServer

log = logging.getLogger("pycrid.docker")


class DockerAdapter(ImageBackedAdapter):
    name = "docker"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.client = DockerClient(config.docker.endpoint)
        self.state_dir = Path(config.state_dir) / "docker"
        self.images = DockerImages(self.client, config, self.state_dir)
        self.logs = LogCopiers(self.client, self.state_dir)
        self._runtime_config_path = self.state_dir / "runtime-config.json"
        self.pod_cidr = ""
        self.ctx = DockerContext(
            config=config,
            client=self.client,
            images=self.images,
            store=Store(Checkpoints(self.state_dir)),
            instance=naming.instance_id(config.state_dir),
            sandbox_ids=self.sandbox_ids,
            container_ids=self.container_ids,
            cni=cni.CniRunner(config.network.cni_bin_dirs),
            run_dir=Path(config.run_dir) / "docker",
            host=HostFacts.probe(),
            log_copiers=self.logs,
        )
        self.containers = DockerContainers(self.ctx)
        self.sandboxes = DockerSandboxes(self.ctx, self.containers)
        self.stats = DockerStats(self.ctx, self.containers)

    async def start(self) -> None:
        await self.client.connect(self.config.docker.startup_timeout)
        for limit in spec.describe_limits(self.ctx.host):
            log.warning("%s", limit)
        saved = atomicfile.read_json(self._runtime_config_path, default={})
        self.pod_cidr = saved.get("pod_cidr", "")
        await recovery.recover(self.ctx)

    async def close(self) -> None:
        self.stats.close()
        await self.logs.close()
        await self.client.close()

    # Runtime information.

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

    # Pod sandboxes (sandboxes.py).

    async def run_pod_sandbox(self, request: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
        return await self.sandboxes.run(request)

    async def stop_pod_sandbox(
        self, request: cri.StopPodSandboxRequest
    ) -> cri.StopPodSandboxResponse:
        return await self.sandboxes.stop(request)

    async def remove_pod_sandbox(
        self, request: cri.RemovePodSandboxRequest
    ) -> cri.RemovePodSandboxResponse:
        return await self.sandboxes.remove(request)

    async def pod_sandbox_status(
        self, request: cri.PodSandboxStatusRequest
    ) -> cri.PodSandboxStatusResponse:
        return await self.sandboxes.status(request)

    async def list_pod_sandbox(
        self, request: cri.ListPodSandboxRequest
    ) -> cri.ListPodSandboxResponse:
        return await self.sandboxes.list(request)

    # Containers (containers.py).

    async def create_container(
        self, request: cri.CreateContainerRequest
    ) -> cri.CreateContainerResponse:
        return await self.containers.create(request)

    async def start_container(
        self, request: cri.StartContainerRequest
    ) -> cri.StartContainerResponse:
        return await self.containers.start(request)

    async def stop_container(self, request: cri.StopContainerRequest) -> cri.StopContainerResponse:
        return await self.containers.stop(request)

    async def remove_container(
        self, request: cri.RemoveContainerRequest
    ) -> cri.RemoveContainerResponse:
        return await self.containers.remove(request)

    async def list_containers(
        self, request: cri.ListContainersRequest
    ) -> cri.ListContainersResponse:
        return await self.containers.list(request)

    async def container_status(
        self, request: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse:
        response = await self.containers.status(request)
        if response.status.state == cri.CONTAINER_EXITED:
            # Once a client sees EXITED, the container's log file is complete.
            await self.logs.wait_copied(request.container_id)
        return response

    async def update_container_resources(
        self, request: cri.UpdateContainerResourcesRequest
    ) -> cri.UpdateContainerResourcesResponse:
        return await self.containers.update_resources(request)

    # Container logs and ExecSync.

    async def reopen_container_log(
        self, request: cri.ReopenContainerLogRequest
    ) -> cri.ReopenContainerLogResponse:
        info = await self.client.call("inspect_container", request.container_id)
        if not (info.get("State") or {}).get("Running"):
            # The CRI allows an error here, and then no new file may appear.
            raise errors.FailedPrecondition("container is not running")
        await self.logs.reopen(request.container_id)
        return cri.ReopenContainerLogResponse()

    async def exec_sync(self, request: cri.ExecSyncRequest) -> cri.ExecSyncResponse:
        return await exec_sync(self.client, request.container_id, request.cmd, request.timeout)

    # Streaming: the session runs later, when the client connects to the URL.

    def attach_streaming(self, server: StreamingServer) -> None:
        super().attach_streaming(server)
        server.runtime = DockerStreamingRuntime(self.client)

    async def _running(self, docker_id: str, what: str) -> StreamingServer:
        if self.streaming is None:
            raise errors.Unavailable("no streaming server is running")
        info = await self.client.call("inspect_container", docker_id)
        if not (info.get("State") or {}).get("Running"):
            raise errors.FailedPrecondition(f"{what} {docker_id[:13]} is not running")
        return self.streaming

    async def exec(self, request: cri.ExecRequest) -> cri.ExecResponse:
        server = await self._running(request.container_id, "container")
        return server.get_exec(request)

    async def attach(self, request: cri.AttachRequest) -> cri.AttachResponse:
        server = await self._running(request.container_id, "container")
        return server.get_attach(request)

    async def port_forward(self, request: cri.PortForwardRequest) -> cri.PortForwardResponse:
        server = await self._running(request.pod_sandbox_id, "pod sandbox")
        return server.get_port_forward(request)

    # Stats (stats.py): read from the cgroups, not from Docker's stats API.

    async def container_stats(
        self, request: cri.ContainerStatsRequest
    ) -> cri.ContainerStatsResponse:
        return await self.stats.container_stats(request)

    async def list_container_stats(
        self, request: cri.ListContainerStatsRequest
    ) -> cri.ListContainerStatsResponse:
        return await self.stats.list_container_stats(request)

    async def pod_sandbox_stats(
        self, request: cri.PodSandboxStatsRequest
    ) -> cri.PodSandboxStatsResponse:
        return await self.stats.pod_sandbox_stats(request)

    async def list_pod_sandbox_stats(
        self, request: cri.ListPodSandboxStatsRequest
    ) -> cri.ListPodSandboxStatsResponse:
        return await self.stats.list_pod_sandbox_stats(request)
