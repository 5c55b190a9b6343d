"""Status, RuntimeConfig and UpdateRuntimeConfig on the docker adapter."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.docker.api import DockerApi
from pycrid.adapters.docker.sampled import Sampled
from pycrid.adapters.errors import CRIError
from pycrid.adapters.node import cni
from pycrid.adapters.node.cniinfo import cni_info, cni_unused_info
from pycrid.adapters.node.podcidr import PodCidr
from pycrid.api.cri import api_pb2 as cri

INFO_INTERVAL = 30.0
"""Seconds a ``docker info`` answer serves Status before it is asked again."""


class DockerRuntimeInfo:
    """What the runtime reports about itself, and the pod CIDR kubelet hands it."""

    def __init__(
        self,
        config: Config,
        client: DockerApi,
        state_dir: Path,
        live: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.client = client
        self.live = live
        """True while Docker's event stream is connected: dockerd answers, no ping needed."""
        self.pod_cidr = PodCidr(state_dir)
        # Runtimes, versions and the cgroup driver change only when dockerd restarts.
        self.docker_info = Sampled(client.info, interval=INFO_INTERVAL)
        self._answer: tuple[tuple[object, ...], cri.StatusResponse] | None = None
        """The last plain Status answer, with the facts it was made from."""

    def load(self) -> None:
        self.pod_cidr.load()

    def _network_problem(self) -> str:
        """Why pod networking cannot work, or "" when it can."""
        if self.config.network.mode != "cni":
            return ""
        return cni.network_problem(
            self.config.network.cni_conf_dir, self.config.network.cni_bin_dirs
        )

    async def status(self, request: cri.StatusRequest) -> cri.StatusResponse:
        runtime_ready = self.live() or await self.client.ping()
        if not runtime_ready:
            self.docker_info.forget()  # a dockerd that comes back may be another one
        runtime = cri.RuntimeCondition(type="RuntimeReady", status=runtime_ready)
        if not runtime_ready:
            runtime.reason = "DockerDaemonNotReady"
            runtime.message = f"docker is not reachable at {self.client.endpoint}"
        problem = self._network_problem()
        if not runtime_ready and not problem:
            problem = "docker is not reachable, so neither is its network"
        handlers = await self._runtime_handlers(runtime_ready)
        key = (runtime_ready, runtime.message, problem, tuple(handlers))
        if not request.verbose and self._answer is not None and self._answer[0] == key:
            return self._answer[1]  # kubelet asks every few seconds; callers never change it
        network = cri.RuntimeCondition(type="NetworkReady", status=not problem)
        if problem:
            network.reason = "NetworkPluginNotReady"
            network.message = problem
        response = cri.StatusResponse(
            status=cri.RuntimeStatus(conditions=[runtime, network]),
            runtime_handlers=[
                cri.RuntimeHandler(name=name, features=cri.RuntimeHandlerFeatures())
                for name in handlers
            ],
            features=cri.RuntimeFeatures(supplemental_groups_policy=False),
        )
        if not request.verbose:
            self._answer = (key, response)
        if request.verbose:
            # kubeadm reads ``sandboxImage`` here to warn when its pause image differs.
            config = {**self.config.to_dict(), "sandboxImage": self.config.pause_image}
            response.info["config"] = json.dumps(config)
            response.info["podCIDR"] = self.pod_cidr.value
            response.info.update(self._cni_info())
            if runtime_ready:
                response.info.update(await self._versions())
        return response

    def _cni_info(self) -> dict[str, str]:
        network = self.config.network
        if network.mode != "cni":
            return cni_unused_info(network.mode)
        return cni_info(network.cni_conf_dir, network.cni_bin_dirs)

    async def _versions(self) -> dict[str, str]:
        """``dockerVersion`` and ``runcVersion`` (the commit of dockerd's runc)."""
        try:
            info = await self.docker_info.get()
        except CRIError:
            return {}
        versions = {"dockerVersion": str(info.get("ServerVersion", ""))}
        runc = (info.get("RuncCommit") or {}).get("ID")
        if runc:
            versions["runcVersion"] = str(runc)
        return versions

    async def _runtime_handlers(self, runtime_ready: bool) -> list[str]:
        """ "" (the default) and the OCI runtimes dockerd knows."""
        handlers = [""]
        if runtime_ready:
            try:
                info = await self.docker_info.get()
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
        return await self.pod_cidr.update_runtime_config(request)
