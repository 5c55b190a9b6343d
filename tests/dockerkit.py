"""The docker adapter's pod, container and image concerns, wired to an in-memory dockerd."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pycrid.adapters.config import Config, NetworkConfig, RegistryConfig
from pycrid.adapters.deadline import set_call_deadline
from pycrid.adapters.docker.containers import DockerContainers
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.events import EventWatch
from pycrid.adapters.docker.fake import FakeDocker
from pycrid.adapters.docker.images import DockerImages
from pycrid.adapters.docker.logs import LogCopiers
from pycrid.adapters.docker.sandboxes import DockerSandboxes
from pycrid.adapters.docker.store import StateFiles, Store
from pycrid.adapters.node.cni import CniRunner
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.node.podnetwork import PodNetworks
from pycrid.api.cri import api_pb2 as cri

INSTANCE = "feedfacefeedface"
PAUSE = "registry.k8s.io/pause:3.10"
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

T = TypeVar("T")


@dataclass
class Kit:
    docker: FakeDocker
    ctx: DockerContext
    sandboxes: DockerSandboxes
    containers: DockerContainers
    images: DockerImages
    state_dir: Path
    events: EventWatch | None = None

    async def close(self) -> None:
        if self.events is not None:
            await self.events.close()
        await self.ctx.log_copiers.close()

    async def follow_events(self) -> EventWatch:
        """Start following the fake's events; returns once the store is live."""
        store = self.ctx.store
        self.images.live = lambda: store.live
        self.events = EventWatch(
            self.docker,
            store,
            resync=lambda: self.containers.refresh_all(even_if_live=True),
            images_changed=self.images.changed,
        )
        self.events.start()
        await asyncio.wait_for(self.events.connected.wait(), 5)
        return self.events

    async def run_pod(self, name: str = "web", **fields: object) -> str:
        request = cri.RunPodSandboxRequest(config=pod_config(name, **fields))
        return (await self.sandboxes.run_pod_sandbox(request)).pod_sandbox_id

    async def create(self, pod_id: str, name: str = "app", **fields: object) -> str:
        sandbox = self.ctx.store.sandbox(pod_id).config
        request = cri.CreateContainerRequest(
            pod_sandbox_id=pod_id,
            config=container_config(name, **fields),
            sandbox_config=sandbox,
        )
        return (await self.containers.create_container(request)).container_id

    async def status(self, container_id: str) -> cri.ContainerStatus:
        request = cri.ContainerStatusRequest(container_id=container_id)
        return (await self.containers.container_status(request)).status

    async def pod_status(self, pod_id: str) -> cri.PodSandboxStatus:
        request = cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id)
        return (await self.sandboxes.pod_sandbox_status(request)).status


def make_kit(
    tmp_path: Path,
    *,
    mode: str = "docker",
    registries: dict[str, RegistryConfig] | None = None,
    images: tuple[str, ...] = (PAUSE, BUSYBOX),
    docker: FakeDocker | None = None,
) -> Kit:
    """Pods in ``mode`` ("docker" or "cni"); dockerd has ``images`` already.

    Pass the ``docker`` of an earlier kit on the same ``tmp_path`` to restart.
    """
    if docker is None:
        docker = FakeDocker()
        for reference in images:
            docker.add_image(reference)
    config = Config(
        state_dir=str(tmp_path / "state"),
        run_dir=str(tmp_path / "run"),
        pause_image=PAUSE,
        network=NetworkConfig(mode=mode, cni_conf_dir=str(tmp_path / "net.d")),
        registries=registries or {},
    )
    state_dir = tmp_path / "state" / "docker"
    image_service = DockerImages(docker, config, state_dir)
    ctx = DockerContext(
        config=config,
        client=docker,
        images=image_service,
        store=Store(StateFiles(state_dir)),
        instance=INSTANCE,
        networks=PodNetworks(CniRunner([str(tmp_path / "bin")]), tmp_path / "run" / "netns"),
        run_dir=tmp_path / "run" / "docker",
        host=HostFacts(),
        log_copiers=LogCopiers(docker, state_dir),
    )
    containers = DockerContainers(ctx)
    return Kit(
        docker=docker,
        ctx=ctx,
        sandboxes=DockerSandboxes(ctx, containers),
        containers=containers,
        images=image_service,
        state_dir=state_dir,
    )


def pod_config(name: str = "web", **fields: object) -> cri.PodSandboxConfig:
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="ns", uid=f"uid-{name}"),
        labels={"app": name},
        annotations={"note": name},
    )
    for key, value in fields.items():
        _set(config, key, value)
    return config


def container_config(name: str = "app", **fields: object) -> cri.ContainerConfig:
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name),
        image=cri.ImageSpec(image=BUSYBOX),
        command=["sh"],
        labels={"tier": name},
    )
    for key, value in fields.items():
        _set(config, key, value)
    return config


def _set(message: object, key: str, value: object) -> None:
    field = getattr(message, key)
    if hasattr(field, "CopyFrom") and not isinstance(value, dict | list):
        field.CopyFrom(value)
    elif isinstance(value, dict):
        field.clear()
        field.update(value)
    elif isinstance(value, list):
        del field[:]
        field.extend(value)
    else:
        setattr(message, key, value)


async def in_call(seconds: float, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call`` as a CRI call with a deadline ``seconds`` away, in a task of its own."""

    async def run() -> T:
        set_call_deadline(seconds)
        return await call()

    return await asyncio.create_task(run())
