"""Status, RuntimeConfig and UpdateRuntimeConfig on the oci adapter."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.node import cni
from pycrid.adapters.node.cniinfo import cni_info
from pycrid.adapters.node.podcidr import PodCidr
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.api.cri import api_pb2 as cri

HANDLER_NAMES = ("", "runc")
BINARIES = ("runc", "conmon")


VERSION_TIMEOUT = 5.0


async def first_line_of(*argv: str) -> str:
    """The first line a short command prints, or "" when it cannot be run."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError:
        return ""
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), VERSION_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ""
    lines = out.decode(errors="replace").splitlines()
    return lines[0].strip() if lines else ""


class OciRuntimeInfo:
    def __init__(self, config: Config, node: NodeFacts, state_dir: Path) -> None:
        self.config = config
        self.node = node
        self.state_dir = state_dir
        self.pod_cidr = PodCidr(state_dir)
        self._versions_seen: dict[str, str] | None = None
        self._found: dict[str, str] = {}
        """Where each binary was found on PATH; looked for again once it is gone."""
        self._answer: tuple[tuple[object, ...], cri.StatusResponse] | None = None
        """The last plain Status answer, with the facts it was made from."""

    def load(self) -> None:
        self.pod_cidr.load()

    def features(self) -> cri.RuntimeHandlerFeatures:
        return cri.RuntimeHandlerFeatures(
            recursive_read_only_mounts=self.node.recursive_read_only,
            user_namespaces=True,
        )

    def missing_binaries(self) -> list[str]:
        """runc and conmon, those not on PATH. A binary found once is checked where it was
        found (one system call); it is looked for along PATH again only once it is gone."""
        missing = []
        for name in BINARIES:
            found = self._found.get(name)
            if found is not None and os.access(found, os.X_OK):
                continue
            found = shutil.which(name)
            if found is None:
                self._found.pop(name, None)
                missing.append(name)
            else:
                self._found[name] = found
        return missing

    async def status(self, request: cri.StatusRequest) -> cri.StatusResponse:
        missing = self.missing_binaries()
        problem = cni.network_problem(
            self.config.network.cni_conf_dir, self.config.network.cni_bin_dirs
        )
        key = (tuple(missing), problem)
        if not request.verbose and self._answer is not None and self._answer[0] == key:
            return self._answer[1]  # kubelet asks every few seconds; callers never change it
        runtime = cri.RuntimeCondition(type="RuntimeReady", status=not missing)
        if missing:
            runtime.reason = "RuntimeNotInstalled"
            runtime.message = f"{' and '.join(missing)} not found on PATH"
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
        if not request.verbose:
            self._answer = (key, response)
            return response
        response.info["config"] = json.dumps(
            {
                # kubeadm reads it to warn when its pause image differs.
                "sandboxImage": self.config.pause_image,
                "stateDir": str(self.state_dir),
                "runDir": self.config.run_dir,
                "cgroupManager": "systemd" if self.node.systemd_cgroups else "cgroupfs",
                "cgroupParent": self.node.cgroup_parent,
                "cgroupV2": self.node.cgroup_v2,
                "podCIDR": self.pod_cidr.value,
                "registries": {
                    host: {"mirrors": r.mirrors, "insecure": r.insecure}
                    for host, r in self.config.registries.items()
                },
            }
        )
        response.info.update(
            cni_info(self.config.network.cni_conf_dir, self.config.network.cni_bin_dirs)
        )
        response.info.update(await self._versions(missing))
        return response

    async def _versions(self, missing: list[str]) -> dict[str, str]:
        """``runcVersion`` and ``conmonVersion``: the first line each prints, asked once."""
        if self._versions_seen is None:
            self._versions_seen = {
                f"{name}Version": await first_line_of(name, "--version")
                for name in ("runc", "conmon")
                if name not in missing
            }
        return self._versions_seen

    async def runtime_config(self, request: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        driver = cri.SYSTEMD if self.node.systemd_cgroups else cri.CGROUPFS
        return cri.RuntimeConfigResponse(linux=cri.LinuxRuntimeConfiguration(cgroup_driver=driver))

    async def update_runtime_config(
        self, request: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        return await self.pod_cidr.update_runtime_config(request)
