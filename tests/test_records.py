"""One store contract, run on both adapters' stores: records, ID indexes, publishing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycrid.adapters import criviews, errors
from pycrid.adapters.docker import store as docker_store
from pycrid.adapters.node.podnetwork import NetworkState
from pycrid.adapters.oci.runtime import store as oci_store
from pycrid.adapters.podmetrics import pod_processes
from pycrid.adapters.podresources import store_members
from pycrid.adapters.records import RecordTables
from pycrid.api.cri import api_pb2 as cri

POD = "a1" * 32
OTHER_POD = "a2" * 32
CONTAINER = "b1" * 32


def docker_records(tmp_path: Path) -> tuple[RecordTables, object, object]:
    store = docker_store.Store(docker_store.StateFiles(tmp_path))
    pod = docker_store.SandboxRecord(
        id=POD,
        config=cri.PodSandboxConfig(),
        runtime_handler="",
        created_at=1,
        network=NetworkState(mode="host", ready=True),
        docker_state="running",
        pid=10,
    )
    container = docker_store.ContainerRecord(
        id=CONTAINER,
        sandbox_id=POD,
        config=cri.ContainerConfig(),
        log_path="",
        created_at=2,
        image_id="sha256:1",
        image_ref="busybox",
        resources=cri.LinuxContainerResources(),
        docker_state="running",
        pid=11,
    )
    return store, pod, container


def oci_records(tmp_path: Path) -> tuple[RecordTables, object, object]:
    store = oci_store.RuntimeStore(tmp_path)
    pod = oci_store.SandboxRecord(
        id=POD,
        config=cri.PodSandboxConfig(),
        runtime_handler="",
        created_at=1,
        network=NetworkState(mode="host"),
        ready=True,
        pid=10,
    )
    container = oci_store.ContainerRecord(
        id=CONTAINER,
        sandbox_id=POD,
        config=cri.ContainerConfig(),
        image_name="busybox",
        image_id="sha256:1",
        image_ref="busybox",
        log_path="",
        created_at=2,
        pid=11,
        started_at=3,
    )
    return store, pod, container


@pytest.fixture(params=[docker_records, oci_records], ids=["docker", "oci"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[RecordTables, object, object]:
    return request.param(tmp_path)


def test_a_record_being_made_is_found_by_id_but_resolves_only_once_published(records) -> None:
    store, pod, container = records
    store.add_sandbox(pod, published=False)
    store.add_container(container, published=False)
    assert store.sandbox(POD) is pod
    assert store.containers_of(POD) == [container]
    with pytest.raises(errors.NotFound):
        store.resolve_sandbox(POD[:6])
    assert pod_processes(store) == []  # what is not published is not measured
    store.publish_sandbox(POD)
    store.publish_container(CONTAINER)
    assert store.resolve_sandbox(POD[:6]) == POD
    assert store.resolve_container(CONTAINER[:6]) == CONTAINER
    (processes,) = pod_processes(store)
    assert processes.pause_pid == 10 and processes.containers == {CONTAINER: 11}
    assert store_members(store)(POD) == (10, [POD, CONTAINER])


def test_discard_drops_the_record_and_its_id_together(records) -> None:
    store, pod, container = records
    store.add_sandbox(pod)
    store.add_container(container)
    assert store.discard_container(CONTAINER) is container
    assert store.discard_container(CONTAINER) is None
    assert CONTAINER not in store.container_ids
    with pytest.raises(errors.NotFound):
        store.container(CONTAINER)
    store.discard_sandbox(POD)
    assert list(store.sandbox_ids) == [] and store.sandboxes == {}
    with pytest.raises(errors.NotFound, match="pod sandbox"):
        store.sandbox(POD)


def test_publish_all_after_recovery_and_publishing_nothing_unknown(records) -> None:
    store, pod, container = records
    store.publish_sandbox(OTHER_POD)  # no record: nothing to resolve
    assert OTHER_POD not in store.sandbox_ids
    store.add_sandbox(pod, published=False)
    store.add_container(container, published=False)
    store.publish_all()
    assert list(store.sandbox_ids) == [POD] and list(store.container_ids) == [CONTAINER]


def test_the_cri_views_read_either_record(records) -> None:
    _, pod, container = records
    assert criviews.pod_sandbox(pod).state == cri.SANDBOX_READY
    assert criviews.container(container).state == cri.CONTAINER_RUNNING
    assert criviews.container_status(container).message == ""
