"""The docker adapter's memory kept live by Docker's events, against an in-memory dockerd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pycrid.adapters.docker.events import EventWatch
from pycrid.adapters.docker.store import ContainerRecord
from pycrid.adapters.node.oomlog import KernelOomLog
from pycrid.api.cri import api_pb2 as cri

from .dockerkit import BUSYBOX, Kit, make_kit


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    kit = make_kit(tmp_path)
    yield kit
    await kit.close()


async def running_container(kit: Kit, pod: str, name: str = "app") -> str:
    container_id = await kit.create(pod, name)
    await kit.containers.start_container(cri.StartContainerRequest(container_id=container_id))
    return container_id


async def list_states(kit: Kit) -> dict[str, int]:
    response = await kit.containers.list_containers(cri.ListContainersRequest())
    return {c.id: c.state for c in response.containers}


async def until(condition: Callable[[], bool], seconds: float = 5) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


def docker_calls(kit: Kit, *methods: str) -> int:
    return sum(len(kit.docker.called(method)) for method in methods)


async def test_lists_and_statuses_answer_from_memory_while_events_are_followed(kit: Kit) -> None:
    pod = await kit.run_pod()
    container = await running_container(kit, pod)
    await kit.follow_events()
    before = docker_calls(kit, "list_containers", "inspect_container")
    for _ in range(3):
        assert await list_states(kit) == {container: cri.CONTAINER_RUNNING}
        await kit.sandboxes.list_pod_sandbox(cri.ListPodSandboxRequest())
        assert (await kit.status(container)).state == cri.CONTAINER_RUNNING
        assert (await kit.pod_status(pod)).state == cri.SANDBOX_READY
    assert docker_calls(kit, "list_containers", "inspect_container") == before


async def test_without_events_every_list_asks_docker(kit: Kit) -> None:
    pod = await kit.run_pod()
    await running_container(kit, pod)
    before = docker_calls(kit, "list_containers")
    await list_states(kit)
    await list_states(kit)
    assert docker_calls(kit, "list_containers") == before + 2


async def test_a_container_that_exits_by_itself_is_exited_in_the_next_list(kit: Kit) -> None:
    pod = await kit.run_pod()
    container = await running_container(kit, pod)
    await kit.follow_events()
    kit.docker.exit(container, 3)
    record = kit.ctx.store.container(container)
    await until(lambda: record.docker_state == "exited")
    assert await list_states(kit) == {container: cri.CONTAINER_EXITED}
    status = await kit.status(container)  # exit details: one inspect, then memory
    assert (status.state, status.exit_code, status.reason) == (cri.CONTAINER_EXITED, 3, "Error")
    inspects = docker_calls(kit, "inspect_container")
    assert (await kit.status(container)).exit_code == 3
    assert docker_calls(kit, "inspect_container") == inspects


async def test_an_oom_kill_is_told_by_the_status_after_it(kit: Kit) -> None:
    pod = await kit.run_pod()
    container = await running_container(kit, pod)
    await kit.follow_events()
    kit.docker.exit(container, 137, oom=True)
    record = kit.ctx.store.container(container)
    await until(lambda: record.docker_state == "exited")
    assert (await kit.status(container)).reason == "OOMKilled"


async def test_an_oom_event_after_the_exit_still_makes_it_oom_killed(kit: Kit) -> None:
    """dockerd 20.10 keeps OOMKilled false when the OOM comes after the exit."""
    pod = await kit.run_pod()
    container = await running_container(kit, pod)
    await kit.follow_events()
    kit.docker.exit(container, 137, oom=True, late_oom=True)
    record = kit.ctx.store.container(container)
    await until(lambda: record.oom_event)
    status = await kit.status(container)
    assert (status.reason, status.exit_code) == ("OOMKilled", 137)


async def test_an_oom_kill_docker_never_reports_is_read_from_the_kernel_log(
    kit: Kit, tmp_path: Path
) -> None:
    """The kill came before dockerd's shim watched the cgroup: no ``oom`` event, ever."""
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    oom_log = kit.ctx.store.oom_log = KernelOomLog(kmsg)
    pod = await kit.run_pod()
    container = await running_container(kit, pod)
    other = await running_container(kit, pod, name="other")
    await kit.follow_events()
    with kmsg.open("a") as log:
        log.write(
            "6,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
            f"cpuset={container},mems_allowed=0,oom_memcg=/docker/{container},"
            f"task_memcg=/docker/{container},task=tail,pid=42,uid=0\n"
        )
    kit.docker.exit(container, 137, oom=True, lost_oom=True)
    kit.docker.exit(other, 137)
    for exited in (container, other):
        record = kit.ctx.store.container(exited)
        await until(lambda record=record: record.docker_state == "exited")
    assert (await kit.status(container)).reason == "OOMKilled"
    assert (await kit.status(other)).reason == "Error"
    oom_log.close()


