"""What the docker adapter's pod, container and recovery code share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrid.adapters.docker.client import DockerClient
from pycrid.adapters.docker.spec import HostFacts
from pycrid.adapters.docker.store import Store
from pycrid.server.cni import CniRunner
from pycrid.server.config import Config
from pycrid.server.idindex import IdIndex
from pycrid.server.instrument import call_deadline


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
    cni: CniRunner
    run_dir: Path
    host: HostFacts
    log_copiers: Any
    """pycrid.adapters.docker.logs.LogCopiers: writes each container's CRI log."""

    def netns_path(self, sandbox_id: str) -> Path:
        return self.run_dir / "netns" / sandbox_id

    def sandbox_dir(self, sandbox_id: str) -> Path:
        return self.run_dir / "sandboxes" / sandbox_id

    def resolv_conf_path(self, sandbox_id: str) -> Path:
        return self.sandbox_dir(sandbox_id) / "resolv.conf"


@contextlib.contextmanager
def without_deadline() -> Iterator[None]:
    """Let clean-up after a failed call run to its end, past the call's deadline."""
    token = call_deadline.set(None)
    try:
        yield
    finally:
        call_deadline.reset(token)
