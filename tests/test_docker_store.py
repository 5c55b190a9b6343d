"""The docker adapter's records, their states, and its files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pycrid.adapters.docker.store import (
    ContainerRecord,
    NetworkState,
    SandboxRecord,
    StateFiles,
    Store,
)
from pycrid.adapters.node import netns
from pycrid.api.cri import api_pb2 as cri

ZERO = "0001-01-01T00:00:00Z"


def container_record(container_id: str = "c1") -> ContainerRecord:
    return ContainerRecord(
        id=container_id,
        sandbox_id="s1",
        config=cri.ContainerConfig(),
        log_path="",
        created_at=1,
        image_id="sha256:x",
        image_ref="sha256:x",
        resources=cri.LinuxContainerResources(),
    )


def sandbox_record(sandbox_id: str = "s1", ready: bool = True) -> SandboxRecord:
    return SandboxRecord(
        id=sandbox_id,
        config=cri.PodSandboxConfig(),
        runtime_handler="",
        created_at=1,
        network=NetworkState(mode="cni", ready=ready),
        docker_state="running",
    )


def inspect(status: str, exit_code: int = 0, oom: bool = False, error: str = "", **times: str):
    return {
        "State": {
            "Status": status,
            "Pid": 42 if status == "running" else 0,
            "ExitCode": exit_code,
            "OOMKilled": oom,
            "Error": error,
            "StartedAt": times.get("started", ZERO),
            "FinishedAt": times.get("finished", ZERO),
        }
    }


@pytest.mark.parametrize(
    ("state", "expected", "reason"),
    [
        (inspect("created"), cri.CONTAINER_CREATED, ""),
        (inspect("running"), cri.CONTAINER_RUNNING, ""),
        (inspect("paused"), cri.CONTAINER_RUNNING, ""),
        (inspect("exited"), cri.CONTAINER_EXITED, "Completed"),
        (inspect("exited", 1), cri.CONTAINER_EXITED, "Error"),
        (inspect("exited", 137, oom=True), cri.CONTAINER_EXITED, "OOMKilled"),
        (inspect("created", 127, error="exec: not found"), cri.CONTAINER_EXITED, "Error"),
        (inspect("dead", 137), cri.CONTAINER_EXITED, "Error"),
    ],
)
def test_container_states_and_reasons(state: dict, expected: int, reason: str) -> None:
    record = container_record()
    record.update(state)
    assert record.state == expected
    assert record.reason == reason
    assert record.finished_known == (expected == cri.CONTAINER_EXITED)


def test_finished_is_never_before_started() -> None:
    record = container_record()
    record.update(
        inspect(
            "exited",
            started="2026-01-01T00:00:00.000000500Z",
            finished="2026-01-01T00:00:00.000000100Z",
        )
    )
    assert record.finished_at == record.started_at


def test_sandbox_is_ready_only_while_running_with_its_network() -> None:
    record = sandbox_record()
    assert record.state == cri.SANDBOX_READY
    record.update(inspect("exited"))
    assert record.state == cri.SANDBOX_NOTREADY
    assert sandbox_record(ready=False).state == cri.SANDBOX_NOTREADY


def test_listing_updates_states_and_drops_what_docker_lost(tmp_path: Path) -> None:
    store = Store(StateFiles(tmp_path))
    old_container = container_record("old")
    old_container.finished_known = True
    store.containers["old"] = old_container
    store.sandboxes["s1"] = sandbox_record()
    listed_since = time.monotonic()
    store.containers["new"] = container_record("new")  # created while Docker listed
    gone = store.apply_listing({"s1": "exited"}, listed_since)
    assert gone == ["old"]
    assert "new" in store.containers
    assert store.sandboxes["s1"].state == cri.SANDBOX_NOTREADY

    store.containers["c"] = container_record("c")
    store.containers["c"].update(inspect("running"))
    store.apply_listing({"s1": "exited", "c": "exited", "new": "created"}, time.monotonic())
    assert store.containers["c"].state == cri.CONTAINER_EXITED
    assert not store.containers["c"].finished_known  # Status inspects for the exit code


async def test_state_files_round_trip(tmp_path: Path) -> None:
    files = StateFiles(tmp_path)
    network = NetworkState(
        mode="cni",
        ready=True,
        ips=["10.0.0.2"],
        netns="/run/x",
        network={"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]},
        result={"ips": []},
        port_mappings=[{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}],
    )
    await files.save_sandbox("s1", network)
    assert files.load_sandbox("s1") == network
    assert files.sandbox_ids() == ["s1"]
    files.delete_sandbox("s1")
    files.delete_sandbox("s1")
    assert files.load_sandbox("s1") is None

    resources = cri.LinuxContainerResources(cpu_quota=5, memory_limit_in_bytes=1 << 30)
    await files.save_container_resources("c1", resources)
    assert files.load_container_resources("c1") == resources
    assert files.container_ids() == ["c1"]
    files.delete_container("c1")
    assert files.load_container_resources("c1") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
def test_netns_pin_and_unpin(tmp_path: Path) -> None:
    path = tmp_path / "netns" / "pod"
    netns.pin(os.getpid(), path)
    assert netns.is_pinned(path)
    assert path.stat().st_ino == os.stat(f"/proc/{os.getpid()}/ns/net").st_ino
    netns.pin(os.getpid(), path)  # pinning twice is harmless
    netns.unpin(path)
    assert not netns.is_pinned(path)
    assert not path.exists()
    netns.unpin(path)  # and so is releasing twice
