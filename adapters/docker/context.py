"""What the docker adapter's pod, container and recovery code share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrid.adapters.config import Config
from pycrid.adapters.docker.client import DockerClient
from pycrid.adapters.docker.store import Store
from pycrid.adapters.idindex import IdIndex
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.node.podnetwork import PodNetworks


@dataclass
class DockerContext:
    config: Config
    client: DockerClient
    images: Any
    """The adapter's DockerImages (pulls, inspects)."""
    store: Store
    instance: str
    sandbox_ids: IdIndex
    container_ids: IdIndex
    networks: PodNetworks
    run_dir: Path
    host: HostFacts
    log_copiers: Any
    """pycrid.adapters.docker.logs.LogCopiers: writes each container's CRI log."""

    def sandbox_dir(self, sandbox_id: str) -> Path:
        return self.run_dir / "sandboxes" / sandbox_id

    def resolv_conf_path(self, sandbox_id: str) -> Path:
        return self.sandbox_dir(sandbox_id) / "resolv.conf"
