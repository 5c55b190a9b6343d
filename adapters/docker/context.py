"""What the docker adapter's pod, container and recovery code share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pycrid.adapters.config import Config
from pycrid.adapters.docker import naming
from pycrid.adapters.docker.api import ContainerSummary, DockerApi, Filters
from pycrid.adapters.docker.store import Store
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.node.podnetwork import PodNetworks

if TYPE_CHECKING:
    from pycrid.adapters.docker.images import DockerImages
    from pycrid.adapters.docker.logs import LogCopiers


@dataclass
class DockerContext:
    config: Config
    client: DockerApi
    images: DockerImages
    """The adapter's ImageService (pulls, inspects)."""
    store: Store
    instance: str
    networks: PodNetworks
    run_dir: Path
    host: HostFacts
    log_copiers: LogCopiers
    """Writes each container's CRI log."""
    cgroup_driver: str = "cgroupfs"
    """dockerd's cgroup driver, "cgroupfs" or "systemd", read when the adapter starts."""
    also_listed: list[Filters] = field(default_factory=list)
    """``docker ps`` filters of containers the store holds besides this instance's own
    (cri-dockerd's, when they were adopted)."""

    @property
    def systemd_cgroups(self) -> bool:
        return self.cgroup_driver == "systemd"

    async def list_containers(self) -> list[ContainerSummary]:
        """``docker ps -a`` of every container the store holds."""
        listed = list(await self.client.list_containers(naming.instance_filter(self.instance)))
        seen = {summary["Id"] for summary in listed}
        for filters in self.also_listed:
            for summary in await self.client.list_containers(filters):
                if summary["Id"] not in seen:
                    seen.add(summary["Id"])
                    listed.append(summary)
        return listed

    def pod_dir(self, sandbox_id: str) -> Path:
        """The pod's files at run time (its resolv.conf), as the oci adapter's ``pod_dir``."""
        return self.run_dir / "sandboxes" / sandbox_id

    def resolv_conf_path(self, sandbox_id: str) -> Path:
        return self.pod_dir(sandbox_id) / "resolv.conf"
