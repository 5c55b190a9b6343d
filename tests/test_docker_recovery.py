"""Start-up recovery of the docker adapter, against a stand-in for dockerd."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.base import StartupError
from pycrid.adapters.docker import naming, recovery
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.fake import FakeContainer, FakeDocker
from pycrid.adapters.docker.store import NetworkState, StateFiles
from pycrid.adapters.node.cni import CniRunner
from pycrid.adapters.node.podnetwork import PodNetworks
from pycrid.api.cri import api_pb2 as cri

from .dockerkit import INSTANCE, make_kit

RUNNING = {"status": "running", "pid": 4242, "started_at": 1767225601_000000000}
EXITED = {
    "status": "exited",
    "exit_code": 3,
    "started_at": 1767225601_000000000,
    "finished_at": 1767225602_000000000,
}
CREATED = {"status": "created"}
RECORDING_PLUGIN = """#!{python}
import json, os, sys
config = json.load(sys.stdin)
with open(os.path.join(os.path.dirname(sys.argv[0]), "..", "calls.jsonl"), "a") as log:
    log.write(json.dumps([os.environ["CNI_COMMAND"], os.environ["CNI_CONTAINERID"]]) + "\\n")
"""


def add(docker: FakeDocker, container_id: str, labels: dict[str, str], state: dict) -> None:
    """A container dockerd has, made before pycrid (re)started."""
    image = docker.add_image("registry.k8s.io/x:1")
    docker.containers[container_id] = FakeContainer(
        id=container_id,
        name=f"k8s_{container_id}",
        image_id=image.id,
        body={"Image": "registry.k8s.io/x:1", "Labels": labels},
        created=1767225600_500000000,
        **state,
    )


class FakeLogCopiers:
    def __init__(self) -> None:
        self.recovered: list[str] = []

    async def recover(
        self, container_id: str, log_path: str, tty: bool, log_root: str | None = None
    ) -> None:
        self.recovered.append(container_id)

    def bookmarked(self) -> list[str]:
        return []

    def remove_leftovers(self) -> None:
        pass

    def forget(self, container_id: str) -> None:
        pass

    def is_copying(self, container_id: str) -> bool:
        return False


def pod(name: str) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="ns", uid=f"uid-{name}"),
        labels={"app": name},
        annotations={"note": name},
        log_directory="/var/log/pods/x",
    )


def container(name: str) -> cri.ContainerConfig:
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name),
        image=cri.ImageSpec(image="registry.k8s.io/x:1"),
        log_path=f"{name}.log",
        linux=cri.LinuxContainerConfig(
            resources=cri.LinuxContainerResources(memory_limit_in_bytes=1 << 20)
        ),
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[DockerContext, FakeDocker, FakeLogCopiers, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for plugin in ("bridge", "loopback"):
        path = bin_dir / plugin
        path.write_text(RECORDING_PLUGIN.format(python=sys.executable))
        path.chmod(0o755)
    kit = make_kit(tmp_path, images=())
    copiers = FakeLogCopiers()
    ctx = kit.ctx
    ctx.log_copiers = copiers  # type: ignore[assignment]
    ctx.networks = PodNetworks(CniRunner([str(bin_dir)]), tmp_path / "run" / "docker" / "netns")
    return ctx, kit.docker, copiers, tmp_path / "calls.jsonl"


CNI_NETWORK = {
    "name": "n",
    "cniVersion": "1.0.0",
    "plugins": [{"type": "bridge"}, {"type": "loopback"}],
}


async def test_recovery_rebuilds_pods_and_containers_one_by_one(setup: tuple) -> None:
    ctx, docker, copiers, cni_calls = setup
    files: StateFiles = ctx.store.files
    add(docker, "ready", naming.sandbox_labels(pod("a"), INSTANCE, "runc"), RUNNING)
    await files.save_sandbox(
        "ready", NetworkState(mode="cni", ready=True, ips=["10.0.0.2"], network=CNI_NETWORK)
    )
    add(docker, "unchecked", naming.sandbox_labels(pod("b"), INSTANCE, ""), RUNNING)
    add(
        docker,
        "running",
        naming.container_labels(container("r"), INSTANCE, "ready", "/l/r"),
        RUNNING,
    )
    add(
        docker, "exited", naming.container_labels(container("e"), INSTANCE, "ready", "/l/e"), EXITED
    )
    await files.save_container_resources("exited", cri.LinuxContainerResources(cpu_shares=7))
    add(
        docker,
        "created",
        naming.container_labels(container("c"), INSTANCE, "ready", "/l/c"),
        CREATED,
    )
    add(docker, "foreign", naming.sandbox_labels(pod("f"), "someone-else", ""), RUNNING)
    add(docker, "broken", naming.sandbox_labels(pod("x"), INSTANCE, ""), RUNNING)
    docker.fail("inspect_container", errors.Internal("docker: inspect failed"), None, "broken")
    # Leftovers: a pod and a container that Docker no longer has.
    await files.save_sandbox(
        "vanished", NetworkState(mode="cni", ready=True, network=CNI_NETWORK, result={})
    )
    await files.save_container_resources("gone", cri.LinuxContainerResources())

    await recovery.recover(ctx)

    assert sorted(ctx.store.sandbox_ids) == ["ready", "unchecked"]
    assert sorted(ctx.store.container_ids) == ["created", "exited", "running"]
    ready = ctx.store.sandboxes["ready"]
    assert ready.state == cri.SANDBOX_READY
    assert ready.config == pod("a")
    assert ready.runtime_handler == "runc"
    assert ready.network.ips == ["10.0.0.2"]
    assert ready.created_at == 1767225600_500000000
    assert ctx.store.sandboxes["unchecked"].state == cri.SANDBOX_NOTREADY

    exited = ctx.store.containers["exited"]
    assert (exited.state, exited.exit_code, exited.reason) == (cri.CONTAINER_EXITED, 3, "Error")
    assert exited.resources == cri.LinuxContainerResources(cpu_shares=7)
    assert exited.image_ref.startswith("registry.k8s.io/x@sha256:")
    running = ctx.store.containers["running"]
    assert running.state == cri.CONTAINER_RUNNING
    assert running.resources.memory_limit_in_bytes == 1 << 20
    assert running.sandbox_id == "ready" and running.log_path == "/l/r"
    assert sorted(copiers.recovered) == ["exited", "running"]

    # The vanished pod's network was released, in reverse plugin order, and its files are gone.
    assert [json.loads(line) for line in cni_calls.read_text().splitlines()] == [
        ["DEL", "vanished"],
        ["DEL", "vanished"],
    ]
    assert sorted(files.sandbox_ids()) == ["ready"]
    assert sorted(files.container_ids()) == ["exited"]


async def test_recovery_fails_start_up_when_docker_cannot_list(setup: tuple) -> None:
    ctx, docker, _, _ = setup
    docker.down = True

    with pytest.raises(StartupError, match="not reachable"):
        await recovery.recover(ctx)


async def test_a_restarted_adapter_answers_as_the_first_did(tmp_path: Path) -> None:
    first = make_kit(tmp_path)
    pod = await first.run_pod("web")
    exited = await first.create(pod, "exited")
    running = await first.create(pod, "running")
    created = await first.create(pod, "created")
    for container_id in (exited, running):
        await first.containers.start_container(cri.StartContainerRequest(container_id=container_id))
    first.docker.exit(exited, 3)
    resources = cri.LinuxContainerResources(cpu_shares=256)
    await first.containers.update_container_resources(
        cri.UpdateContainerResourcesRequest(container_id=running, linux=resources)
    )
    before = {c: await first.status(c) for c in (exited, running, created)}
    before_pod = await first.pod_status(pod)
    await first.close()

    second = make_kit(tmp_path, docker=first.docker)
    await recovery.recover(second.ctx)
    try:
        assert sorted(second.ctx.store.sandbox_ids) == [pod]
        assert sorted(second.ctx.store.container_ids) == sorted([exited, running, created])
        assert await second.pod_status(pod) == before_pod
        for container_id, status in before.items():
            assert await second.status(container_id) == status
        assert (await second.status(running)).resources.linux.cpu_shares == 256
        assert (await second.status(exited)).reason == "Error"
        # And it carries on: the recovered pod stops and goes as usual.
        await second.sandboxes.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
        assert second.docker.containers == {}
    finally:
        await second.close()


async def test_one_container_docker_is_slow_on_is_skipped_with_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_kit(tmp_path)
    slow, fine = await first.run_pod("slow"), await first.run_pod("fine")
    await first.close()
    monkeypatch.setattr(recovery, "ITEM_TIMEOUT", 0.3)
    first.docker.delay("inspect_container", 10, target=slow)
    second = make_kit(tmp_path, docker=first.docker)
    started = time.monotonic()
    await recovery.recover(second.ctx)
    assert time.monotonic() - started < 3
    assert sorted(second.ctx.store.sandbox_ids) == [fine]
    # The item's deadline reached the Docker call, which gave up by itself.
    assert f"could not recover {slow[:13]}: docker inspect_container outlived" in caplog.text
    await second.close()


async def test_log_bookmarks_of_containers_docker_lost_are_removed(tmp_path: Path) -> None:
    first = make_kit(tmp_path)
    await first.run_pod("web")
    await first.close()
    lost = first.ctx.log_copiers.bookmark_path("f" * 64)
    lost.parent.mkdir(parents=True, exist_ok=True)
    lost.write_text("{}")
    second = make_kit(tmp_path, docker=first.docker)
    await recovery.recover(second.ctx)
    assert not lost.exists()
    await second.close()
