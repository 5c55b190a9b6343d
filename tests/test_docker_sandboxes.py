"""Pod sandboxes on the docker adapter, against an in-memory dockerd ("docker" network mode)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.docker import naming
from pycrid.api.cri import api_pb2 as cri

from .dockerkit import INSTANCE, PAUSE, Kit, in_call, make_kit, pod_config


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    kit = make_kit(tmp_path)
    yield kit
    await kit.close()


async def listed(kit: Kit, **fields: object) -> list[str]:
    request = cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(**fields))
    return sorted(p.id for p in (await kit.sandboxes.list_pod_sandbox(request)).items)


# RunPodSandbox.


async def test_a_pod_is_a_started_pause_container_on_dockers_bridge(kit: Kit) -> None:
    pod_id = await kit.run_pod("web")
    pause = kit.docker.containers[pod_id]
    assert pause.name == naming.sandbox_name(pod_config("web").metadata, INSTANCE)
    assert pause.running
    assert pause.image_id == kit.docker.images[pause.image_id].id
    assert pause.network_mode == "bridge"
    owned = naming.read_labels(pause.labels, INSTANCE)
    assert owned is not None and owned.config == pod_config("web")

    status = await kit.pod_status(pod_id)
    assert status.state == cri.SANDBOX_READY
    assert status.network.ip == pause.ip and pause.ip.startswith("172.17.0.")
    assert status.metadata.name == "web"
    assert dict(status.labels) == {"app": "web"}
    assert status.created_at == pause.created
    saved = json.loads((kit.state_dir / "sandboxes" / f"{pod_id}.json").read_text())
    assert saved["network"]["ready"] is True
    assert await listed(kit) == [pod_id]


async def test_a_host_network_pod_has_no_address_of_its_own(kit: Kit) -> None:
    options = cri.NamespaceOption(network=cri.NODE)
    linux = cri.LinuxPodSandboxConfig(
        security_context=cri.LinuxSandboxSecurityContext(namespace_options=options)
    )
    pod_id = await kit.run_pod("host", linux=linux)
    assert kit.docker.containers[pod_id].network_mode == "host"
    status = await kit.pod_status(pod_id)
    assert status.state == cri.SANDBOX_READY
    assert status.network.ip == ""
    assert status.linux.namespaces.options.network == cri.NODE


async def test_a_missing_pause_image_is_pulled_first(tmp_path: Path) -> None:
    kit = make_kit(tmp_path, images=())
    kit.docker.publish(PAUSE)
    try:
        pod_id = await kit.run_pod()
        assert kit.docker.called("pull_image") == [("registry.k8s.io/pause", "3.10", None)]
        assert (await kit.pod_status(pod_id)).state == cri.SANDBOX_READY
        await kit.run_pod("second")
        assert len(kit.docker.called("pull_image")) == 1
    finally:
        await kit.close()


async def test_a_pause_image_nobody_serves_fails_the_pod(tmp_path: Path) -> None:
    kit = make_kit(tmp_path, images=())
    try:
        with pytest.raises(errors.NotFound, match="manifest unknown"):
            await kit.run_pod()
        assert kit.docker.containers == {}
    finally:
        await kit.close()


async def test_runtime_handlers_are_dockers_runtimes(kit: Kit) -> None:
    request = cri.RunPodSandboxRequest(config=pod_config("a"), runtime_handler="runc")
    pod_id = (await kit.sandboxes.run_pod_sandbox(request)).pod_sandbox_id
    host_config = kit.docker.containers[pod_id].body["HostConfig"]
    assert isinstance(host_config, dict) and host_config["Runtime"] == "runc"
    assert (await kit.pod_status(pod_id)).runtime_handler == "runc"

    request = cri.RunPodSandboxRequest(config=pod_config("b"), runtime_handler="kata")
    with pytest.raises(errors.InvalidArgument, match="kata"):
        await kit.sandboxes.run_pod_sandbox(request)
    assert list(kit.docker.containers) == [pod_id]


async def test_a_pause_container_that_fails_to_start_leaves_nothing(kit: Kit) -> None:
    name = naming.sandbox_name(pod_config("web").metadata, INSTANCE)
    kit.docker.start_errors[name] = "OCI runtime create failed: no pause"
    with pytest.raises(errors.Internal, match="no pause"):
        await kit.run_pod("web")
    assert kit.docker.containers == {}
    assert kit.ctx.store.sandboxes == {}
    assert list(kit.ctx.store.sandbox_ids) == []
    assert kit.ctx.store.files.sandbox_ids() == []
    # The cause gone, the retry of the same pod succeeds.
    del kit.docker.start_errors[name]
    pod_id = await kit.run_pod("web")
    assert (await kit.pod_status(pod_id)).state == cri.SANDBOX_READY


async def test_a_pod_that_outlives_its_deadline_is_undone(kit: Kit) -> None:
    kit.docker.delay("start_container", 5)
    with pytest.raises(errors.DeadlineExceeded):
        await in_call(0.2, kit.run_pod)
    # The clean-up ran to its end although the call's deadline had passed.
    assert kit.docker.containers == {}
    assert kit.ctx.store.sandboxes == {}
    assert kit.ctx.store.files.sandbox_ids() == []


async def test_docker_errors_reach_the_caller_as_cri_errors(kit: Kit) -> None:
    kit.docker.fail_status("create_container", 500, "disk full")
    with pytest.raises(errors.FailedPrecondition, match="disk full"):
        await kit.run_pod()
    kit.docker.down = True
    with pytest.raises(errors.Unavailable):
        await kit.run_pod()
    kit.docker.down = False
    assert (await kit.pod_status(await kit.run_pod())).state == cri.SANDBOX_READY


# StopPodSandbox and RemovePodSandbox.


async def test_stop_stops_the_containers_then_the_pause_container(kit: Kit) -> None:
    pod_id = await kit.run_pod()
    app = await kit.create(pod_id, "app")
    await kit.containers.start_container(cri.StartContainerRequest(container_id=app))
    await kit.sandboxes.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))

    stops = kit.docker.called("stop_container")
    assert stops == [(app, 0), (pod_id, 10)]
    assert not kit.docker.containers[pod_id].running
    status = await kit.pod_status(pod_id)
    assert status.state == cri.SANDBOX_NOTREADY
    assert status.network.ip == ""  # the network is gone with it
    assert (await kit.status(app)).state == cri.CONTAINER_EXITED
    # Stopping again, or a pod nobody knows, is fine.
    await kit.sandboxes.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    await kit.sandboxes.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id="nothing"))


async def test_a_stop_cut_short_leaves_the_pod_not_ready_and_a_second_stop_finishes(
    kit: Kit,
) -> None:
    pod_id = await kit.run_pod()
    app = await kit.create(pod_id, "app")
    await kit.containers.start_container(cri.StartContainerRequest(container_id=app))
    kit.docker.fail("stop_container", errors.Internal("dockerd went away"), target=app)
    with pytest.raises(errors.Internal):
        await kit.sandboxes.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    # The intent was on disk before the first irreversible step.
    saved = json.loads((kit.state_dir / "sandboxes" / f"{pod_id}.json").read_text())
    assert saved["network"]["ready"] is False
    assert (await kit.pod_status(pod_id)).state == cri.SANDBOX_NOTREADY
    await kit.sandboxes.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert not kit.docker.containers[pod_id].running
    assert not kit.docker.containers[app].running


async def test_remove_takes_the_pod_and_its_containers_out_of_docker(kit: Kit) -> None:
    pod_id = await kit.run_pod()
    app = await kit.create(pod_id, "app")
    other = await kit.run_pod("other")
    await kit.sandboxes.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))

    assert list(kit.docker.containers) == [other]
    assert kit.docker.called("remove_container") == [(app, True, True), (pod_id, True, True)]
    assert kit.ctx.store.files.sandbox_ids() == [other]
    with pytest.raises(errors.NotFound):
        await kit.pod_status(pod_id)
    with pytest.raises(errors.NotFound):
        await kit.status(app)
    assert await listed(kit) == [other]
    await kit.sandboxes.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


async def test_remove_of_a_pod_docker_already_lost_succeeds(kit: Kit) -> None:
    pod_id = await kit.run_pod()
    await kit.docker.remove_container(pod_id, force=True)
    await kit.sandboxes.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert kit.ctx.store.sandboxes == {}


async def test_a_failed_removal_keeps_the_pod(kit: Kit) -> None:
    pod_id = await kit.run_pod()
    kit.docker.fail_status("remove_container", 409, "removal already in progress")
    with pytest.raises(errors.FailedPrecondition, match="in progress"):
        await kit.sandboxes.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert await listed(kit) == [pod_id]
    await kit.sandboxes.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert await listed(kit) == []


# PodSandboxStatus and ListPodSandbox.


async def test_a_pod_docker_lost_is_not_found_and_forgotten(kit: Kit) -> None:
    pod_id = await kit.run_pod()
    del kit.docker.containers[pod_id]  # removed behind pycrid's back
    with pytest.raises(errors.NotFound):
        await kit.pod_status(pod_id)
    assert pod_id not in kit.ctx.store.sandbox_ids
    assert kit.ctx.store.files.sandbox_ids() == []


async def test_a_pause_container_that_died_makes_the_pod_not_ready(kit: Kit) -> None:
    pod_id = await kit.run_pod()
    kit.docker.exit(pod_id, 2)
    assert (await kit.pod_status(pod_id)).state == cri.SANDBOX_NOTREADY
    assert await listed(kit, state=cri.PodSandboxStateValue(state=cri.SANDBOX_NOTREADY)) == [pod_id]


async def test_list_filters_by_id_state_and_labels(kit: Kit) -> None:
    web = await kit.run_pod("web")
    db = await kit.run_pod("db")
    await kit.sandboxes.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=db))
    ready = cri.PodSandboxStateValue(state=cri.SANDBOX_READY)
    assert await listed(kit) == sorted([web, db])
    assert await listed(kit, id=db) == [db]
    assert await listed(kit, state=ready) == [web]
    assert await listed(kit, label_selector={"app": "db"}) == [db]
    assert await listed(kit, label_selector={"app": "db"}, state=ready) == []
    # A pod docker lost disappears from the list.
    del kit.docker.containers[web]
    assert await listed(kit) == [db]
    assert kit.docker.called("list_containers")[-1] == (
        {"label": [f"io.pycrid.instance={INSTANCE}"]},
    )


async def test_verbose_status_tells_dockers_side(kit: Kit) -> None:
    pod_id = await kit.run_pod()
    request = cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
    info = json.loads((await kit.sandboxes.pod_sandbox_status(request)).info["info"])
    assert info["dockerState"] == "running"
    assert info["network"]["mode"] == "docker"
    assert info["network"]["ips"] == [kit.docker.containers[pod_id].ip]
    assert info["pid"] == kit.docker.containers[pod_id].pid


async def test_under_dockers_systemd_driver_pods_and_containers_get_the_slice_name(
    kit: Kit,
) -> None:
    kit.ctx.cgroup_driver = "systemd"
    slice_name = "kubepods-besteffort-poduid.slice"
    linux = cri.LinuxPodSandboxConfig(
        cgroup_parent=f"/kubepods.slice/kubepods-besteffort.slice/{slice_name}"
    )
    pod_id = await kit.run_pod("sd", linux=linux)
    container_id = await kit.create(pod_id)
    for docker_id in (pod_id, container_id):
        host_config = kit.docker.containers[docker_id].body["HostConfig"]
        assert isinstance(host_config, dict)
        assert host_config["CgroupParent"] == slice_name
