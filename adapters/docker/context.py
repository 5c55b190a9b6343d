"""What the docker adapter's pod, container and recovery code share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pycrid.adapters.config import Config
from pycrid.adapters.docker.api import DockerApi
from pycrid.adapters.docker.store import Store
from pycrid.adapters.idindex import IdIndex
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
    sandbox_ids: IdIndex
    container_ids: IdIndex
    networks: PodNetworks
    run_dir: Path
    host: HostFacts
    log_copiers: LogCopiers
    """Writes each container's CRI log."""
    cgroup_driver: str = "cgroupfs"
    """dockerd's cgroup driver, "cgroupfs" or "systemd", read when the adapter starts."""

    @property
    def systemd_cgroups(self) -> bool:
        return self.cgroup_driver == "systemd"

    def sandbox_dir(self, sandbox_id: str) -> Path:
        return self.run_dir / "sandboxes" / sandbox_id

    def resolv_conf_path(self, sandbox_id: str) -> Path:
        return self.sandbox_dir(sandbox_id) / "resolv.conf"
