"""Adopting cri-dockerd's pods: labels, names, sandbox files and logs, against a fake dockerd."""

from __future__ import annotations

import json

import pytest

from pycrid.adapters.docker import adopt, recovery
from pycrid.adapters.docker.fake import FakeDocker
from pycrid.api.cri import api_pb2 as cri

from .dockerkit import BUSYBOX, PAUSE, make_kit

UID = "5d3c9a1e-0000-4000-8000-000000000001"


def test_labels_split_into_cri_labels_and_annotations():
    labels, annotations = adopt.split_labels(
        {
            "io.kubernetes.docker.type": "podsandbox",
            "io.kubernetes.container.name": "POD",
            "io.kubernetes.pod.name": "web",
            "annotation.kubernetes.io/config.seen": "2026-01-01",
            "annotation.annotation.x": "y",
        }
    )
    assert labels == {"io.kubernetes.pod.name": "web"}
    assert annotations == {"kubernetes.io/config.seen": "2026-01-01", "annotation.x": "y"}
    labels, _ = adopt.split_labels(
        {
            "io.kubernetes.docker.type": "container",
            "io.kubernetes.container.name": "app",
            "io.kubernetes.sandbox.id": "abc",
            "io.kubernetes.container.logpath": "/var/log/pods/x/app/0.log",
        }
    )
    assert labels == {"io.kubernetes.container.name": "app"}


def test_names_parse_with_and_without_the_random_suffix():
    pod = adopt.parse_sandbox_name(f"/k8s_POD_web_default_{UID}_2")
    assert (pod.name, pod.namespace, pod.uid, pod.attempt) == ("web", "default", UID, 2)
    pod = adopt.parse_sandbox_name(f"k8s_POD_web_default_{UID}_0_0badcafe")
    assert pod.attempt == 0
    container, of = adopt.parse_container_name(f"/k8s_app_web_default_{UID}_3")
    assert (container.name, container.attempt, of.name, of.uid) == ("app", 3, "web", UID)


@pytest.mark.parametrize(
    "name",
    [
        "k8s_POD_web_default_uid",  # too few parts
        "k8s_POD_web_default_uid_x",  # no attempt
        "k8s_POD_web_default_uid_1_2_3",  # too many parts
        "k9s_POD_web_default_uid_1",  # not kubernetes'
        "k8s_app_web_default_uid_1_pycrid99",  # not a random suffix
    ],
)
def test_names_that_are_not_cri_dockerds_are_refused(name):
    with pytest.raises(ValueError):
        adopt.parse_sandbox_name(name)


def test_a_container_name_is_not_a_sandbox_name():
    with pytest.raises(ValueError, match="not a pod sandbox"):
        adopt.parse_sandbox_name(f"k8s_app_web_default_{UID}_0")


def sandbox_file_blob(**data: object) -> bytes:
    return json.dumps(
        {"version": "v1", "name": "web", "namespace": "default", "data": data, "checksum": 1}
    ).encode()


def test_sandbox_file_with_port_mappings_and_host_network():
    found = adopt.parse_sandbox_file(
        sandbox_file_blob(
            port_mappings=[
                {"protocol": "TCP", "container_port": 80, "host_port": 8080},
                {"protocol": "udp", "container_port": 53, "host_ip": "127.0.0.1"},
            ],
            host_network=True,
        )
    )
    assert (found.name, found.namespace, found.host_network) == ("web", "default", True)
    assert [(m.protocol, m.container_port, m.host_port) for m in found.port_mappings] == [
        (cri.TCP, 80, 8080),
        (cri.UDP, 53, 0),
    ]
    assert found.port_mappings[1].host_ip == "127.0.0.1"
    empty = adopt.parse_sandbox_file(
        b'{"version":"v1","name":"web","namespace":"default","checksum":7}'
    )
    assert empty.port_mappings == [] and not empty.host_network


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"version":"v2","name":"web","namespace":"d","checksum":1}', "version 'v2'"),
        (b'{"version":"v1","namespace":"d","checksum":1}', "no pod name"),
        (b'{"version":"v1","name":"web","namespace":"d"}', "no checksum"),
        (sandbox_file_blob(port_mappings=[{"protocol": "icmp"}]), "bad port mapping"),
        (sandbox_file_blob(port_mappings=["80"]), "not an object"),
    ],
)
def test_malformed_sandbox_files_are_refused(blob, message):
    with pytest.raises(adopt.SandboxFileError, match=message):
        adopt.parse_sandbox_file(blob)


