"""An oci runtime over FakeRunc and FakeConmon, with a real image and record store.

What needs root stays out: pods use the host's network and IPC (no namespace
pin, no CNI, no /dev/shm mount), and the root filesystem is a plain directory
(``fake_rootfs``) instead of an overlay mount. Everything else is the code the
daemon runs: records, bundles and specs, conmon's exit files, recovery.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from pycrid.adapters.config import Config
from pycrid.adapters.node.cni import CniRunner
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.node.podnetwork import PodNetworks
from pycrid.adapters.oci.images.digest import sha256_of
from pycrid.adapters.oci.images.service import OciImages
from pycrid.adapters.oci.images.store import ContentStore, ImageRecord
from pycrid.adapters.oci.runtime import containers as oci_containers
from pycrid.adapters.oci.runtime import sandboxes as oci_sandboxes
from pycrid.adapters.oci.runtime.containers import OciContainers
from pycrid.adapters.oci.runtime.context import OciContext
from pycrid.adapters.oci.runtime.crievents import OciEvents
from pycrid.adapters.oci.runtime.fake import FakeConmon, FakeProcesses, FakeRunc
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.adapters.oci.runtime.sandboxes import OciSandboxes
from pycrid.adapters.oci.runtime.stats import OciStats
from pycrid.adapters.oci.runtime.store import RuntimeStore
from pycrid.api.cri import api_pb2 as cri

PAUSE = "registry.k8s.io/pause:3.10"
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"


def add_image(store: ContentStore, name: str, config: dict[str, object]) -> ImageRecord:
    """An image of no layers whose config is ``config``, as a pull would record it."""
    blob = json.dumps({"architecture": "amd64", "os": "linux", "config": config}).encode()
    store.write_blob(sha256_of(blob), blob)
    record = ImageRecord(
        id=sha256_of(blob), repo_tags=[name], repo_digests=[], manifests=[], layers=[]
    )
    return store.commit(record)


FAKE_PROGRAMS = ("sh", "sleep", "pause", "true", "false", "cat", "echo")


@pytest.fixture
def fake_rootfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root filesystems as plain directories: an overlay mount needs root."""

    async def prepare(store: object, image: object, fs_dir: Path, name: str) -> Path:
        rootfs = fs_dir / "rootfs"
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        # The programs the tests run must be in the image: that is checked before runc.
        for program in FAKE_PROGRAMS:
            path = rootfs / "bin" / program
            path.write_bytes(b"")
            path.chmod(0o755)
        return rootfs

    async def remove(store: object, fs_dir: Path, name: str) -> None:
        shutil.rmtree(fs_dir, ignore_errors=True)

    for module in (oci_containers, oci_sandboxes):
        monkeypatch.setattr(module, "prepare_rootfs", prepare)
        monkeypatch.setattr(module, "remove_rootfs", remove)


@dataclass
class OciKit:
    ctx: OciContext
    world: FakeProcesses
    containers: OciContainers
    sandboxes: OciSandboxes
    events: OciEvents
    stats: OciStats

    async def close(self) -> None:
        await self.events.close()
        self.ctx.exits.close()
        self.stats.close()
        await self.ctx.images.close()


async def make_kit(tmp_path: Path, world: FakeProcesses | None = None) -> OciKit:
    """A runtime on ``tmp_path``; pass the ``world`` of an earlier kit to restart over it."""
    world = world or FakeProcesses()
    config = Config(adapter="oci", state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"))
    images = OciImages(config, tmp_path / "state" / "oci")
    await images.start()
    if not images.store.records():
        add_image(images.store, PAUSE, {"Entrypoint": ["/pause"]})
        add_image(images.store, BUSYBOX, {"Cmd": ["sh"], "StopSignal": "SIGTERM"})
    run_dir = tmp_path / "run" / "oci"
    ctx = OciContext(
        config=config,
        images=images,
        store=RuntimeStore(tmp_path / "state" / "oci" / "runtime"),
        runc=FakeRunc(world),
        conmon=FakeConmon(world),
        networks=PodNetworks(CniRunner([str(tmp_path / "bin")]), run_dir / "netns"),
        node=NodeFacts(host=HostFacts()),
        run_dir=run_dir,
    )
    containers = OciContainers(ctx)
    sandboxes = OciSandboxes(ctx, containers)
    return OciKit(
        ctx=ctx,
        world=world,
        containers=containers,
        sandboxes=sandboxes,
        events=OciEvents(ctx, sandboxes, containers),
        stats=OciStats(containers),
    )


def pod_config(name: str = "web", attempt: int = 0) -> cri.PodSandboxConfig:
    """A pod on the host's network and IPC: nothing to pin or mount."""
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}"),
        hostname=name,
    )
    config.metadata.attempt = attempt
    options = config.linux.security_context.namespace_options
    options.network = cri.NODE
    options.ipc = cri.NODE
    return config


def container_config(name: str = "app", attempt: int = 0) -> cri.ContainerConfig:
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name, attempt=attempt),
        image=cri.ImageSpec(image=BUSYBOX),
        command=["sleep", "3600"],
    )
    return config


async def run_pod(kit: OciKit, name: str = "web") -> str:
    response = await kit.sandboxes.run_pod_sandbox(
        cri.RunPodSandboxRequest(config=pod_config(name))
    )
    return response.pod_sandbox_id


async def create(kit: OciKit, sandbox_id: str, name: str = "app") -> str:
    response = await kit.containers.create_container(
        cri.CreateContainerRequest(
            pod_sandbox_id=sandbox_id,
            config=container_config(name),
            sandbox_config=kit.ctx.store.sandbox(sandbox_id).config,
        )
    )
    return response.container_id