async def test_an_exit_first_seen_by_an_inspect_also_asks_the_kernel_log(
    kit: Kit, tmp_path: Path
) -> None:
    """No events followed: the status call's inspect is where the exit is learned."""
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    kit.ctx.store.oom_log = KernelOomLog(kmsg)
    container = await running_container(kit, await kit.run_pod())
    kmsg.write_text(
        f"6,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,task_memcg=/docker/{container}\n"
    )
    kit.docker.exit(container, 137, oom=True, lost_oom=True)
    status = await kit.status(container)
    assert (status.state, status.reason) == (cri.CONTAINER_EXITED, "OOMKilled")
    kit.ctx.store.oom_log.close()


async def test_a_pod_whose_pause_container_dies_is_not_ready_at_once(kit: Kit) -> None:
    pod = await kit.run_pod()
    await kit.follow_events()
    kit.docker.exit(pod, 137)
    await until(lambda: not kit.ctx.store.sandbox(pod).ready)
    response = await kit.sandboxes.list_pod_sandbox(cri.ListPodSandboxRequest())
    assert [item.state for item in response.items] == [cri.SANDBOX_NOTREADY]
    assert (await kit.pod_status(pod)).state == cri.SANDBOX_NOTREADY


async def test_no_transition_is_missed_while_the_stream_is_down(kit: Kit) -> None:
    pod = await kit.run_pod()
    first = await running_container(kit, pod, "first")
    second = await running_container(kit, pod, "second")
    watch = await kit.follow_events()
    kit.docker.quiet = True  # what happens now, no event tells
    kit.docker.break_events()
    kit.docker.exit(first, 0)
    await until(lambda: not kit.ctx.store.live)
    # Not live: calls ask Docker, so the exit is seen before the stream is back.
    assert (await list_states(kit))[first] == cri.CONTAINER_EXITED
    kit.docker.exit(second, 1)
    kit.docker.quiet = False
    await asyncio.wait_for(watch.connected.wait(), 5)
    assert kit.ctx.store.container(second).docker_state == "exited"  # caught up by the listing
    assert await list_states(kit) == {
        first: cri.CONTAINER_EXITED,
        second: cri.CONTAINER_EXITED,
    }


async def test_a_reconnect_asked_for_catches_up_with_a_full_listing(kit: Kit) -> None:
    pod = await kit.run_pod()
    container = await running_container(kit, pod)
    watch = await kit.follow_events()
    listings = docker_calls(kit, "list_containers")
    kit.docker.quiet = True
    watch.reconnect()
    kit.docker.exit(container, 0)
    kit.docker.quiet = False
    await until(lambda: docker_calls(kit, "list_containers") > listings)
    await asyncio.wait_for(watch.connected.wait(), 5)
    assert await list_states(kit) == {container: cri.CONTAINER_EXITED}


async def test_a_container_removed_behind_pycrids_back_leaves_the_lists(kit: Kit) -> None:
    pod = await kit.run_pod()
    container = await running_container(kit, pod)
    await kit.follow_events()
    await kit.docker.remove_container(container, force=True)
    await until(lambda: container not in kit.ctx.store.containers)
    assert await list_states(kit) == {}


async def test_an_inspect_older_than_an_event_cannot_take_the_state_back(kit: Kit) -> None:
    record = ContainerRecord(
        id="c1",
        sandbox_id="p1",
        config=cri.ContainerConfig(),
        log_path="",
        created_at=0,
        image_id="",
        image_ref="",
        resources=cri.LinuxContainerResources(),
    )
    record.update({"State": {"Status": "running", "Pid": 42}})
    assert record.details_current
    assert record.advance("exited")  # the event of the exit
    assert not record.details_current
    record.update({"State": {"Status": "running", "Pid": 42}})  # answered before the exit
    assert record.state == cri.CONTAINER_EXITED
    assert not record.details_current
    assert not record.advance("running")


