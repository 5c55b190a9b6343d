"""Status, RuntimeConfig and UpdateRuntimeConfig on the oci adapter."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.node import atomicfile, cni
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.oci")

HANDLER_NAMES = ("", "runc")


class OciRuntimeInfo:
    def __init__(self, config: Config, node: NodeFacts, state_dir: Path) -> None:
        self.config = config
        self.node = node
        self.state_dir = state_dir
        self._runtime_config_path = state_dir / "runtime-config.json"
        self.pod_cidr = ""

    def load(self) -> None:
        saved = atomicfile.read_json(self._runtime_config_path, default={})
        self.pod_cidr = saved.get("pod_cidr", "")

    def features(self) -> cri.RuntimeHandlerFeatures:
        return cri.RuntimeHandlerFeatures(
            recursive_read_only_mounts=self.node.recursive_read_only,
            user_namespaces=True,
        )

    async def status(self, request: cri.StatusRequest) -> cri.StatusResponse:
        missing = [b for b in ("runc", "conmon") if shutil.which(b) is None]
        runtime = cri.RuntimeCondition(type="RuntimeReady", status=not missing)
        if missing:
            runtime.reason = "RuntimeNotInstalled"
            runtime.message = f"{' and '.join(missing)} not found on PATH"
        problem = cni.network_problem(
            self.config.network.cni_conf_dir, self.config.network.cni_bin_dirs
        )
        network = cri.RuntimeCondition(type="NetworkReady", status=not problem)
        if problem:
            network.reason = "NetworkPluginNotReady"
            network.message = problem
        response = cri.StatusResponse(
            status=cri.RuntimeStatus(conditions=[runtime, network]),
            runtime_handlers=[
                cri.RuntimeHandler(name=name, features=self.features()) for name in HANDLER_NAMES
            ],
            features=cri.RuntimeFeatures(supplemental_groups_policy=True),
        )
        if request.verbose:
            response.info["config"] = json.dumps(
                {
                    "stateDir": str(self.state_dir),
                    "runDir": self.config.run_dir,
                    "cgroupParent": self.node.cgroup_parent,
                    "cgroupV2": self.node.cgroup_v2,
                    "podCIDR": self.pod_cidr,
                    "registries": {
                        host: {"mirrors": r.mirrors, "insecure": r.insecure}
                        for host, r in self.config.registries.items()
                    },
                }
            )
        return response

    async def runtime_config(self, request: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        return cri.RuntimeConfigResponse(
            linux=cri.LinuxRuntimeConfiguration(cgroup_driver=cri.CGROUPFS)
        )

    async def update_runtime_config(
        self, request: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        pod_cidr = request.runtime_config.network_config.pod_cidr
        if pod_cidr and pod_cidr != self.pod_cidr:
            await atomicfile.write_json_async(self._runtime_config_path, {"pod_cidr": pod_cidr})
            self.pod_cidr = pod_cidr
            log.info("pod CIDR set to %s", pod_cidr)
        return cri.UpdateRuntimeConfigResponse()
