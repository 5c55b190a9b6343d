"""Start-up recovery of the docker adapter, against a stand-in for dockerd."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from pycrid.adapters import errors
from pycrid.adapters.base import StartupError
from pycrid.adapters.config import Config
from pycrid.adapters.docker import naming, recovery
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.store import Checkpoints, NetworkState, Store
from pycrid.adapters.idindex import IdIndex
from pycrid.adapters.node.cni import CniRunner
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.node.podnetwork import PodNetworks
from pycrid.api.cri import api_pb2 as cri

INSTANCE = "feedfacefeedface"
RUNNING = {"Status": "running", "Pid": 4242, "StartedAt": "2026-01-01T00:00:01Z"}
EXITED = {
    "Status": "exited",
    "ExitCode": 3,
    "StartedAt": "2026-01-01T00:00:01Z",
    "FinishedAt": "2026-01-01T00:00:02Z",
}
RECORDING_PLUGIN = """#!{python}
import json, os, sys
config = json.load(sys.stdin)
with open(os.path.join(os.path.dirname(sys.argv[0]), "..", "calls.jsonl"), "a") as log:
    log.write(json.dumps([os.environ["CNI_COMMAND"], os.environ["CNI_CONTAINERID"]]) + "\\n")
"""


class FakeDocker:
    """Answers the few Engine API calls recovery makes, from a dict of inspects."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.broken: set[str] = set()

    def add(self, container_id: str, labels: dict[str, str], state: dict[str, Any]) -> None:
        self.containers[container_id] = {
            "Id": container_id,
            "Created": "2026-01-01T00:00:00.5Z",
            "Image": "sha256:" + "a" * 64,
            "Config": {"Labels": labels},
            "State": state,
        }

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "containers":
            wanted = kwargs["filters"]["label"][0]
            return [
                {"Id": c["Id"], "State": c["State"]["Status"]}
                for c in self.containers.values()
                if f"{naming.INSTANCE_LABEL}={c['Config']['Labels'].get(naming.INSTANCE_LABEL)}"
                == wanted
            ]
        if method == "inspect_container":
            if args[0] in self.broken:
                raise errors.Internal("docker: inspect failed")
            if args[0] not in self.containers:
                raise errors.NotFound(args[0])
            return self.containers[args[0]]
        raise AssertionError(f"unexpected docker call {method}")


class FakeImages:
    async def inspect(self, reference: str) -> dict[str, Any]:
        return {"Id": reference, "RepoDigests": ["registry.k8s.io/x@sha256:" + "b" * 64]}

    def image_ref(self, inspect: dict[str, Any]) -> str:
        return inspect["RepoDigests"][0]


class FakeLogCopiers:
    def __init__(self) -> None:
        self.recovered: list[str] = []

    async def recover(self, container_id: str, log_path: str, tty: bool) -> None:
        self.recovered.append(container_id)


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
    docker = FakeDocker()
    copiers = FakeLogCopiers()
    ctx = DockerContext(
        config=Config(state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run")),
        client=docker,  # type: ignore[arg-type]
        images=FakeImages(),
        store=Store(Checkpoints(tmp_path / "state" / "docker")),
        instance=INSTANCE,
        sandbox_ids=IdIndex("pod sandbox"),
        container_ids=IdIndex("container"),
        networks=PodNetworks(CniRunner([str(bin_dir)]), tmp_path / "run" / "docker" / "netns"),
        run_dir=tmp_path / "run" / "docker",
        host=HostFacts(),
        log_copiers=copiers,
    )
    return ctx, docker, copiers, tmp_path / "calls.jsonl"


CNI_NETWORK = {
    "name": "n",
    "cniVersion": "1.0.0",
    "plugins": [{"type": "bridge"}, {"type": "loopback"}],
}


async def test_recovery_rebuilds_pods_and_containers_one_by_one(setup: tuple) -> None:
    ctx, docker, copiers, cni_calls = setup
    checkpoints: Checkpoints = ctx.store.checkpoints
    docker.add("ready", naming.sandbox_labels(pod("a"), INSTANCE, "runc"), RUNNING)
    await checkpoints.save_sandbox(
        "ready", NetworkState(mode="cni", ready=True, ips=["10.0.0.2"], network=CNI_NETWORK)
    )
    docker.add("unchecked", naming.sandbox_labels(pod("b"), INSTANCE, ""), RUNNING)
    docker.add(
        "running", naming.container_labels(container("r"), INSTANCE, "ready", "/l/r"), RUNNING
    )
    docker.add("exited", naming.container_labels(container("e"), INSTANCE, "ready", "/l/e"), EXITED)
    await checkpoints.save_container_resources("exited", cri.LinuxContainerResources(cpu_shares=7))
    docker.add(
        "created",
        naming.container_labels(container("c"), INSTANCE, "ready", "/l/c"),
        {"Status": "created"},
    )
    docker.add("foreign", naming.sandbox_labels(pod("f"), "someone-else", ""), RUNNING)
    docker.add("broken", naming.sandbox_labels(pod("x"), INSTANCE, ""), RUNNING)
    docker.broken.add("broken")
    # Leftovers: a pod and a container that Docker no longer has.
    await checkpoints.save_sandbox(
        "vanished", NetworkState(mode="cni", ready=True, network=CNI_NETWORK, result={})
    )
    await checkpoints.save_container_resources("gone", cri.LinuxContainerResources())

    await recovery.recover(ctx)

    assert sorted(ctx.sandbox_ids) == ["ready", "unchecked"]
    assert sorted(ctx.container_ids) == ["created", "exited", "running"]
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
    assert sorted(checkpoints.sandbox_ids()) == ["ready"]
    assert sorted(checkpoints.container_ids()) == ["exited"]


async def test_recovery_fails_start_up_when_docker_cannot_list(setup: tuple) -> None:
    ctx, docker, _, _ = setup

    async def unavailable(method: str, *args: Any, **kwargs: Any) -> Any:
        raise errors.Unavailable("docker is not reachable")

    docker.call = unavailable  # type: ignore[method-assign]

    with pytest.raises(StartupError, match="not reachable"):
        await recovery.recover(ctx)