async def test_image_answers_are_kept_until_an_image_changes(kit: Kit) -> None:
    await kit.follow_events()
    request = cri.ImageStatusRequest(image=cri.ImageSpec(image=BUSYBOX))
    assert (await kit.images.image_status(request)).HasField("image")
    await kit.images.list_images(cri.ListImagesRequest())
    inspects, lists = docker_calls(kit, "inspect_image"), docker_calls(kit, "list_images")
    assert (await kit.images.image_status(request)).HasField("image")
    await kit.images.list_images(cri.ListImagesRequest())
    assert docker_calls(kit, "inspect_image") == inspects
    assert docker_calls(kit, "list_images") == lists
    # Removed by another client of dockerd: the event makes the next answers fresh.
    await kit.docker.remove_image(BUSYBOX, force=True)
    await until(lambda: not kit.images._inspected)
    assert not (await kit.images.image_status(request)).HasField("image")
    listed = await kit.images.list_images(cri.ListImagesRequest())
    assert BUSYBOX not in [tag for image in listed.images for tag in image.repo_tags]


async def test_a_removal_here_is_seen_by_the_very_next_status(kit: Kit) -> None:
    await kit.follow_events()
    kit.docker.quiet = True  # even if the event were late
    request = cri.ImageStatusRequest(image=cri.ImageSpec(image=BUSYBOX))
    assert (await kit.images.image_status(request)).HasField("image")
    await kit.images.remove_image(cri.RemoveImageRequest(image=cri.ImageSpec(image=BUSYBOX)))
    assert not (await kit.images.image_status(request)).HasField("image")


async def test_a_watch_that_cannot_reach_docker_keeps_trying(kit: Kit) -> None:
    kit.docker.down = True
    store = kit.ctx.store
    watch = EventWatch(
        kit.docker,
        store,
        resync=lambda: kit.containers.refresh_all(even_if_live=True),
        images_changed=kit.images.changed,
    )
    kit.events = watch
    watch.start()
    await until(lambda: len(kit.docker.called("open_events")) >= 2)
    assert not store.live
    kit.docker.down = False
    await asyncio.wait_for(watch.connected.wait(), 10)
    assert store.live


async def test_container_events_follow_the_store_and_an_exit_by_itself(kit: Kit) -> None:
    from pycrid.adapters.docker.crievents import DockerEvents

    events = DockerEvents(kit.ctx)
    events.start()
    subscription = events.hub.subscribe()
    pod = await kit.run_pod()
    container = await running_container(kit, pod)
    await kit.follow_events()
    kit.docker.exit(container, 3)
    await until(lambda: kit.ctx.store.container(container).docker_state == "exited")
    await kit.containers.remove_container(cri.RemoveContainerRequest(container_id=container))
    seen = []
    while not subscription._queue.empty():
        item = subscription._queue.get_nowait()
        assert item is not None
        seen.append((item.container_id, item.container_event_type))
        assert item.pod_sandbox_status.id == pod
        if (
            item.container_event_type == cri.CONTAINER_STOPPED_EVENT
            and item.container_id == container
        ):
            stopped = {s.id: s for s in item.containers_statuses}[container]
            assert (stopped.state, stopped.exit_code) == (cri.CONTAINER_EXITED, 3)
    assert seen == [
        (pod, cri.CONTAINER_CREATED_EVENT),
        (pod, cri.CONTAINER_STARTED_EVENT),
        (container, cri.CONTAINER_CREATED_EVENT),
        (container, cri.CONTAINER_STARTED_EVENT),
        (container, cri.CONTAINER_STOPPED_EVENT),
        (container, cri.CONTAINER_DELETED_EVENT),
    ]


async def test_pycrids_own_removals_need_no_listing_to_catch_up(kit: Kit) -> None:
    pod = await kit.run_pod()
    container = await running_container(kit, pod)
    await kit.follow_events()
    listings = docker_calls(kit, "list_containers")
    await kit.containers.remove_container(cri.RemoveContainerRequest(container_id=container))
    await kit.sandboxes.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    await kit.sandboxes.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
    await asyncio.sleep(0.1)  # the destroy events arrive
    assert docker_calls(kit, "list_containers") == listings
    assert await list_states(kit) == {}
