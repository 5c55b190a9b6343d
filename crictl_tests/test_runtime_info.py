"""Runtime information on the docker adapter: what comes from dockerd and its config.

What every adapter answers (Version, Status conditions, ImageFsInfo, images,
every RPC answering cleanly, crictl) is in the contract suite,
crictl_tests/contract/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import grpc
import pytest

from crictl_tests.harness import Daemon
from pycrid.api.cri import api_pb2 as cri


def test_status_is_ready_and_reports_handlers(docker_daemon: Daemon):
    status = docker_daemon.runtime.Status(cri.StatusRequest(verbose=True))
    conditions = {c.type: c for c in status.status.conditions}
    assert conditions["RuntimeReady"].status
    assert conditions["NetworkReady"].status  # docker network mode in these daemons
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
