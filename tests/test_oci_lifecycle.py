"""The oci runtime's pods and containers over in-memory runc and conmon, without root.

The same calls the end-to-end tests make against runc, here against
FakeRunc and FakeConmon (adapters/oci/runtime/fake.py): create, start, stop,
remove, idempotent retries, exits conmon reports, events, stats, and the
recovery of a restarted daemon, including after a kill -9 at each step.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.oci.runtime import containers as containers_module
from pycrid.adapters.oci.runtime import recovery
from pycrid.adapters.oci.runtime.fake import FakeProcesses
from pycrid.api.cri import api_pb2 as cri

from .ocikit import (  # noqa: F401 - fake_rootfs is a fixture
    OciKit,
    container_config,
    create,
    fake_rootfs,
    make_kit,
    pod_config,
    run_pod,
)

pytestmark = pytest.mark.usefixtures("fake_rootfs")


@pytest.fixture
async def kit(tmp_path: Path):
    made = await make_kit(tmp_path)
    yield made
    await made.close()


async def status(kit: OciKit, container_id: str) -> cri.ContainerStatus:
    request = cri.ContainerStatusRequest(container_id=container_id)
    return (await kit.containers.container_status(request)).status


async def pod_state(kit: OciKit, sandbox_id: str) -> int:
    request = cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id)
    return (await kit.sandboxes.pod_sandbox_status(request)).status.state


async def start(kit: OciKit, container_id: str) -> None:
    await kit.containers.start_container(cri.StartContainerRequest(container_id=container_id))


async def test_a_container_is_created_started_stopped_and_removed(kit: OciKit) -> None:
    pod = await run_pod(kit)
    assert await pod_state(kit, pod) == cri.SANDBOX_READY
    assert kit.world.ids("create") == [pod] and kit.world.ids("start") == [pod]
    container = await create(kit, pod)
    assert kit.ctx.store.resolve_container(container[:8]) == container
    spec = kit.containers.spec(container)
    assert spec["process"]["args"] == ["sleep", "3600"]
    assert (await status(kit, container)).state == cri.CONTAINER_CREATED

    await start(kit, container)
    running = await status(kit, container)
    assert running.state == cri.CONTAINER_RUNNING and running.started_at > 0
    answer = await kit.containers.exec_sync(
        cri.ExecSyncRequest(container_id=container, cmd=["echo", "hi"], timeout=5)
    )
    assert answer.exit_code == 0 and answer.stdout == b"echo hi"

    await kit.containers.stop_container(cri.StopContainerRequest(container_id=container, timeout=5))
    stopped = await status(kit, container)
    assert stopped.state == cri.CONTAINER_EXITED
    assert (stopped.exit_code, stopped.reason) == (143, "Error")  # SIGTERM

    await kit.containers.remove_container(cri.RemoveContainerRequest(container_id=container))
    assert container not in kit.ctx.store.containers
    assert container not in kit.ctx.store.container_ids
    assert not kit.ctx.store.container_dir(container).exists()
    assert not kit.ctx.bundle(container).exists()
    assert container not in kit.world.containers  # runc delete
    # Gone already: the CRI makes Stop and Remove succeed.
    await kit.containers.stop_container(cri.StopContainerRequest(container_id=container))
    await kit.containers.remove_container(cri.RemoveContainerRequest(container_id=container))
    with pytest.raises(errors.NotFound):
        await status(kit, container)


async def test_a_retried_create_gets_the_same_objects_and_a_clash_is_refused(kit: OciKit) -> None:
    pod = await run_pod(kit)
    again = await kit.sandboxes.run_pod_sandbox(cri.RunPodSandboxRequest(config=pod_config()))
    assert again.pod_sandbox_id == pod
    container = await create(kit, pod)
    assert await create(kit, pod) == container
    other = container_config()
    other.command[:] = ["true"]
    with pytest.raises(errors.AlreadyExists):
        await kit.containers.create_container(
            cri.CreateContainerRequest(pod_sandbox_id=pod, config=other)
        )
    assert kit.world.ids("create") == [pod, container]


async def test_a_failed_start_is_an_exited_container_with_runcs_reason(kit: OciKit) -> None:
    pod = await run_pod(kit)
    container = await create(kit, pod)
    kit.world.failures[("start", container)] = errors.Internal("exec: no such file")
    with pytest.raises(errors.Internal):
        await start(kit, container)
    failed = await status(kit, container)
    assert failed.state == cri.CONTAINER_EXITED
    assert (failed.reason, failed.exit_code) == ("StartError", 128)
    assert "no such file" in failed.message
    with pytest.raises(errors.FailedPrecondition):
        await start(kit, container)


async def test_a_failed_create_leaves_nothing(kit: OciKit) -> None:
    pod = await run_pod(kit)
    kit.world.failures[("create", "*")] = errors.Internal("runc create: boom")
    with pytest.raises(errors.Internal):
        await create(kit, pod)
    assert kit.ctx.store.containers_of(pod) == []
    assert list(kit.ctx.store.container_ids) == []
    assert not any((kit.ctx.store.root / "containers").iterdir())


async def test_stop_kills_what_ignores_the_stop_signal(kit: OciKit) -> None:
    pod = await run_pod(kit)
    container = await create(kit, pod)
    await start(kit, container)
    kit.world.containers[container].ignored.add(15)
    await kit.containers.stop_container(cri.StopContainerRequest(container_id=container, timeout=1))
    assert (await status(kit, container)).exit_code == 137  # SIGKILL after the timeout
    assert kit.world.ids("kill") == [container, container]


async def test_an_exit_conmon_reports_is_seen_and_a_lost_conmon_is_unknown(kit: OciKit) -> None:
    pod = await run_pod(kit)
    first, second = await create(kit, pod, "first"), await create(kit, pod, "second")
    await start(kit, first)
    await start(kit, second)
    kit.world.exit(first, 3)
    exited = await status(kit, first)
    assert (exited.state, exited.exit_code, exited.reason) == (cri.CONTAINER_EXITED, 3, "Error")
    del kit.world.containers[second]  # conmon and the process vanished without a word
    lost = await status(kit, second)
    assert (lost.state, lost.exit_code, lost.reason) == (cri.CONTAINER_EXITED, 255, "Unknown")


async def test_a_conmon_seen_running_then_lost_is_noticed_once_the_recheck_is_due(
    kit: OciKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = await run_pod(kit)
    container = await create(kit, pod)
    await start(kit, container)
    assert (await status(kit, container)).state == cri.CONTAINER_RUNNING  # conmon seen
    del kit.world.containers[container]
    assert (await status(kit, container)).state == cri.CONTAINER_RUNNING  # not asked again yet
    monkeypatch.setattr(containers_module, "MONITOR_RECHECK", 0.0)
    lost = await status(kit, container)
    assert (lost.state, lost.exit_code, lost.reason) == (cri.CONTAINER_EXITED, 255, "Unknown")


async def test_lists_and_statuses_are_given_again_until_something_they_show_changes(
    kit: OciKit,
) -> None:
    pod = await run_pod(kit)
    container = await create(kit, pod)
    await start(kit, container)
    everything = cri.ListContainersRequest()
    listed = await kit.containers.list_containers(everything)
    assert await kit.containers.list_containers(everything) is listed
    pods = await kit.sandboxes.list_pod_sandbox(cri.ListPodSandboxRequest())
    assert await kit.sandboxes.list_pod_sandbox(cri.ListPodSandboxRequest()) is pods
    request = cri.ContainerStatusRequest(container_id=container)
    answer = await kit.containers.container_status(request)
    assert await kit.containers.container_status(request) is answer
    verbose = cri.ContainerStatusRequest(container_id=container, verbose=True)
    assert "info" in (await kit.containers.container_status(verbose)).info
    assert "info" not in (await kit.containers.container_status(request)).info
    filtered = cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=pod))
    assert await kit.containers.list_containers(filtered) is not listed

    kit.world.exit(container, 2)  # only conmon's exit file says so
    after = await kit.containers.list_containers(everything)
    assert [(c.id, c.state) for c in after.containers] == [(container, cri.CONTAINER_EXITED)]
    assert (await kit.containers.container_status(request)).status.exit_code == 2
    second = await create(kit, pod, "second")
    names = {c.metadata.name for c in (await kit.containers.list_containers(everything)).containers}
    assert names == {"app", "second"}
    kit.world.exit(pod, 0)
    listed_pods = await kit.sandboxes.list_pod_sandbox(cri.ListPodSandboxRequest())
    assert [p.state for p in listed_pods.items] == [cri.SANDBOX_NOTREADY]
    await kit.containers.remove_container(cri.RemoveContainerRequest(container_id=second))
    left = await kit.containers.list_containers(everything)
    assert [c.id for c in left.containers] == [container]


async def test_a_stopped_pod_stops_its_containers_and_its_removal_takes_them(
    kit: OciKit,
) -> None:
    pod = await run_pod(kit)
    container = await create(kit, pod)
    await start(kit, container)
    await kit.sandboxes.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    assert await pod_state(kit, pod) == cri.SANDBOX_NOTREADY
    assert (await status(kit, container)).state == cri.CONTAINER_EXITED
    with pytest.raises(errors.FailedPrecondition):
        await create(kit, pod, "late")
    await kit.sandboxes.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
    assert kit.ctx.store.sandboxes == {} and kit.ctx.store.containers == {}
    assert list(kit.ctx.store.sandbox_ids) == []
    assert kit.world.containers == {}
    assert not kit.ctx.pod_dir(pod).exists()


async def test_a_pod_whose_pause_exited_is_not_ready(kit: OciKit) -> None:
    pod = await run_pod(kit)
    kit.world.exit(pod, 0)
    assert await pod_state(kit, pod) == cri.SANDBOX_NOTREADY
    listed = await kit.sandboxes.list_pod_sandbox(cri.ListPodSandboxRequest())
    assert [(p.id, p.state) for p in listed.items] == [(pod, cri.SANDBOX_NOTREADY)]


@pytest.mark.parametrize("followed", [True, False], ids=["inotify", "polled"])
async def test_events_follow_the_lifecycle_and_exits(kit: OciKit, followed: bool) -> None:
    if followed:
        kit.ctx.exits.start()
    kit.events.start()
    subscription = kit.events.hub.subscribe()
    pod = await run_pod(kit)
    container = await create(kit, pod)
    await start(kit, container)
    kit.world.exit(container, 0)  # seen by the exit watcher, not by a call
    seen: list[tuple[str, int]] = []

    async def collect() -> None:
        async for event in subscription:
            seen.append((event.container_id, event.container_event_type))
            if (container, cri.CONTAINER_STOPPED_EVENT) in seen:
                return

    await asyncio.wait_for(collect(), 10)
    assert seen == [
        (pod, cri.CONTAINER_CREATED_EVENT),
        (pod, cri.CONTAINER_STARTED_EVENT),
        (container, cri.CONTAINER_CREATED_EVENT),
        (container, cri.CONTAINER_STARTED_EVENT),
        (container, cri.CONTAINER_STOPPED_EVENT),
    ]
    subscription.close()


async def test_stats_cover_the_published_containers_only(kit: OciKit) -> None:
    pod = await run_pod(kit)
    container = await create(kit, pod)
    await start(kit, container)
    kit.ctx.store.publish_container(container)
    listed = await kit.stats.list_container_stats(cri.ListContainerStatsRequest())
    assert [s.attributes.id for s in listed.stats] == [container]
    assert listed.stats[0].attributes.metadata.name == "app"
    assert listed.stats[0].writable_layer.fs_id.mountpoint == str(kit.ctx.store.root)
    one = await kit.stats.container_stats(cri.ContainerStatsRequest(container_id=container))
    assert one.stats.attributes.id == container
    pods = await kit.stats.list_pod_sandbox_stats(cri.ListPodSandboxStatsRequest())
    assert [s.attributes.id for s in pods.stats] == [pod]
    assert [c.attributes.id for c in pods.stats[0].linux.containers] == [container]
    with pytest.raises(errors.NotFound):
        await kit.stats.container_stats(cri.ContainerStatsRequest(container_id="f" * 64))


async def restart(kit: OciKit, root: Path, world: FakeProcesses | None = None) -> OciKit:
    """pycrid killed and started again over what runc and conmon still run."""
    await kit.close()
    again = await make_kit(root, world or kit.world)
    await recovery.recover(again.ctx, again.sandboxes, again.containers)
    return again


async def test_a_restart_recovers_every_object_and_the_exits_it_missed(tmp_path: Path) -> None:
    kit = await make_kit(tmp_path)
    pod = await run_pod(kit)
    created = await create(kit, pod, "created")
    running = await create(kit, pod, "running")
    await start(kit, running)
    kit = await restart(kit, tmp_path)
    try:
        assert kit.ctx.store.resolve_sandbox(pod[:6]) == pod
        assert sorted(kit.ctx.store.container_ids) == sorted([created, running])
        assert await pod_state(kit, pod) == cri.SANDBOX_READY
        assert (await status(kit, created)).state == cri.CONTAINER_CREATED
        assert (await status(kit, running)).state == cri.CONTAINER_RUNNING
        kit.world.exit(running, 2)  # while nobody looked
        kit = await restart(kit, tmp_path)
        assert (await status(kit, running)).exit_code == 2
        await start(kit, created)
        assert (await status(kit, created)).state == cri.CONTAINER_RUNNING
    finally:
        await kit.close()


def crash_copy(root: Path, world: FakeProcesses, into: Path) -> FakeProcesses:
    """What a kill -9 leaves: the disk as it is now, and the processes that keep running."""
    for part in ("state", "run"):
        if (root / part).exists():
            shutil.copytree(root / part, into / part, symlinks=True)
    kept = copy.deepcopy(world)
    for container in kept.containers.values():
        for name in ("bundle", "exit_dir", "persist_dir"):
            path = getattr(container, name)
            setattr(container, name, into / path.relative_to(root))
    kept.before.clear()
    kept.failures.clear()
    return kept


@pytest.mark.parametrize("step", ["create", "start"])
async def test_a_kill_during_run_pod_sandbox_leaves_nothing_after_recovery(
    tmp_path: Path, step: str
) -> None:
    kit = await make_kit(tmp_path / "live")
    crashes: list[FakeProcesses] = []
    kit.world.before[step] = lambda _: crashes.append(
        crash_copy(tmp_path / "live", kit.world, tmp_path / "crash")
    )
    await run_pod(kit)
    await kit.close()
    (kept,) = crashes
    recovered = await restart(await make_kit(tmp_path / "crash", kept), tmp_path / "crash")
    try:
        assert recovered.ctx.store.sandboxes == {}
        assert list(recovered.ctx.store.sandbox_ids) == []
        assert kept.containers == {}  # the pause container was deleted from runc too
        assert not any((tmp_path / "crash" / "run" / "oci" / "bundles").iterdir())
        # and the same pod can be run again
        assert await run_pod(recovered)
    finally:
        await recovered.close()


@pytest.mark.parametrize(("step", "survives"), [("create", False), ("start", True)])
async def test_a_kill_during_create_or_start_container_recovers_to_a_sound_state(
    tmp_path: Path, step: str, survives: bool
) -> None:
    kit = await make_kit(tmp_path / "live")
    pod = await run_pod(kit)
    container = await create(kit, pod) if step == "start" else None
    crashes: list[FakeProcesses] = []
    kit.world.before[step] = lambda _: crashes.append(
        crash_copy(tmp_path / "live", kit.world, tmp_path / "crash")
    )
    if container is None:
        container = await create(kit, pod)
    else:
        await start(kit, container)
    await kit.close()
    (kept,) = crashes
    recovered = await restart(await make_kit(tmp_path / "crash", kept), tmp_path / "crash")
    try:
        assert await pod_state(recovered, pod) == cri.SANDBOX_READY
        if survives:
            # Created before the kill; runc had not started it: still CREATED, and startable.
            assert (await status(recovered, container)).state == cri.CONTAINER_CREATED
            await start(recovered, container)
            assert (await status(recovered, container)).state == cri.CONTAINER_RUNNING
        else:
            # Killed before conmon made it: the half-made container is gone, files and all.
            assert recovered.ctx.store.containers == {}
            assert not any((recovered.ctx.store.root / "containers").iterdir())
            assert await create(recovered, pod)
    finally:
        await recovered.close()
