"""App containers on the docker adapter, against an in-memory dockerd."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.deadline import set_call_deadline
from pycrid.adapters.docker import naming
from pycrid.adapters.docker.fake import ExecResult
from pycrid.adapters.node import crilog
from pycrid.api.cri import api_pb2 as cri

from .dockerkit import BUSYBOX, INSTANCE, Kit, container_config, in_call, make_kit, pod_config


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    kit = make_kit(tmp_path)
    yield kit
    await kit.close()


@pytest.fixture
async def pod(kit: Kit) -> str:
    return await kit.run_pod("web")


async def start(kit: Kit, container_id: str) -> None:
    await kit.containers.start_container(cri.StartContainerRequest(container_id=container_id))


async def stop(kit: Kit, container_id: str, timeout: int = 0) -> None:
    request = cri.StopContainerRequest(container_id=container_id, timeout=timeout)
    await kit.containers.stop_container(request)


async def listed(kit: Kit, **fields: object) -> list[str]:
    request = cri.ListContainersRequest(filter=cri.ContainerFilter(**fields))
    return sorted(c.id for c in (await kit.containers.list_containers(request)).containers)


# CreateContainer.


async def test_a_container_joins_its_pod_and_carries_its_config(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    made = kit.docker.containers[container_id]
    sandbox = pod_config("web").metadata
    assert made.name == naming.container_name(container_config("app").metadata, sandbox, INSTANCE)
    assert made.image_id == kit.docker.images[made.image_id].id
    assert made.network_mode == f"container:{pod}"
    assert not made.running
    owned = naming.read_labels(made.labels, INSTANCE)
    assert owned is not None and owned.sandbox_id == pod
    assert owned.config == container_config("app")

    status = await kit.status(container_id)
    assert status.state == cri.CONTAINER_CREATED
    assert status.created_at == made.created
    assert status.started_at == status.finished_at == 0
    assert status.image.image == BUSYBOX
    assert status.image_id == made.image_id
    assert status.image_ref.startswith("registry.k8s.io/e2e-test-images/busybox@sha256:")
    assert await listed(kit) == [container_id]


async def test_no_container_in_a_pod_that_is_not_ready(kit: Kit, pod: str) -> None:
    await kit.sandboxes.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    with pytest.raises(errors.FailedPrecondition, match="not ready"):
        await kit.create(pod, "app")
    assert list(kit.docker.containers) == [pod]


async def test_an_image_dockerd_lacks_is_not_found(kit: Kit, pod: str) -> None:
    with pytest.raises(errors.NotFound, match="absent:1"):
        await kit.create(pod, "app", image=cri.ImageSpec(image="registry.k8s.io/absent:1"))
    assert kit.docker.called("create_container")[-1][0].startswith("k8s_POD_")


async def test_a_create_that_outlives_its_deadline_leaves_no_container(kit: Kit, pod: str) -> None:
    kit.docker.delay("inspect_container", 5)
    with pytest.raises(errors.DeadlineExceeded):
        await in_call(0.2, lambda: kit.create(pod, "app"))
    kit.docker.delay("inspect_container", 0)
    assert list(kit.docker.containers) == [pod]
    assert len(kit.ctx.store.containers) == 0
    assert await listed(kit) == []
    # The retry creates it afresh.
    container_id = await kit.create(pod, "app")
    assert (await kit.status(container_id)).state == cri.CONTAINER_CREATED


async def test_a_create_with_no_time_left_reaches_no_docker_call(kit: Kit, pod: str) -> None:
    calls = len(kit.docker.calls)
    with pytest.raises(errors.DeadlineExceeded, match="no time left"):
        await in_call(-1, lambda: kit.create(pod, "app"))
    assert [m for m, _ in kit.docker.calls[calls:]] == ["inspect_image"]
    assert list(kit.docker.containers) == [pod]


# StartContainer, and how a container ends.


async def test_start_runs_it_and_exit_codes_give_the_reason(kit: Kit, pod: str) -> None:
    done, failed, killed = [await kit.create(pod, name) for name in ("done", "failed", "oom")]
    for container_id in (done, failed, killed):
        await start(kit, container_id)
    running = await kit.status(done)
    assert running.state == cri.CONTAINER_RUNNING
    assert running.started_at == kit.docker.containers[done].started_at
    assert running.reason == "" and running.exit_code == 0

    kit.docker.exit(done, 0)
    kit.docker.exit(failed, 3)
    kit.docker.exit(killed, 137, oom=True)
    outcomes = {}
    for container_id in (done, failed, killed):
        status = await kit.status(container_id)
        assert status.state == cri.CONTAINER_EXITED
        assert status.finished_at >= status.started_at > 0
        outcomes[container_id] = (status.exit_code, status.reason)
    assert outcomes == {done: (0, "Completed"), failed: (3, "Error"), killed: (137, "OOMKilled")}


async def test_start_twice_is_refused(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    await start(kit, container_id)
    with pytest.raises(errors.FailedPrecondition, match="CONTAINER_RUNNING"):
        await start(kit, container_id)
    assert len(kit.docker.called("start_container")) == 2  # the pod's and the container's


async def test_a_process_that_fails_to_start_is_exited_with_the_runtimes_message(
    kit: Kit, pod: str
) -> None:
    name = naming.container_name(
        container_config("app").metadata, pod_config("web").metadata, INSTANCE
    )
    kit.docker.start_errors[name] = 'exec: "sh": executable file not found in $PATH'
    container_id = await kit.create(pod, "app")
    with pytest.raises(errors.Internal, match="executable file not found"):
        await start(kit, container_id)
    status = await kit.status(container_id)
    assert status.state == cri.CONTAINER_EXITED
    assert status.reason == "Error"
    assert status.exit_code == 128
    assert "executable file not found" in status.message


async def test_start_in_a_pod_that_stopped_is_refused(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    kit.docker.exit(pod, 0)
    await kit.pod_status(pod)  # learns that the pause container is gone
    with pytest.raises(errors.FailedPrecondition, match="not ready"):
        await start(kit, container_id)
    assert not kit.docker.containers[container_id].running


# StopContainer and RemoveContainer.


async def test_stop_passes_the_grace_period_to_docker(kit: Kit, pod: str) -> None:
    quick, slow = await kit.create(pod, "quick"), await kit.create(pod, "slow")
    await start(kit, quick)
    await start(kit, slow)
    await stop(kit, quick, 0)
    await stop(kit, slow, 30)
    assert kit.docker.called("stop_container")[-2:] == [(quick, 0), (slow, 30)]
    assert (await kit.status(quick)).exit_code == 137
    assert (await kit.status(slow)).exit_code == 143
    # Stopping what already stopped asks Docker nothing more.
    await stop(kit, quick)
    assert len(kit.docker.called("stop_container")) == 2


async def test_stop_of_what_is_gone_succeeds_and_forgets_it(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    await start(kit, container_id)
    del kit.docker.containers[container_id]
    await stop(kit, container_id)
    await stop(kit, "never-existed")
    with pytest.raises(errors.NotFound):
        await kit.status(container_id)


async def test_remove_takes_it_out_of_docker_and_out_of_lists(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    await start(kit, container_id)
    request = cri.RemoveContainerRequest(container_id=container_id)
    await kit.containers.remove_container(request)
    assert kit.docker.called("remove_container") == [(container_id, True, True)]
    assert container_id not in kit.docker.containers
    assert await listed(kit) == []
    with pytest.raises(errors.NotFound):
        await kit.status(container_id)
    await kit.containers.remove_container(request)  # again: still fine


async def test_a_remove_docker_refuses_keeps_the_container(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    kit.docker.fail_status("remove_container", 409, "removal of container is already in progress")
    with pytest.raises(errors.FailedPrecondition, match="already in progress"):
        await kit.containers.remove_container(cri.RemoveContainerRequest(container_id=container_id))
    assert await listed(kit) == [container_id]


# ContainerStatus and ListContainers.


async def test_list_filters_by_id_pod_state_and_labels(kit: Kit, pod: str) -> None:
    other_pod = await kit.run_pod("other")
    a, b = await kit.create(pod, "a"), await kit.create(pod, "b")
    c = await kit.create(other_pod, "c", labels={"tier": "b"})
    await start(kit, b)
    running = cri.ContainerStateValue(state=cri.CONTAINER_RUNNING)
    assert await listed(kit) == sorted([a, b, c])
    assert await listed(kit, id=a) == [a]
    assert await listed(kit, pod_sandbox_id=other_pod) == [c]
    assert await listed(kit, state=running) == [b]
    assert await listed(kit, label_selector={"tier": "b"}) == sorted([b, c])
    assert await listed(kit, label_selector={"tier": "b"}, pod_sandbox_id=pod) == [b]
    # Exits and removals behind pycrid's back show in the next list.
    kit.docker.exit(b, 1)
    del kit.docker.containers[a]
    exited = cri.ContainerStateValue(state=cri.CONTAINER_EXITED)
    assert await listed(kit, state=exited) == [b]
    assert await listed(kit) == sorted([b, c])


async def test_status_of_a_container_docker_lost_is_not_found(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    del kit.docker.containers[container_id]
    with pytest.raises(errors.NotFound):
        await kit.status(container_id)
    assert container_id not in kit.ctx.store.container_ids


async def test_an_exited_status_is_answered_from_memory(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    await start(kit, container_id)
    kit.docker.exit(container_id, 0)
    await kit.status(container_id)
    inspects = len(kit.docker.called("inspect_container"))
    kit.docker.down = True  # an exited container's status no longer needs Docker
    assert (await kit.status(container_id)).reason == "Completed"
    assert len(kit.docker.called("inspect_container")) == inspects


async def test_verbose_status_tells_dockers_side(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    await start(kit, container_id)
    request = cri.ContainerStatusRequest(container_id=container_id, verbose=True)
    info = json.loads((await kit.containers.container_status(request)).info["info"])
    assert info["sandboxID"] == pod
    assert info["dockerState"] == "running"
    assert info["pid"] == kit.docker.containers[container_id].pid


# UpdateContainerResources.


async def test_update_sends_dockers_fields_and_keeps_them_across_restarts(
    kit: Kit, pod: str
) -> None:
    linux = cri.LinuxContainerConfig(resources=cri.LinuxContainerResources(oom_score_adj=100))
    container_id = await kit.create(pod, "app", linux=linux)
    resources = cri.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=64 << 20)
    request = cri.UpdateContainerResourcesRequest(container_id=container_id, linux=resources)
    await kit.containers.update_container_resources(request)

    assert kit.docker.containers[container_id].resources == {
        "CpuShares": 512,
        "Memory": 64 << 20,
        "MemorySwap": 64 << 20,
    }
    status = await kit.status(container_id)
    assert status.resources.linux.cpu_shares == 512
    assert status.resources.linux.oom_score_adj == 100  # fixed at creation
    saved = kit.ctx.store.files.load_container_resources(container_id)
    assert saved is not None and saved.cpu_shares == 512


async def test_an_update_docker_refuses_changes_nothing(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    kit.docker.fail_status("update_container", 400, "Minimum memory limit allowed is 6MB")
    resources = cri.LinuxContainerResources(memory_limit_in_bytes=1024)
    request = cri.UpdateContainerResourcesRequest(container_id=container_id, linux=resources)
    with pytest.raises(errors.InvalidArgument, match="6MB"):
        await kit.containers.update_container_resources(request)
    assert (await kit.status(container_id)).resources.linux.memory_limit_in_bytes == 0
    assert kit.ctx.store.files.load_container_resources(container_id) is None


# ExecSync, and the log.


async def exec_sync(kit: Kit, container_id: str, cmd: list[str], timeout: int = 0) -> object:
    request = cri.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout)
    return await kit.containers.exec_sync(request)


async def test_exec_sync_returns_output_and_exit_code(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    await start(kit, container_id)
    kit.docker.programs["report"] = lambda argv: ExecResult(b"out\n", b"err\n", 7)
    response = await exec_sync(kit, container_id, ["echo", "hello", "world"])
    assert response == cri.ExecSyncResponse(stdout=b"hello world\n", exit_code=0)
    response = await exec_sync(kit, container_id, ["report"])
    assert response == cri.ExecSyncResponse(stdout=b"out\n", stderr=b"err\n", exit_code=7)
    assert kit.docker.called("exec_create")[0] == (container_id, ["echo", "hello", "world"])


async def test_exec_sync_timeout_ends_the_command(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    await start(kit, container_id)
    with pytest.raises(errors.DeadlineExceeded, match="timeout of 1s"):
        await exec_sync(kit, container_id, ["sleep", "600"], timeout=1)
    (execution,) = kit.docker.execs.values()
    assert execution.exit_code == 137 and not execution.running


async def test_exec_sync_in_a_container_that_is_not_running(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    with pytest.raises(errors.FailedPrecondition, match="is not running"):
        await exec_sync(kit, container_id, ["true"])


async def test_reopen_log_of_a_container_that_is_not_running(kit: Kit, pod: str) -> None:
    container_id = await kit.create(pod, "app")
    request = cri.ReopenContainerLogRequest(container_id=container_id)
    with pytest.raises(errors.FailedPrecondition, match="not running"):
        await kit.containers.reopen_container_log(request)


async def test_output_reaches_the_cri_log_before_exited_is_reported(
    tmp_path: Path, kit: Kit
) -> None:
    log_dir = tmp_path / "pods" / "web"
    pod = await kit.run_pod("logged", log_directory=str(log_dir))
    container_id = await kit.create(pod, "app", log_path="app/0.log")
    await start(kit, container_id)
    kit.docker.log(container_id, b"hello\n")
    kit.docker.log(container_id, b"oops\n", "stderr")
    kit.docker.log(container_id, b"no newline")
    kit.docker.exit(container_id, 0)
    status = await kit.status(container_id)
    assert status.state == cri.CONTAINER_EXITED
    assert status.log_path == str(log_dir / "app" / "0.log")
    lines = crilog.parse_lines((log_dir / "app" / "0.log").read_bytes())
    assert [(line.stream, line.tag, line.message) for line in lines] == [
        ("stdout", "F", b"hello"),
        ("stderr", "F", b"oops"),
        ("stdout", "P", b"no newline"),
    ]


async def test_a_shared_refresh_does_not_carry_its_first_callers_deadline(
    kit: Kit, pod: str
) -> None:
    await kit.create(pod, "app")
    kit.docker.delay("list_containers", 0.4)

    async def hurried() -> list[str]:
        set_call_deadline(0.2)
        return await listed(kit)

    async def patient() -> list[str]:
        await asyncio.sleep(0.05)  # joins the refresh the hurried call started
        return await listed(kit)

    first, second = await asyncio.gather(
        asyncio.create_task(hurried()), asyncio.create_task(patient()), return_exceptions=True
    )
    assert second == first and isinstance(second, list) and len(second) == 1
