"""The oci adapter: pycrid pulls, stores and unpacks images itself and runs
containers with runc under conmon, the way CRI-O and containerd do.

The ImageService lives in ``images/`` (docs/oci-images.md), the runtime in
``runtime/`` (docs/oci-runtime.md). This module only wires them together
and checks at start-up that the programs they run are installed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pycrid.adapters.base import Adapter, StartupError
from pycrid.adapters.config import Config
from pycrid.adapters.node import cni, systemdcgroup
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.node.podnetwork import PodNetworks
from pycrid.adapters.oci.images.service import OciImages, find_image
from pycrid.adapters.oci.runtime import recovery
from pycrid.adapters.oci.runtime.checkpoint import OciCheckpoints
from pycrid.adapters.oci.runtime.conmon import Conmon
from pycrid.adapters.oci.runtime.containers import OciContainers
from pycrid.adapters.oci.runtime.context import OciContext
from pycrid.adapters.oci.runtime.crievents import OciEvents
from pycrid.adapters.oci.runtime.info import OciRuntimeInfo
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.adapters.oci.runtime.runc import Runc
from pycrid.adapters.oci.runtime.sandboxes import OciSandboxes
from pycrid.adapters.oci.runtime.stats import OciStats
from pycrid.adapters.oci.runtime.store import RuntimeStore
from pycrid.adapters.oci.runtime.streaming import OciStreaming
from pycrid.adapters.podmetrics import PodMetrics, PodProcesses, pod_processes
from pycrid.adapters.podresources import PodCgroupResources, store_members
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.oci")

PROGRAMS = {"runc": "runc", "conmon": "conmon"}
"""The programs the runtime runs, and the Debian package of each."""
CNI_PACKAGE = "containernetworking-plugins"
CONMON_SLICE = "system.slice"
"""Where each conmon's scope goes under the systemd driver (CRI-O's default too)."""


class OciAdapter(Adapter):
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store_root = Path(config.state_dir) / "oci"
        run_dir = Path(config.run_dir) / "oci"
        self.oci_images = OciImages(
            config,
            self.store_root,
            progress_timeout=config.oci.pull_progress_timeout,
            max_concurrent_downloads=config.oci.max_concurrent_downloads,
            in_use=self._images_in_use,
        )
        runc_binary = shutil.which("runc") or "runc"
        manager = systemdcgroup.cgroup_manager(config.oci.cgroup_manager)
        self.node = NodeFacts.probe(HostFacts.probe(), cgroup_manager=manager)
        systemd = self.node.systemd_cgroups
        self.ctx = OciContext(
            config=config,
            images=self.oci_images,
            store=RuntimeStore(self.store_root / "runtime"),
            runc=Runc(runc_binary, run_dir / "runc", systemd_cgroup=systemd),
            conmon=Conmon(
                shutil.which("conmon") or "conmon",
                runc_binary,
                run_dir / "runc",
                scope_slice=CONMON_SLICE if systemd else None,
            ),
            networks=PodNetworks(cni.CniRunner(config.network.cni_bin_dirs), run_dir / "netns"),
            node=self.node,
            run_dir=run_dir,
        )
        self.oci_containers = OciContainers(self.ctx)
        self.oci_sandboxes = OciSandboxes(self.ctx, self.oci_containers)
        self.info = OciRuntimeInfo(config, self.node, self.store_root / "runtime")
        self.oci_stats = OciStats(self.oci_containers)
        self.oci_events = OciEvents(self.ctx, self.oci_sandboxes, self.oci_containers)
        super().__init__(
            name="oci",
            runtime=self.info,
            sandbox_ids=self.ctx.store.sandbox_ids,
            container_ids=self.ctx.store.container_ids,
            sandboxes=self.oci_sandboxes,
            containers=self.oci_containers,
            images=self.oci_images,
            streaming=OciStreaming(self.oci_containers),
            stats=self.oci_stats,
            events=self.oci_events.hub,
            pod_resources=PodCgroupResources(store_members(self.ctx.store)),
            checkpoints=OciCheckpoints(self.oci_containers),
            metrics=PodMetrics(self._pod_processes, self.oci_stats),
        )

    def _images_in_use(self) -> set[str]:
        """The images of containers that have not exited, and the pause image while a pod runs."""
        store = self.ctx.store
        used = {c.image_id for c in store.containers.values() if c.state != cri.CONTAINER_EXITED}
        if any(s.state == cri.SANDBOX_READY for s in store.sandboxes.values()):
            pause = find_image(self.oci_images.store.records(), self.config.pause_image)
            if pause is not None:
                used.add(pause.id)
        return used

    def _pod_processes(self) -> list[PodProcesses]:
        return pod_processes(self.ctx.store)

    async def start(self) -> None:
        for program, package in PROGRAMS.items():
            if shutil.which(program) is None:
                raise StartupError(
                    f"{program} is not installed: the oci adapter needs it "
                    f"(on Debian: apt-get install {package})"
                )
        self._check_cni_plugins()
        try:
            await self.oci_images.start()
        except OSError as e:
            raise StartupError(f"cannot open the image store in {self.store_root}: {e}") from None
        self.info.load()
        self.ctx.exits.start()
        await recovery.recover(self.ctx, self.oci_sandboxes, self.oci_containers)
        self.oci_events.start()

    def _check_cni_plugins(self) -> None:
        """The plugins the configured network needs; no network config is NetworkReady false."""
        try:
            network = cni.load_network(self.config.network.cni_conf_dir)
        except cni.NetworkNotReady:
            return
        for plugin in network.plugins:
            try:
                cni.find_plugin(plugin["type"], self.config.network.cni_bin_dirs)
            except cni.NetworkNotReady as e:
                raise StartupError(f"{e} (on Debian: apt-get install {CNI_PACKAGE})") from None

    async def close(self) -> None:
        await self.oci_events.close()
        self.ctx.exits.close()
        self.oci_stats.close()
        await self.oci_images.close()