def test_missing_sandbox_file(tmp_path):
    with pytest.raises(adopt.SandboxFileError, match="no sandbox file"):
        adopt.read_sandbox_file(tmp_path, "abc")
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "sandbox" / "abc").write_bytes(b"")
    with pytest.raises(adopt.SandboxFileError, match="malformed"):
        adopt.read_sandbox_file(tmp_path, "abc")


def json_line(time: str, log: str, stream: str = "stdout") -> bytes:
    return json.dumps({"log": log, "stream": stream, "time": time}).encode() + b"\n"


def test_the_log_symlink_becomes_a_cri_file_up_to_the_last_whole_line(tmp_path):
    docker_log = tmp_path / "abc-json.log"
    docker_log.write_bytes(
        json_line("2026-01-01T00:00:01.000000001Z", "one\n")
        + json_line("2026-01-01T00:00:02.5Z", "half ", "stderr")
        + json_line("2026-01-01T00:00:02.5Z", "two\n")
        + b'{"log":"unfinished'
    )
    log_path = tmp_path / "pods" / "app" / "0.log"
    log_path.parent.mkdir(parents=True)
    log_path.symlink_to(docker_log)
    position, encoder = adopt.convert_log(log_path, docker_log, 16 * 1024)
    assert not log_path.is_symlink()
    assert log_path.read_bytes() == (
        b"2026-01-01T00:00:01.000000001Z stdout F one\n2026-01-01T00:00:02.5Z stdout F two\n"
    )
    assert position.since() == f"{1767225602}.500000000"
    assert position.seen == 2
    assert encoder.pending() == {"stderr": (1767225602_500000000, b"half ")}
    assert docker_log.exists()


def test_the_files_docker_rotated_come_first_oldest_first_gzipped_or_not(tmp_path):
    import gzip

    docker_log = tmp_path / "abc-json.log"
    (tmp_path / "abc-json.log.2.gz").write_bytes(
        gzip.compress(json_line("2026-01-01T00:00:01Z", "first\n"))
    )
    (tmp_path / "abc-json.log.1").write_bytes(json_line("2026-01-01T00:00:02Z", "second\n"))
    (tmp_path / "abc-json.log.4").write_bytes(json_line("2026-01-01T00:00:00Z", "not kept\n"))
    docker_log.write_bytes(json_line("2026-01-01T00:00:03Z", "third\n"))
    assert adopt.docker_log_files(docker_log) == [
        tmp_path / "abc-json.log.2.gz",
        tmp_path / "abc-json.log.1",
        docker_log,
    ]
    log_path = tmp_path / "0.log"
    log_path.symlink_to(docker_log)
    position, _ = adopt.convert_log(log_path, docker_log, 16 * 1024)
    assert log_path.read_bytes() == (
        b"2026-01-01T00:00:01Z stdout F first\n"
        b"2026-01-01T00:00:02Z stdout F second\n"
        b"2026-01-01T00:00:03Z stdout F third\n"
    )
    assert position.since() == "1767225603.000000000"


async def cri_dockerd_pod(docker: FakeDocker, name: str, uid: str, running: bool = True) -> str:
    """A pause container labelled and named the way cri-dockerd does it."""
    labels = {
        "io.kubernetes.docker.type": "podsandbox",
        "io.kubernetes.container.name": "POD",
        "io.kubernetes.pod.name": name,
        "annotation.kubernetes.io/config.source": "api",
    }
    body = {"Image": PAUSE, "Labels": labels, "Hostname": name}
    container_id = await docker.create_container(f"k8s_POD_{name}_default_{uid}_0", body)
    if running:
        await docker.start_container(container_id)
    return container_id


async def cri_dockerd_container(docker: FakeDocker, sandbox_id: str, pod: str, uid: str) -> str:
    labels = {
        "io.kubernetes.docker.type": "container",
        "io.kubernetes.sandbox.id": sandbox_id,
        "io.kubernetes.container.logpath": f"/var/log/pods/default_{pod}_{uid}/app/0.log",
        "io.kubernetes.container.name": "app",
        "annotation.io.kubernetes.container.restartCount": "0",
    }
    return await docker.create_container(
        f"k8s_app_{pod}_default_{uid}_0", {"Image": BUSYBOX, "Labels": labels}
    )


