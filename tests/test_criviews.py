"""The listed views of pods and containers are kept until what they show changes."""

from __future__ import annotations

from pycrid.adapters import criviews
from pycrid.adapters.docker.store import ContainerRecord
from pycrid.api.cri import api_pb2 as cri


def record() -> ContainerRecord:
    return ContainerRecord(
        id="c1",
        sandbox_id="p1",
        config=cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name="app"), labels={"tier": "web"}
        ),
        log_path="",
        created_at=5,
        image_id="sha256:1",
        image_ref="app@sha256:2",
        resources=cri.LinuxContainerResources(),
    )


def test_a_container_is_listed_from_its_kept_view_until_its_state_changes() -> None:
    container = record()
    first = criviews.container(container)
    assert criviews.container(container) is first
    assert (first.state, first.labels["tier"]) == (cri.CONTAINER_CREATED, "web")
    container.advance("running")
    running = criviews.container(container)
    assert running is not first
    assert running.state == cri.CONTAINER_RUNNING
    assert first.state == cri.CONTAINER_CREATED  # a view handed out is never changed


def test_an_event_carries_its_containers_with_their_messages_and_no_pod_once_gone() -> None:
    container = record()
    container.message = "exec format error"
    pod, containers = criviews.event_statuses(None, [container])
    assert pod is None
    assert [(c.id, c.message) for c in containers] == [("c1", "exec format error")]
    assert criviews.event_statuses(None, []) == (None, [])


def test_a_container_is_listed_with_its_image_id_and_its_status_keeps_the_repo_digest() -> None:
    """kubelet's image GC matches listed image_refs against ListImages' IDs."""
    container = record()
    assert criviews.container(container).image_ref == "sha256:1"
    assert criviews.container_status(container).image_ref == "app@sha256:2"
