"""Intent written before irreversible steps, and what recovery makes of it (oci)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pycrid.adapters.errors import CRIError, Internal, NotFound, backend_failure
from pycrid.adapters.node.podnetwork import NetworkState
from pycrid.adapters.oci.runtime.containers import OciContainers
from pycrid.adapters.oci.runtime.runc import RuncState
from pycrid.adapters.oci.runtime.store import ContainerRecord, RuntimeStore, SandboxRecord
from pycrid.api.cri import api_pb2 as cri


class FakeRunc:
    def __init__(self, status: str | None) -> None:
        self.status = status
        self.asked: list[str] = []

    async def state(self, container_id: str, timeout: float | None = None) -> RuncState | None:
        self.asked.append(container_id)
        if self.status is None:
            return None
        return RuncState(container_id, self.status, 42, "/bundle", "")


def containers(tmp_path: Path, status: str | None) -> tuple[OciContainers, Any]:
    ctx: Any = SimpleNamespace(
        store=RuntimeStore(tmp_path), runc=FakeRunc(status), images=None, exited=frozenset
    )
    return OciContainers(ctx), ctx


def record(**fields: Any) -> ContainerRecord:
    return ContainerRecord(
        id="c" * 64,
        sandbox_id="s" * 64,
        config=cri.ContainerConfig(metadata=cri.ContainerMetadata(name="c")),
        image_name="busybox",
        image_id="sha256:1",
        image_ref="sha256:1",
        log_path="",
        created_at=1,
        pid=42,
        **fields,
    )


@pytest.mark.parametrize("status", ["running", "paused", "stopped", None])
async def test_a_start_runc_saw_makes_the_container_running(
    tmp_path: Path, status: str | None
) -> None:
    concern, ctx = containers(tmp_path, status)
    container = record(starting_at=1000)
    await concern.settle_start(container)
    assert container.state == cri.CONTAINER_RUNNING
    assert container.started_at == 1000
    saved = ctx.store.containers[container.id]
    assert saved.started_at == 1000


async def test_a_start_runc_never_saw_leaves_it_created(tmp_path: Path) -> None:
    concern, _ = containers(tmp_path, "created")
    container = record(starting_at=1000)
    await concern.settle_start(container)
    assert container.state == cri.CONTAINER_CREATED
    assert container.starting_at == 0


async def test_settled_records_are_not_asked_about(tmp_path: Path) -> None:
    concern, ctx = containers(tmp_path, "running")
    for container in (record(), record(starting_at=5, started_at=6)):
        await concern.settle_start(container)
    assert ctx.runc.asked == []


def test_intent_fields_survive_the_record_file() -> None:
    container = record(starting_at=77)
    assert ContainerRecord.from_json(container.to_json()).starting_at == 77
    pod = SandboxRecord(
        id="s" * 64,
        config=cri.PodSandboxConfig(),
        runtime_handler="",
        created_at=1,
        network=NetworkState(mode="cni", ready=True),
        ready=False,
        stopping=True,
    )
    again = SandboxRecord.from_json(pod.to_json())
    assert again.stopping and again.state == cri.SANDBOX_NOTREADY


class StartingRunc(FakeRunc):
    """runc whose start fails, with the container running (or not) afterwards."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.starts = 0

    async def start(self, container_id: str) -> None:
        self.starts += 1
        raise Internal("runc start: cannot start an already running container")


async def start_with(tmp_path: Path, status: str) -> tuple[ContainerRecord, Any]:
    concern, ctx = containers(tmp_path, status)
    ctx.runc = StartingRunc(status)
    concern.sandboxes = SimpleNamespace(refresh=lambda record: None)
    pod = SandboxRecord(
        id="s" * 64,
        config=cri.PodSandboxConfig(),
        runtime_handler="",
        created_at=1,
        network=NetworkState(mode="host"),
        ready=True,
    )
    ctx.store.sandboxes[pod.id] = pod
    container = record()
    ctx.store.containers[container.id] = container
    with contextlib.suppress(CRIError):
        await concern.start_container(cri.StartContainerRequest(container_id=container.id))
    return container, ctx


async def test_a_failed_start_of_a_container_that_runs_is_running(tmp_path: Path) -> None:
    container, ctx = await start_with(tmp_path, "running")
    assert ctx.runc.starts == 1
    assert container.state == cri.CONTAINER_RUNNING and container.exit_code == 0


async def test_a_failed_start_of_a_container_that_does_not_run_has_exited(
    tmp_path: Path,
) -> None:
    container, _ = await start_with(tmp_path, "stopped")
    assert container.state == cri.CONTAINER_EXITED
    assert (container.exit_code, container.reason) == (128, "StartError")
    assert container.message.startswith(f"container {container.id[:13]} could not be started")


def test_backend_failures_carry_pycrids_words_first() -> None:
    words = "pod x could not be started"
    with pytest.raises(Internal) as wrapped, backend_failure(words):
        raise Internal("runc start: boom")
    assert str(wrapped.value) == "pod x could not be started: runc start: boom"
    with pytest.raises(NotFound) as kept, backend_failure(words):
        raise NotFound("gone")
    assert str(kept.value) == "gone"
