"""The listed views of pods and containers, and the answers made of them, are kept until
what they show changes."""

from __future__ import annotations

from typing import Any

from pycrid.adapters import criviews, revision
from pycrid.adapters.docker.store import ContainerRecord
from pycrid.adapters.node.podnetwork import NetworkState
from pycrid.adapters.records import RecordTables
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


def test_every_change_of_a_record_its_network_or_a_table_moves_the_revision() -> None:
    container = record()
    network = NetworkState(mode="cni")
    tables: RecordTables[Any, ContainerRecord] = RecordTables()
    changes = [
        lambda: setattr(container, "exit_code", 1),
        lambda: container.advance("running"),
        lambda: setattr(network, "ready", True),
        lambda: tables.add_container(container),
        lambda: tables.discard_container(container.id),
    ]
    for change in changes:
        before = revision.current()
        change()
        assert revision.current() > before
    before = revision.current()
    criviews.container(container)  # keeping a view is no change
    assert revision.current() == before


def test_a_status_answer_is_made_again_once_any_record_changed() -> None:
    container, other = record(), record()
    made = []

    def build() -> cri.ContainerStatusResponse:
        made.append(1)
        return cri.ContainerStatusResponse(status=criviews.container_status(container))

    first = criviews.status_answer(container, build)
    assert criviews.status_answer(container, build) is first and len(made) == 1
    other.exit_code = 7  # any record: the revision is one number
    assert criviews.status_answer(container, build) is not first and len(made) == 2


def test_a_kept_list_answer_holds_for_its_key_only() -> None:
    kept: criviews.KeptAnswer[str] = criviews.KeptAnswer()
    key = kept.key(frozenset({"a"}))
    assert kept.get(key) is None
    assert kept.keep(key, "answer") == "answer"
    assert kept.get(kept.key(frozenset({"a"}))) == "answer"
    assert kept.get(kept.key(frozenset({"a", "b"}))) is None
    record().exit_code = 1
    assert kept.get(kept.key(frozenset({"a"}))) is None
