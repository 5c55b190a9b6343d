"""Runtime information and images over the socket, on the real dockerd."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import grpc
import pytest

from pycrid.api.cri import api_pb2 as cri
from pycrid.crictl_tests.harness import BUSYBOX_IMAGE, Daemon, docker_answers

USER_UID_IMAGE = "gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest"
USER_NAME_IMAGE = "gcr.io/k8s-staging-cri-tools/test-image-user-username:latest"


def test_version(docker_daemon: Daemon):
    version = docker_daemon.runtime.Version(cri.VersionRequest())
    assert (version.version, version.runtime_name, version.runtime_api_version) == (
        "0.1.0",
        "pycrid",
        "v1",
    )
    assert version.runtime_version == "0.1.0"


def test_status_is_ready_and_reports_handlers(docker_daemon: Daemon):
    status = docker_daemon.runtime.Status(cri.StatusRequest(verbose=True))
    conditions = {c.type: c for c in status.status.conditions}
    assert conditions["RuntimeReady"].status
    assert conditions["NetworkReady"].status  # docker network mode in these daemons
    assert "" in [h.name for h in status.runtime_handlers]
    assert "runc" in [h.name for h in status.runtime_handlers]
    assert json.loads(status.info["config"])["adapter"] == "docker"


def test_network_not_ready_without_cni_config(daemon_factory, tmp_path):
    daemon = daemon_factory(
        "docker", {"network": {"mode": "cni", "cni_conf_dir": str(tmp_path / "none")}}
    )
    conditions = {c.type: c for c in daemon.runtime.Status(cri.StatusRequest()).status.conditions}
    assert conditions["RuntimeReady"].status
    assert not conditions["NetworkReady"].status
    assert conditions["NetworkReady"].reason == "NetworkPluginNotReady"
    assert str(tmp_path / "none") in conditions["NetworkReady"].message


def test_runtime_config_reports_dockers_cgroup_driver(docker_daemon: Daemon):
    config = docker_daemon.runtime.RuntimeConfig(cri.RuntimeConfigRequest())
    info = json.loads(subprocess.run(
        ["docker", "info", "--format", "{{json .CgroupDriver}}"], capture_output=True, text=True
    ).stdout or '"cgroupfs"')  # fmt: skip
    expected = cri.SYSTEMD if info == "systemd" else cri.CGROUPFS
    assert config.linux.cgroup_driver == expected


def test_pod_cidr_is_kept_across_restarts(daemon_factory):
    daemon = daemon_factory("docker")
    update = cri.UpdateRuntimeConfigRequest(
        runtime_config=cri.RuntimeConfig(network_config=cri.NetworkConfig(pod_cidr="10.244.3.0/24"))
    )
    daemon.runtime.UpdateRuntimeConfig(update)
    daemon.restart()
    status = daemon.runtime.Status(cri.StatusRequest(verbose=True))
    assert status.info["podCIDR"] == "10.244.3.0/24"


def test_image_fs_info_has_real_figures(docker_daemon: Daemon):
    info = docker_daemon.images.ImageFsInfo(cri.ImageFsInfoRequest())
    image_fs = info.image_filesystems[0]
    assert os.path.isdir(image_fs.fs_id.mountpoint)
    assert image_fs.used_bytes.value > 0
    assert image_fs.inodes_used.value > 0
    assert image_fs.timestamp > 0


def test_pulled_image_is_listed_and_has_status(docker_daemon: Daemon):
    images = docker_daemon.images
    pulled = images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=BUSYBOX_IMAGE)))
    status = images.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=BUSYBOX_IMAGE)))
    assert status.image.id.startswith("sha256:")
    assert BUSYBOX_IMAGE in status.image.repo_tags
    assert pulled.image_ref == status.image.id
    assert status.image.size > 0
    listed = images.ListImages(cri.ListImagesRequest())
    assert status.image.id in [i.id for i in listed.images]
    filtered = images.ListImages(
        cri.ListImagesRequest(filter=cri.ImageFilter(image=cri.ImageSpec(image=BUSYBOX_IMAGE)))
    )
    assert [i.id for i in filtered.images] == [status.image.id]
    by_prefix = images.ImageStatus(
        cri.ImageStatusRequest(image=cri.ImageSpec(image=status.image.id[7:19]))
    )
    assert by_prefix.image.id == status.image.id


@pytest.mark.parametrize(
    ("image", "uid", "username"), [(USER_UID_IMAGE, 1002, ""), (USER_NAME_IMAGE, None, "www-data")]
)
def test_image_user(docker_daemon: Daemon, image, uid, username):
    images = docker_daemon.images
    images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=image)))
    try:
        status = images.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=image)))
        assert status.image.username == username
        assert status.image.HasField("uid") == (uid is not None)
        if uid is not None:
            assert status.image.uid.value == uid
    finally:
        images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=image)))


def test_missing_image_status_is_empty(docker_daemon: Daemon):
    status = docker_daemon.images.ImageStatus(
        cri.ImageStatusRequest(image=cri.ImageSpec(image="registry.k8s.io/no-such-image:1"))
    )
    assert not status.HasField("image")


ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
}


def test_every_method_works_or_is_unimplemented(docker_daemon: Daemon):
    """Each RPC of both services, with an empty request, answers cleanly."""
    services = cri.DESCRIPTOR.services_by_name
    seen = 0
    for service in services.values():
        for method in service.methods:
            request_class = getattr(cri, method.input_type.name)
            response_class = getattr(cri, method.output_type.name)
            path = f"/{service.full_name}/{method.name}"
            if method.server_streaming:
                call = docker_daemon.channel.unary_stream(
                    path,
                    request_serializer=request_class.SerializeToString,
                    response_deserializer=response_class.FromString,
                )
            else:
                call = docker_daemon.channel.unary_unary(
                    path,
                    request_serializer=request_class.SerializeToString,
                    response_deserializer=response_class.FromString,
                )
            try:
                result = call(request_class(), timeout=30)
                if method.server_streaming:
                    if method.name == "GetContainerEvents":
                        next(iter(result), None) if False else result.cancel()
                    else:
                        list(result)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
            assert code in ALLOWED, f"{method.name} answered {code}"
            seen += 1
    assert seen == 41


@pytest.fixture
def docker_proxy(tmp_path, docker_engine):
    """A socket in front of dockerd that the test can take away and bring back."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    path = tmp_path / "docker.sock"

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            ["socat", f"UNIX-LISTEN:{path},fork", "UNIX-CONNECT:/var/run/docker.sock"],
            start_new_session=True,
        )
        for _ in range(100):
            if path.exists():
                break
            time.sleep(0.05)
        return process

    def stop(process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        path.unlink(missing_ok=True)

    process = start()
    state = {"process": process}
    yield path, state, start, stop
    if state["process"] is not None:
        stop(state["process"])


def test_dockerd_going_away_and_coming_back(daemon_factory, docker_proxy):
    path, state, start, stop = docker_proxy
    daemon = daemon_factory("docker", {"docker": {"endpoint": f"unix://{path}"}})
    assert daemon.runtime.Status(cri.StatusRequest()).status.conditions[0].status

    stop(state["process"])
    state["process"] = None
    conditions = daemon.runtime.Status(cri.StatusRequest()).status.conditions
    runtime_ready = {c.type: c for c in conditions}["RuntimeReady"]
    assert not runtime_ready.status
    assert runtime_ready.reason == "DockerDaemonNotReady"
    with pytest.raises(grpc.RpcError) as caught:
        daemon.images.ListImages(cri.ListImagesRequest())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert daemon.process is not None and daemon.process.poll() is None

    state["process"] = start()
    assert daemon.runtime.Status(cri.StatusRequest()).status.conditions[0].status
    daemon.images.ListImages(cri.ListImagesRequest())


def test_real_crictl(docker_daemon: Daemon, crictl: str):
    assert docker_answers()
    for args in (["version"], ["info"], ["images"]):
        result = subprocess.run(
            [crictl, "--runtime-endpoint", docker_daemon.endpoint, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    version = subprocess.run(
        [crictl, "--runtime-endpoint", docker_daemon.endpoint, "version"],
        capture_output=True,
        text=True,
    ).stdout
    assert "RuntimeName:  pycrid" in version
