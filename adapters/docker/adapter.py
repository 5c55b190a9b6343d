"""The docker adapter: the CRI carried out on the Docker Engine API.

Pods are pause containers and app containers join their namespaces, the way
dockershim and cri-dockerd do it. Docker keeps the truth (labels on the
containers); pycrid keeps only small state files beside it. This module
only wires the concerns together; each lives in its own module.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pycrid.adapters.base import Adapter
from pycrid.adapters.config import Config
from pycrid.adapters.docker import naming, recovery, spec
from pycrid.adapters.docker.client import DockerClient
from pycrid.adapters.docker.containers import DockerContainers
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.crievents import DockerEvents
from pycrid.adapters.docker.events import EventWatch
from pycrid.adapters.docker.images import DockerImages
from pycrid.adapters.docker.logs import LogCopiers
from pycrid.adapters.docker.runtimeinfo import DockerRuntimeInfo
from pycrid.adapters.docker.sandboxes import DockerSandboxes
from pycrid.adapters.docker.stats import DockerStats
from pycrid.adapters.docker.store import StateFiles, Store
from pycrid.adapters.docker.streaming import DockerStreaming
from pycrid.adapters.node import cni
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.node.oomlog import KernelOomLog
from pycrid.adapters.node.podnetwork import PodNetworks
from pycrid.adapters.podmetrics import PodMetrics, PodProcesses, pod_processes
from pycrid.adapters.podresources import PodCgroupResources, store_members

log = logging.getLogger("pycrid.docker")


class DockerAdapter(Adapter):
    def __init__(self, config: Config) -> None:
        self.config = config
        self.client = DockerClient(config.docker.endpoint)
        state_dir = Path(config.state_dir) / "docker"
        run_dir = Path(config.run_dir) / "docker"
        store = Store(StateFiles(state_dir), oom_log=KernelOomLog())
        images = DockerImages(self.client, config, state_dir, live=lambda: store.live)
        self.logs = LogCopiers(self.client, state_dir)
        self.ctx = DockerContext(
            config=config,
            client=self.client,
            images=images,
            store=store,
            instance=naming.instance_id(config.state_dir),
            networks=PodNetworks(cni.CniRunner(config.network.cni_bin_dirs), run_dir / "netns"),
            run_dir=run_dir,
            # Docker 20.10 refuses capability names it does not know (PERFMON, BPF,
            # CHECKPOINT_RESTORE): grant at most the older set.
            host=HostFacts.probe(last_cap=spec.DOCKER_20_LAST_CAP),
            log_copiers=self.logs,
        )
        containers = DockerContainers(self.ctx)
        self.event_watch = EventWatch(
            self.client,
            store,
            resync=lambda: containers.refresh_all(even_if_live=True),
            images_changed=images.changed,
        )
        self.info = DockerRuntimeInfo(config, self.client, state_dir, live=lambda: store.live)
        self.docker_stats = DockerStats(self.ctx, containers)
        self.docker_events = DockerEvents(self.ctx)
        super().__init__(
            name="docker",
            runtime=self.info,
            sandbox_ids=store.sandbox_ids,
            container_ids=store.container_ids,
            sandboxes=DockerSandboxes(self.ctx, containers),
            containers=containers,
            images=images,
            streaming=DockerStreaming(self.client),
            stats=self.docker_stats,
            events=self.docker_events.hub,
            pod_resources=PodCgroupResources(store_members(self.ctx.store)),
            # CheckpointContainer is not supported: `docker checkpoint` needs CRIU and an
            # experimental dockerd, and even then keeps its checkpoints in Docker's own
            # store instead of the archive at the CRI's location that kubelet reads.
            checkpoints=None,
            metrics=PodMetrics(self._pod_processes, self.docker_stats),
        )

    def _pod_processes(self) -> list[PodProcesses]:
        return pod_processes(self.ctx.store)

    async def start(self) -> None:
        await self.client.connect(self.config.docker.startup_timeout)
        self.ctx.cgroup_driver = str((await self.client.info()).get("CgroupDriver") or "cgroupfs")
        log.info("dockerd uses the %s cgroup driver", self.ctx.cgroup_driver)
        for limit in spec.describe_limits(self.ctx.host):
            log.warning("%s", limit)
        self.info.load()
        await recovery.recover(self.ctx)
        self.docker_events.start()
        self.event_watch.start()

    async def close(self) -> None:
        await self.info.docker_info.close()
        await self.ctx.images.disk_usage.close()
        await self.event_watch.close()
        if self.ctx.store.oom_log is not None:
            self.ctx.store.oom_log.close()
        self.docker_stats.close()
        await self.logs.close()
        await self.client.close()
