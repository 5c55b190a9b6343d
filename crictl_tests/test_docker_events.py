"""The docker adapter's memory, kept live by the real dockerd's events.

The lists and status calls answer from memory; these tests check that a
client never sees it stale: an exit is reported by the first List after
Docker reports it, and a broken event stream misses no transition.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from crictl_tests.dockerpods import Pods
from crictl_tests.harness import BUSYBOX_IMAGE, Daemon, base_config
from pycrid.adapters.config import parse_config
from pycrid.adapters.docker.adapter import DockerAdapter
from pycrid.api.cri import api_pb2 as cri

EVENT_DELIVERY = 2.0
"""Seconds Docker's event may take to reach the daemon after `docker` reports the change."""


def docker_state(container_id: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Status}}", container_id],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def listed_state(pods: Pods, container_id: str) -> int:
    request = cri.ListContainersRequest(filter=cri.ContainerFilter(id=container_id))
    (container,) = pods.rt.ListContainers(request).containers
    return container.state


def test_a_container_that_exits_by_itself_is_exited_in_the_lists_right_after(
    docker_engine: None, test_registry: None, daemon_factory: Callable[..., Daemon]
) -> None:
    pods = Pods(daemon_factory("docker"))
    try:
        sandbox_id = pods.run()
        config = pods.container_config(
            "brief", BUSYBOX_IMAGE, command=["sh", "-c", "sleep 1; exit 3"]
        )
        container_id = pods.create(sandbox_id, config)
        pods.start(container_id)
        assert listed_state(pods, container_id) == cri.CONTAINER_RUNNING
        while docker_state(container_id) == "running":
            time.sleep(0.02)
        seen_exited = time.monotonic()
        while listed_state(pods, container_id) != cri.CONTAINER_EXITED:
            assert time.monotonic() - seen_exited < EVENT_DELIVERY, "the exit was not seen"
            time.sleep(0.01)
        status = pods.status(container_id).status
        assert (status.state, status.exit_code, status.reason) == (
            cri.CONTAINER_EXITED,
            3,
            "Error",
        )
    finally:
        pods.close()


async def test_a_reconnected_event_stream_misses_no_transition(
    docker_engine: None, test_registry: None, tmp_path: Path
) -> None:
    """In-process, so that the test can break the daemon's event stream itself."""
    values = base_config(tmp_path, "docker")
    del values["listen"]
    adapter = DockerAdapter(parse_config(values))
    await adapter.start()
    sandbox_id = ""
    try:
        watch = adapter.event_watch
        await asyncio.wait_for(watch.connected.wait(), 10)
        assert adapter.sandboxes is not None and adapter.containers is not None
        await adapter.images.pull_image(  # type: ignore[union-attr]
            cri.PullImageRequest(image=cri.ImageSpec(image=BUSYBOX_IMAGE))
        )
        pod_config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name="events", namespace="e2e", uid="uid-events"),
            log_directory=str(tmp_path / "logs"),
        )
        run = await adapter.sandboxes.run_pod_sandbox(cri.RunPodSandboxRequest(config=pod_config))
        sandbox_id = run.pod_sandbox_id
        ids = []
        for name in ("first", "second"):
            created = await adapter.containers.create_container(
                cri.CreateContainerRequest(
                    pod_sandbox_id=sandbox_id,
                    sandbox_config=pod_config,
                    config=cri.ContainerConfig(
                        metadata=cri.ContainerMetadata(name=name),
                        image=cri.ImageSpec(image=BUSYBOX_IMAGE),
                        command=["sleep", "3600"],
                        log_path=f"{name}.log",
                    ),
                )
            )
            await adapter.containers.start_container(
                cri.StartContainerRequest(container_id=created.container_id)
            )
            ids.append(created.container_id)

        async def states() -> dict[str, int]:
            listed = await adapter.containers.list_containers(  # type: ignore[union-attr]
                cri.ListContainersRequest()
            )
            return {c.id: c.state for c in listed.containers}

        assert await states() == dict.fromkeys(ids, cri.CONTAINER_RUNNING)
        # The stream breaks; while it is down the first container is killed.
        watch.reconnect()
        subprocess.run(["docker", "kill", ids[0]], check=True, capture_output=True)
        await asyncio.wait_for(watch.connected.wait(), 10)
        # Back: the second is killed with the stream up.
        subprocess.run(["docker", "kill", ids[1]], check=True, capture_output=True)
        give_up = time.monotonic() + EVENT_DELIVERY
        while await states() != dict.fromkeys(ids, cri.CONTAINER_EXITED):
            assert time.monotonic() < give_up, await states()
            await asyncio.sleep(0.02)
        await asyncio.wait_for(watch.connected.wait(), 10)
    finally:
        if sandbox_id:
            assert adapter.sandboxes is not None
            await adapter.sandboxes.stop_pod_sandbox(
                cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)
            )
            await adapter.sandboxes.remove_pod_sandbox(
                cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)
            )
        await adapter.close()
    leftovers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"id={sandbox_id}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert sandbox_id and not leftovers, json.dumps(leftovers)