@pytest.mark.asyncio
async def test_recovery_adopts_pods_with_a_sandbox_file_and_leaves_the_others(tmp_path):
    kit = make_kit(tmp_path)
    root = tmp_path / "cri-dockerd"
    kit.ctx.config.docker.adopt = ["cri-dockerd"]
    kit.ctx.config.docker.cri_dockerd_root = str(root)
    good = await cri_dockerd_pod(kit.docker, "web", UID)
    app = await cri_dockerd_container(kit.docker, good, "web", UID)
    lost = await cri_dockerd_pod(kit.docker, "lost", UID[:-1] + "2")
    lost_app = await cri_dockerd_container(kit.docker, lost, "lost", UID[:-1] + "2")
    (root / "sandbox").mkdir(parents=True)
    (root / "sandbox" / good).write_bytes(
        sandbox_file_blob(port_mappings=[{"protocol": "TCP", "container_port": 80}])
    )
    survey = await adopt.survey(kit.docker, str(root))
    assert [f.id for f in survey.sandboxes] == [good]
    assert [f.id for f in survey.containers] == [app]
    reasons = {r.id: r.reason for r in survey.refused}
    assert "no sandbox file" in reasons[lost]
    assert "is not adopted" in reasons[lost_app]

    await recovery.recover(kit.ctx)
    sandboxes = (await kit.sandboxes.list_pod_sandbox(cri.ListPodSandboxRequest())).items
    assert [s.id for s in sandboxes] == [good]
    pod = sandboxes[0]
    assert pod.metadata == cri.PodSandboxMetadata(
        name="web", namespace="default", uid=UID, attempt=0
    )
    assert dict(pod.labels) == {"io.kubernetes.pod.name": "web"}
    assert dict(pod.annotations) == {"kubernetes.io/config.source": "api"}
    assert pod.state == cri.SANDBOX_READY
    record = kit.ctx.store.sandbox(good)
    assert record.config.log_directory == f"/var/log/pods/default_web_{UID}"
    assert record.config.port_mappings[0].container_port == 80
    assert kit.ctx.store.files.load_sandbox(good) is not None  # pycrid's own now
    status = await kit.status(app)
    assert status.metadata.name == "app" and status.state == cri.CONTAINER_CREATED
    assert status.log_path == f"/var/log/pods/default_web_{UID}/app/0.log"
    assert status.image_ref.startswith(("docker-pullable://", "docker://"))
    listed = (await kit.containers.list_containers(cri.ListContainersRequest())).containers
    assert [c.image_ref for c in listed if c.id == app] == [kit.docker.containers[app].image_id]
    assert dict(status.annotations) == {"io.kubernetes.container.restartCount": "0"}
    assert lost not in kit.ctx.store.sandboxes and lost_app not in kit.ctx.store.containers
    assert lost in kit.docker.containers and lost_app in kit.docker.containers

    # A listing keeps the adopted records (they carry no pycrid label).
    await kit.containers.refresh_all(even_if_live=True)
    assert good in kit.ctx.store.sandboxes and app in kit.ctx.store.containers
    await kit.sandboxes.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=good))
    assert good not in kit.docker.containers and app not in kit.docker.containers
    assert not (root / "sandbox" / good).exists()
    assert lost in kit.docker.containers
    await kit.close()


@pytest.mark.asyncio
async def test_without_adopt_nothing_of_cri_dockerds_is_touched(tmp_path):
    kit = make_kit(tmp_path)
    sandbox = await cri_dockerd_pod(kit.docker, "web", UID)
    await recovery.recover(kit.ctx)
    assert kit.ctx.store.sandboxes == {}
    assert sandbox in kit.docker.containers
    await kit.close()


@pytest.mark.asyncio
async def test_a_restart_adopts_again_and_one_without_adopt_leaves_the_pod_be(tmp_path):
    kit = make_kit(tmp_path)
    root = tmp_path / "cri-dockerd"
    kit.ctx.config.docker.adopt = ["cri-dockerd"]
    kit.ctx.config.docker.cri_dockerd_root = str(root)
    sandbox = await cri_dockerd_pod(kit.docker, "web", UID)
    (root / "sandbox").mkdir(parents=True)
    (root / "sandbox" / sandbox).write_bytes(sandbox_file_blob())
    await recovery.recover(kit.ctx)
    assert sandbox in kit.ctx.store.sandboxes
    await kit.close()

    again = make_kit(tmp_path, docker=kit.docker)
    again.ctx.config.docker.adopt = ["cri-dockerd"]
    again.ctx.config.docker.cri_dockerd_root = str(root)
    await recovery.recover(again.ctx)
    assert again.ctx.store.sandbox(sandbox).state == cri.SANDBOX_READY
    await again.close()

    off = make_kit(tmp_path, docker=kit.docker)
    await recovery.recover(off.ctx)
    assert sandbox not in off.ctx.store.sandboxes
    assert off.ctx.store.files.load_sandbox(sandbox) is not None
    assert kit.docker.containers[sandbox].running
    await off.close()
