"""Containers: create, start, stop, remove, states, exits, users, mounts, security."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
import pytest

from crictl_tests.dockerpods import Pods, rpc_code, wait_for
from crictl_tests.harness import BUSYBOX_IMAGE, WEBSERVER_IMAGE
from pycrid.api.cri import api_pb2 as cri

USER_IMAGES = "gcr.io/k8s-staging-cri-tools/test-image-user-"
MIB = 1024 * 1024


def container_ids(pods: Pods, **fields: object) -> list[str]:
    request = cri.ListContainersRequest(filter=cri.ContainerFilter(**fields))
    return [c.id for c in pods.rt.ListContainers(request, timeout=60).containers]


def with_security(
    pods: Pods, name: str, security: cri.LinuxContainerSecurityContext
) -> cri.ContainerConfig:
    return pods.container_config(name, linux=cri.LinuxContainerConfig(security_context=security))


def test_web_server_and_busybox_share_the_pod_network(pods: Pods) -> None:
    pods.pull(WEBSERVER_IMAGE)
    sandbox_id = pods.run(pods.sandbox_config("multi"))
    pods.run_container(sandbox_id, pods.container_config("web", WEBSERVER_IMAGE, command=[]))
    client = pods.run_container(sandbox_id, pods.container_config("client"))

    def fetch() -> bytes:
        result = pods.exec(client, "wget", "-q", "-O", "-", "http://localhost:80/")
        return result.stdout if result.exit_code == 0 else b""

    assert b"<html>" in wait_for(fetch, "the web server from the other container")
    listed = pods.rt.ListContainers(
        cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=sandbox_id[:13]))
    ).containers
    assert sorted(c.metadata.name for c in listed) == ["client", "web"]


def test_states_times_and_reasons(pods: Pods) -> None:
    image_id = pods.daemon.images.ImageStatus(
        cri.ImageStatusRequest(image=cri.ImageSpec(image=BUSYBOX_IMAGE))
    ).image.id
    sandbox_id = pods.run()
    labels = {"tier": "test", "io.kubernetes.container.name": "ok"}
    annotations = {"why": "states", "empty": ""}
    ok_config = pods.container_config(
        "ok", command=["sh", "-c", "exit 0"], labels=labels, annotations=annotations
    )
    ok = pods.create(sandbox_id, ok_config)
    created = pods.status(ok, verbose=True)
    status = created.status
    assert status.state == cri.CONTAINER_CREATED
    assert status.created_at > 0 and status.started_at == 0 and status.finished_at == 0
    assert status.metadata.name == "ok"
    assert status.image.image == BUSYBOX_IMAGE
    assert status.image_id == image_id
    assert status.image_ref
    assert dict(status.labels) == labels
    assert dict(status.annotations) == annotations
    log_directory = pods.sandbox_status(sandbox_id).status.metadata.uid
    assert status.log_path == os.path.join(pods.log_root, log_directory, "ok.log")
    assert json.loads(created.info["info"])["sandboxID"] == sandbox_id

    pods.start(ok)
    exited = pods.wait_exited(ok)
    assert exited.exit_code == 0 and exited.reason == "Completed"
    assert exited.started_at >= exited.created_at
    assert exited.finished_at >= exited.started_at

    failing = pods.run_container(
        sandbox_id, pods.container_config("fails", command=["sh", "-c", "exit 3"])
    )
    status = pods.wait_exited(failing)
    assert status.exit_code == 3 and status.reason == "Error"

    sleeper = pods.run_container(sandbox_id, pods.container_config("sleeper"))
    running = pods.status(sleeper, verbose=True)
    assert running.status.state == cri.CONTAINER_RUNNING
    assert running.status.started_at > 0 and running.status.finished_at == 0
    assert json.loads(running.info["info"])["pid"] > 0
    running_ids = container_ids(pods, state=cri.ContainerStateValue(state=cri.CONTAINER_RUNNING))
    assert sleeper in running_ids and ok not in running_ids
    by_label = pods.rt.ListContainers(
        cri.ListContainersRequest(filter=cri.ContainerFilter(label_selector={"tier": "test"}))
    ).containers
    assert [c.id for c in by_label] == [ok]
    assert by_label[0].image_id == image_id

    # StopContainer sends SIGTERM; a process that ignores it gets SIGKILL after the timeout.
    pods.rt.StopContainer(cri.StopContainerRequest(container_id=sleeper[:13], timeout=30))
    stopped = pods.status(sleeper).status
    assert stopped.state == cri.CONTAINER_EXITED
    assert stopped.exit_code == 143 and stopped.reason == "Error"
    stubborn = pods.run_container(
        sandbox_id,
        pods.container_config(
            "stubborn", command=["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
        ),
    )
    pods.rt.StopContainer(cri.StopContainerRequest(container_id=stubborn, timeout=1))
    killed = pods.status(stubborn).status
    assert killed.state == cri.CONTAINER_EXITED
    assert killed.exit_code == 137 and killed.reason == "Error"

    # A container can be started once.
    assert rpc_code(lambda: pods.start(ok)) == grpc.StatusCode.FAILED_PRECONDITION


def test_oom_kill_under_a_memory_limit(pods: Pods) -> None:
    sandbox_id = pods.run()
    resources = cri.LinuxContainerResources(memory_limit_in_bytes=16 * MIB)
    config = pods.container_config(
        "hog",
        command=["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
        linux=cri.LinuxContainerConfig(resources=resources),
    )
    container_id = pods.run_container(sandbox_id, config)
    status = pods.wait_exited(container_id)
    assert status.exit_code == 137
    assert status.reason == "OOMKilled"
    assert status.resources.linux.memory_limit_in_bytes == 16 * MIB


def test_stop_and_remove_are_idempotent(pods: Pods) -> None:
    sandbox_id = pods.run()
    container_id = pods.run_container(sandbox_id, pods.container_config("twice"))
    for _ in range(2):
        pods.rt.StopContainer(cri.StopContainerRequest(container_id=container_id, timeout=0))
        assert pods.status(container_id).status.state == cri.CONTAINER_EXITED
    for _ in range(2):
        pods.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=container_id))
    pods.rt.StopContainer(cri.StopContainerRequest(container_id=container_id, timeout=0))
    assert rpc_code(lambda: pods.status(container_id)) == grpc.StatusCode.NOT_FOUND
    assert container_id not in container_ids(pods)
    # A running container is removed by force.
    running = pods.run_container(sandbox_id, pods.container_config("forced"))
    pods.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=running))
    assert rpc_code(lambda: pods.status(running)) == grpc.StatusCode.NOT_FOUND
    assert container_ids(pods, pod_sandbox_id=sandbox_id) == []


def test_update_container_resources(pods: Pods) -> None:
    sandbox_id = pods.run()
    container_id = pods.run_container(sandbox_id, pods.container_config("resize"))
    update = cri.LinuxContainerResources(
        cpu_period=100000, cpu_quota=50000, cpu_shares=512, memory_limit_in_bytes=64 * MIB
    )
    pods.rt.UpdateContainerResources(
        cri.UpdateContainerResourcesRequest(container_id=container_id, linux=update)
    )
    reported = pods.status(container_id).status.resources.linux
    assert reported.cpu_quota == 50000 and reported.memory_limit_in_bytes == 64 * MIB
    limit = pods.exec(container_id, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert limit.stdout.strip() == str(64 * MIB).encode()


@pytest.mark.parametrize(
    ("image", "uid", "user"),
    [
        ("uid", "1002", "1002"),
        ("username", "33", "www-data"),
        ("uid-group", "1003", "1003"),
        ("username-group", "33", "www-data"),
    ],
)
def test_image_user_is_the_container_user(pods: Pods, image: str, uid: str, user: str) -> None:
    reference = f"{USER_IMAGES}{image}:latest"
    pods.pull(reference)
    sandbox_id = pods.run()
    container_id = pods.run_container(sandbox_id, pods.container_config("user", reference))
    assert pods.exec(container_id, "id", "-u").stdout.decode().strip() == uid
    image_status = pods.daemon.images.ImageStatus(
        cri.ImageStatusRequest(image=cri.ImageSpec(image=reference))
    ).image
    if image_status.HasField("uid"):
        assert str(image_status.uid.value) == uid
    else:
        assert image_status.username == user


def test_run_as_user_group_and_supplemental_groups(pods: Pods) -> None:
    sandbox_id = pods.run()
    security = cri.LinuxContainerSecurityContext(
        run_as_user=cri.Int64Value(value=1234),
        run_as_group=cri.Int64Value(value=2345),
        supplemental_groups=[3456],
    )
    container_id = pods.run_container(sandbox_id, with_security(pods, "runas", security))
    assert pods.exec(container_id, "id", "-u").stdout == b"1234\n"
    assert pods.exec(container_id, "id", "-g").stdout == b"2345\n"
    assert "3456" in pods.exec(container_id, "id", "-G").stdout.decode().split()
    group_only = cri.LinuxContainerSecurityContext(run_as_group=cri.Int64Value(value=1))
    bad = with_security(pods, "group-only", group_only)
    assert rpc_code(lambda: pods.create(sandbox_id, bad)) == grpc.StatusCode.INVALID_ARGUMENT


def test_mounts_resolve_symlinks_and_honour_read_only(pods: Pods, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("hello from the host\n")
    link = tmp_path / "link"
    link.symlink_to(data)
    sandbox_id = pods.run()
    mounts = [
        cri.Mount(container_path="/rw", host_path=str(link)),
        cri.Mount(container_path="/ro", host_path=str(data), readonly=True),
    ]
    devices = [cri.Device(host_path="/dev/null", container_path="/dev/pycrid-null")]
    container_id = pods.run_container(
        sandbox_id, pods.container_config("mounts", mounts=mounts, devices=devices)
    )
    assert pods.exec(container_id, "test", "-c", "/dev/pycrid-null").exit_code == 0
    assert pods.exec(container_id, "cat", "/rw/hello.txt").stdout == b"hello from the host\n"
    assert pods.exec(container_id, "touch", "/rw/new").exit_code == 0
    assert (data / "new").exists()
    assert pods.exec(container_id, "touch", "/ro/denied").exit_code != 0
    assert list(pods.status(container_id).status.mounts) == mounts


def test_missing_host_path_is_refused_and_nothing_is_left(pods: Pods, tmp_path: Path) -> None:
    sandbox_id = pods.run()
    missing = tmp_path / "does-not-exist"
    config = pods.container_config(
        "nomount", mounts=[cri.Mount(container_path="/data", host_path=str(missing))]
    )
    assert rpc_code(lambda: pods.create(sandbox_id, config)) == grpc.StatusCode.INVALID_ARGUMENT
    assert not missing.exists()
    assert container_ids(pods, pod_sandbox_id=sandbox_id) == []


def test_bad_container_requests(pods: Pods) -> None:
    sandbox_id = pods.run()
    rt = pods.rt
    missing_image = pods.container_config("noimage", "registry.k8s.io/pycrid/absent:1")
    assert rpc_code(lambda: pods.create(sandbox_id, missing_image)) == grpc.StatusCode.NOT_FOUND
    no_metadata = cri.ContainerConfig(image=cri.ImageSpec(image=BUSYBOX_IMAGE))
    assert (
        rpc_code(lambda: pods.create(sandbox_id, no_metadata)) == grpc.StatusCode.INVALID_ARGUMENT
    )
    config = pods.container_config("nosandbox")
    assert rpc_code(lambda: pods.create("0" * 64, config)) == grpc.StatusCode.NOT_FOUND
    assert rpc_code(lambda: pods.status("0" * 64)) == grpc.StatusCode.NOT_FOUND
    assert rpc_code(lambda: pods.start("0" * 64)) == grpc.StatusCode.NOT_FOUND

    # Two containers whose IDs share a first character make that character ambiguous.
    seen: dict[str, str] = {}
    for attempt in range(17):
        container_id = pods.create(sandbox_id, pods.container_config(f"c{attempt}"))
        if container_id[0] in seen:
            break
        seen[container_id[0]] = container_id
    prefix = container_id[0]
    assert rpc_code(lambda: pods.status(prefix)) == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        rpc_code(lambda: rt.RemoveContainer(cri.RemoveContainerRequest(container_id=prefix)))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert container_ids(pods, id=prefix) == []


def test_security_context(pods: Pods, tmp_path: Path) -> None:
    sandbox_id = pods.run()
    read_only = cri.LinuxContainerSecurityContext(
        readonly_rootfs=True,
        no_new_privs=True,
        capabilities=cri.Capability(drop_capabilities=["ALL"]),
        masked_paths=["/proc/cpuinfo"],
        readonly_paths=["/proc/sys"],
    )
    container_id = pods.run_container(sandbox_id, with_security(pods, "locked", read_only))
    assert pods.exec(container_id, "touch", "/new-file").exit_code != 0
    proc_status = pods.exec(container_id, "cat", "/proc/self/status").stdout.decode()
    assert "NoNewPrivs:\t1" in proc_status
    assert "CapEff:\t0000000000000000" in proc_status
    assert pods.exec(container_id, "cat", "/proc/cpuinfo").stdout == b""

    profile = tmp_path / "no-mkdir.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    seccomp = cri.LinuxContainerSecurityContext(
        seccomp=cri.SecurityProfile(
            profile_type=cri.SecurityProfile.Localhost, localhost_ref=str(profile)
        )
    )
    confined = pods.run_container(sandbox_id, with_security(pods, "seccomp", seccomp))
    assert pods.exec(confined, "mkdir", "/tmp/x").exit_code != 0
    assert pods.exec(confined, "touch", "/tmp/x").exit_code == 0

    missing = cri.LinuxContainerSecurityContext(
        seccomp=cri.SecurityProfile(
            profile_type=cri.SecurityProfile.Localhost, localhost_ref=str(tmp_path / "absent")
        )
    )
    bad = with_security(pods, "noprofile", missing)
    assert rpc_code(lambda: pods.create(sandbox_id, bad)) == grpc.StatusCode.INVALID_ARGUMENT


def test_pid_namespace_modes(pods: Pods) -> None:
    sandbox_id = pods.run()

    def with_pid(name: str, mode: int) -> str:
        namespaces = cri.NamespaceOption(pid=mode)
        security = cri.LinuxContainerSecurityContext(namespace_options=namespaces)
        return pods.run_container(sandbox_id, with_security(pods, name, security))

    shared = with_pid("shared", cri.POD)
    own = with_pid("own", cri.CONTAINER)
    assert b"pause" in pods.exec(shared, "ps").stdout
    assert b"pause" not in pods.exec(own, "ps").stdout


def test_added_capability_and_privileged_containers(pods: Pods) -> None:
    sandbox_id = pods.run()
    security = cri.LinuxContainerSecurityContext(
        capabilities=cri.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["CHOWN"])
    )
    container_id = pods.run_container(sandbox_id, with_security(pods, "netadmin", security))
    status = pods.exec(container_id, "cat", "/proc/self/status").stdout.decode()
    effective = int(
        next(line for line in status.splitlines() if line.startswith("CapEff")).split()[1], 16
    )
    cap_chown, cap_net_admin = 0, 12
    assert effective >> cap_net_admin & 1
    assert not effective >> cap_chown & 1

    privileged_pod = pods.sandbox_config(
        "privileged",
        linux=cri.LinuxPodSandboxConfig(
            security_context=cri.LinuxSandboxSecurityContext(privileged=True)
        ),
    )
    try:
        privileged_sandbox = pods.run(privileged_pod)
    except grpc.RpcError as e:
        if "unable to apply caps" in (e.details() or ""):
            pytest.skip("this host cannot run privileged containers (capabilities)")
        raise
    privileged = cri.LinuxContainerSecurityContext(privileged=True)
    container_id = pods.run_container(privileged_sandbox, with_security(pods, "priv", privileged))
    assert pods.exec(container_id, "test", "-w", "/proc/sys/kernel/shm_rmid_forced").exit_code == 0
