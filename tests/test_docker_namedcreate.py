"""Idempotent creates through the name Docker holds, against an in-memory dockerd."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.docker import naming
from pycrid.api.cri import api_pb2 as cri

from .dockerkit import BUSYBOX, INSTANCE, Kit, container_config, make_kit, pod_config


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    kit = make_kit(tmp_path)
    yield kit
    await kit.close()


def app_name(pod: str = "web", container: str = "app") -> str:
    return naming.container_name(
        container_config(container).metadata, pod_config(pod).metadata, INSTANCE
    )


# Retries of the same call.


async def test_a_retried_run_pod_sandbox_answers_the_first_pod(kit: Kit) -> None:
    first = await kit.run_pod("web")
    again = await kit.run_pod("web")
    assert again == first
    assert list(kit.docker.containers) == [first]
    assert len(kit.docker.called("create_container")) == 2  # the second one was refused
    assert len(kit.docker.called("start_container")) == 1


async def test_a_retried_create_container_answers_the_first_container(kit: Kit) -> None:
    pod = await kit.run_pod("web")
    first = await kit.create(pod, "app")
    assert await kit.create(pod, "app") == first
    assert sorted(kit.docker.containers) == sorted([pod, first])


async def test_the_next_attempt_is_a_new_container(kit: Kit) -> None:
    pod = await kit.run_pod("web")
    first = await kit.create(pod, "app")
    second = await kit.create(pod, "app", metadata=cri.ContainerMetadata(name="app", attempt=1))
    assert second != first
    assert kit.docker.containers[second].name.endswith(f"_1_{INSTANCE[:8]}")


# Names held by something else.


async def test_a_pod_that_is_no_longer_ready_does_not_answer_a_retry(kit: Kit) -> None:
    pod = await kit.run_pod("web")
    await kit.sandboxes.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    with pytest.raises(errors.AlreadyExists, match=f"in use by {pod[:13]}"):
        await kit.run_pod("web")


async def test_same_name_other_config_is_already_exists(kit: Kit) -> None:
    pod = await kit.run_pod("web")
    first = await kit.create(pod, "app")
    with pytest.raises(errors.AlreadyExists, match=f"in use by {first[:13]}"):
        await kit.create(pod, "app", command=["sh", "-c", "other"])
    assert sorted(kit.docker.containers) == sorted([pod, first])


async def test_a_foreign_container_holding_the_name_is_left_alone(kit: Kit) -> None:
    pod = await kit.run_pod("web")
    foreign = await kit.docker.create_container(app_name(), {"Image": BUSYBOX, "Labels": {}})
    with pytest.raises(errors.AlreadyExists, match="in use"):
        await kit.create(pod, "app")
    assert foreign in kit.docker.containers


async def test_a_leftover_of_an_interrupted_create_is_replaced(kit: Kit) -> None:
    pod = await kit.run_pod("web")
    labels = naming.container_labels(container_config("app"), INSTANCE, pod, "")
    leftover = await kit.docker.create_container(app_name(), {"Image": BUSYBOX, "Labels": labels})
    created = await kit.create(pod, "app")
    assert created != leftover
    assert leftover not in kit.docker.containers
    assert (leftover, True, True) in kit.docker.called("remove_container")
    assert (await kit.status(created)).state == cri.CONTAINER_CREATED


async def test_a_pod_leftover_is_replaced_too(kit: Kit) -> None:
    name = naming.sandbox_name(pod_config("web").metadata, INSTANCE)
    labels = naming.sandbox_labels(pod_config("web"), INSTANCE, "")
    leftover = await kit.docker.create_container(name, {"Image": BUSYBOX, "Labels": labels})
    pod = await kit.run_pod("web")
    assert pod != leftover
    assert list(kit.docker.containers) == [pod]


async def test_a_holder_that_vanishes_meanwhile_frees_the_name(kit: Kit) -> None:
    pod = await kit.run_pod("web")
    # Docker refused the name, but its holder is gone by the time it is inspected.
    kit.docker.fail("create_container", errors.AlreadyExists(f"{app_name()} is in use"))
    created = await kit.create(pod, "app")
    assert kit.docker.containers[created].name == app_name()
    assert kit.docker.called("inspect_container")[-2] == (app_name(),)


async def test_a_failure_of_the_second_try_is_the_callers(kit: Kit) -> None:
    pod = await kit.run_pod("web")
    labels = naming.container_labels(container_config("app"), INSTANCE, pod, "")
    leftover = await kit.docker.create_container(app_name(), {"Image": BUSYBOX, "Labels": labels})
    # The first create meets the leftover; the one after its removal fails.
    kit.docker.fail("create_container", errors.AlreadyExists(f"{app_name()} is in use"))
    kit.docker.fail_status("create_container", 500, "no space left on device")
    with pytest.raises(errors.FailedPrecondition, match="no space left"):
        await kit.create(pod, "app")
    assert leftover not in kit.docker.containers
    assert len(kit.ctx.store.containers) == 0
