"""Taking over pods that cri-dockerd made: the test makes them with Docker exactly as it does.

cri-dockerd is not packaged, so the test plays its part: the pause container
and the app container with its labels and names, a CNI ADD on the pause
container's namespace (on a bridge and subnet of this test's own), its
sandbox file, and the kubelet log path as a symlink to Docker's JSON log.
Then a pycrid daemon with ``[docker] adopt = ["cri-dockerd"]`` must show the
same pods and containers, run calls on them, and clean up after them.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crictl_tests.dockerpods import CALL_TIMEOUT, ip_allocations, wait_for
from crictl_tests.harness import LOCAL_REGISTRY, Daemon, write_cni_conf
from pycrid.adapters.docker.naming import docker_time_ns
from pycrid.adapters.node import cni
from pycrid.adapters.node.podnetwork import attachment
from pycrid.api.cri import api_pb2 as cri

BRIDGE = "pycrid-ad0"
SUBNET = "10.89.91.0/24"
BUSYBOX = f"{LOCAL_REGISTRY}/e2e-test-images/busybox:1.29-2"
PAUSE = f"{LOCAL_REGISTRY}/pause:3.10"
NAMESPACE = "adopt-e2e"
CNI_BIN_DIRS = ["/usr/lib/cni", "/opt/cni/bin"]


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def inspect(container_id: str) -> dict:
    return json.loads(docker("inspect", container_id))[0]


class CriDockerd:
    """Makes pods and containers the way cri-dockerd v0.4 does (core/sandbox_helpers.go,
    core/container_create.go, core/naming.go, core/checkpoint.go)."""

    def __init__(self, root: Path, conf_dir: Path) -> None:
        self.root = root
        self.sandbox_files = root / "cri-dockerd" / "sandbox"
        self.sandbox_files.mkdir(parents=True)
        self.logs = root / "pods"
        self.conf_dir = conf_dir
        self.made: list[str] = []
        self.ips: dict[str, list[str]] = {}

    def run_pod(self, name: str, sandbox_file: bytes | None = b"") -> tuple[str, str]:
        uid = str(uuid.uuid4())
        labels = {
            "io.kubernetes.docker.type": "podsandbox",
            "io.kubernetes.container.name": "POD",
            "io.kubernetes.pod.name": name,
            "io.kubernetes.pod.namespace": NAMESPACE,
            "io.kubernetes.pod.uid": uid,
            "annotation.kubernetes.io/config.source": "api",
        }
        sandbox_id = docker(
            "create",
            "--name",
            f"k8s_POD_{name}_{NAMESPACE}_{uid}_0",
            "--network",
            "none",
            "--ipc",
            "shareable",
            "--hostname",
            name,
            *(f"--label={k}={v}" for k, v in labels.items()),
            PAUSE,
        )
        self.made.append(sandbox_id)
        if sandbox_file == b"":
            sandbox_file = json.dumps(
                {
                    "version": "v1",
                    "name": name,
                    "namespace": NAMESPACE,
                    "data": {},
                    "checksum": 1234567890,
                }
            ).encode()
        if sandbox_file is not None:
            (self.sandbox_files / sandbox_id).write_bytes(sandbox_file)
        docker("start", sandbox_id)
        pid = inspect(sandbox_id)["State"]["Pid"]
        metadata = cri.PodSandboxMetadata(name=name, namespace=NAMESPACE, uid=uid)
        result = asyncio.run(
            cni.CniRunner(CNI_BIN_DIRS).add(
                cni.load_network(self.conf_dir),
                attachment(sandbox_id, metadata, f"/proc/{pid}/ns/net"),
                {"portMappings": []},
            )
        )
        self.ips[sandbox_id] = cni.result_ips(result)
        return sandbox_id, uid

    def create_container(self, sandbox_id: str, pod: str, uid: str, name: str) -> str:
        log_path = self.logs / f"{NAMESPACE}_{pod}_{uid}" / name / "0.log"
        labels = {
            "io.kubernetes.docker.type": "container",
            "io.kubernetes.sandbox.id": sandbox_id,
            "io.kubernetes.container.logpath": str(log_path),
            "io.kubernetes.container.name": name,
            "io.kubernetes.pod.name": pod,
            "annotation.io.kubernetes.container.restartCount": "0",
        }
        container_id = docker(
            "create",
            "--name",
            f"k8s_{name}_{pod}_{NAMESPACE}_{uid}_0",
            "--network",
            f"container:{sandbox_id}",
            "--ipc",
            f"container:{sandbox_id}",
            "--log-driver",
            "json-file",
            *(f"--label={k}={v}" for k, v in labels.items()),
            BUSYBOX,
            "sh",
            "-c",
            "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.05; done",
        )
        self.made.append(container_id)
        docker("start", container_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.symlink_to(inspect(container_id)["LogPath"])
        return container_id

    def clean(self) -> None:
        for container_id in reversed(self.made):
            subprocess.run(["docker", "rm", "-f", container_id], capture_output=True, check=False)


@pytest.fixture
def node(docker_engine: None, test_registry: None) -> Iterator[tuple[CriDockerd, Path, Path]]:
    for image in (BUSYBOX, PAUSE):
        docker("pull", "-q", image)
    with tempfile.TemporaryDirectory(prefix="pycrid-adopt-") as root:
        conf_dir, ipam_dir = write_cni_conf(Path(root), BRIDGE, SUBNET)
        made = CriDockerd(Path(root), conf_dir)
        try:
            yield made, conf_dir, ipam_dir
        finally:
            made.clean()
            shutil.rmtree(ipam_dir, ignore_errors=True)


def adopting(node: tuple[CriDockerd, Path, Path]) -> dict:
    made, conf_dir, _ = node
    return {
        "network": {"mode": "cni", "cni_conf_dir": str(conf_dir)},
        "docker": {"adopt": ["cri-dockerd"], "cri_dockerd_root": str(made.root / "cri-dockerd")},
    }


def numbers(log_text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^\S+ stdout F line-(\d+)$", log_text, re.M)]


def test_cri_dockerds_pod_is_taken_over_and_cleaned_up(
    node: tuple[CriDockerd, Path, Path], daemon_factory: Callable[..., Daemon]
) -> None:
    made, _, ipam_dir = node
    sandbox_id, uid = made.run_pod("web")
    app = made.create_container(sandbox_id, "web", uid, "app")
    log_path = made.logs / f"{NAMESPACE}_web_{uid}" / "app" / "0.log"
    wait_for(lambda: len(log_path.read_text().splitlines()) > 5, "lines before adoption")
    assert ip_allocations(ipam_dir)

    daemon = daemon_factory("docker", adopting(node))
    rt = daemon.runtime

    pods = rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=CALL_TIMEOUT).items
    pod = next(p for p in pods if p.id == sandbox_id)
    assert pod.metadata == cri.PodSandboxMetadata(name="web", namespace=NAMESPACE, uid=uid)
    assert pod.state == cri.SANDBOX_READY
    assert pod.labels["io.kubernetes.pod.uid"] == uid
    assert "io.kubernetes.container.name" not in pod.labels
    assert dict(pod.annotations) == {"kubernetes.io/config.source": "api"}
    pause = inspect(sandbox_id)
    assert pod.created_at == docker_time_ns(pause["Created"])
    status = rt.PodSandboxStatus(
        cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id), timeout=CALL_TIMEOUT
    ).status
    assert status.network.ip == made.ips[sandbox_id][0]
    assert status.linux.namespaces.options.network == cri.POD

    containers = rt.ListContainers(cri.ListContainersRequest(), timeout=CALL_TIMEOUT).containers
    listed = next(c for c in containers if c.id == app)
    assert listed.pod_sandbox_id == sandbox_id and listed.state == cri.CONTAINER_RUNNING
    assert listed.metadata == cri.ContainerMetadata(name="app", attempt=0)
    assert listed.image_ref == inspect(app)["Image"]  # cri-dockerd listed Docker's image ID
    container = rt.ContainerStatus(
        cri.ContainerStatusRequest(container_id=app), timeout=CALL_TIMEOUT
    ).status
    assert container.log_path == str(log_path)
    assert container.image.image == BUSYBOX
    assert container.image_ref.startswith("docker-pullable://")
    assert container.started_at == docker_time_ns(inspect(app)["State"]["StartedAt"])
    assert dict(container.annotations) == {"io.kubernetes.container.restartCount": "0"}

    out = rt.ExecSync(
        cri.ExecSyncRequest(container_id=app, cmd=["sh", "-c", "echo in-$HOSTNAME"], timeout=10),
        timeout=CALL_TIMEOUT,
    )
    assert (out.exit_code, out.stdout) == (0, b"in-web\n")

    # The log is a CRI file now, and it goes on with no line lost or written twice.
    assert not log_path.is_symlink()
    adopted_at = len(numbers(log_path.read_text()))
    wait_for(lambda: len(numbers(log_path.read_text())) > adopted_at + 10, "lines after")
    seen = numbers(log_path.read_text())
    assert seen == list(range(len(seen)))
    rotated = log_path.with_name("0.log.1")
    log_path.rename(rotated)
    rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=app), timeout=CALL_TIMEOUT)
    wait_for(lambda: log_path.exists() and numbers(log_path.read_text()), "the reopened log")

    # A new container in the adopted pod joins its network namespace.
    joined = rt.CreateContainer(
        cri.CreateContainerRequest(
            pod_sandbox_id=sandbox_id,
            config=cri.ContainerConfig(
                metadata=cri.ContainerMetadata(name="late"),
                image=cri.ImageSpec(image=BUSYBOX),
                command=["sleep", "3600"],
                log_path="late/0.log",
            ),
        ),
        timeout=CALL_TIMEOUT,
    ).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=joined), timeout=CALL_TIMEOUT)
    mac = ["cat", "/sys/class/net/eth0/address"]
    macs = [
        rt.ExecSync(
            cri.ExecSyncRequest(container_id=c, cmd=mac, timeout=10), timeout=CALL_TIMEOUT
        ).stdout
        for c in (app, joined)
    ]
    assert macs[0] == macs[1] != b""

    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=CALL_TIMEOUT)
    assert ip_allocations(ipam_dir) == []
    rt.RemovePodSandbox(
        cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=CALL_TIMEOUT
    )
    assert docker("ps", "-aq", "--filter", f"id={sandbox_id}") == ""
    assert docker("ps", "-aq", "--filter", f"id={app}") == ""
    assert not (made.sandbox_files / sandbox_id).exists()
    state = Path(daemon.config["state_dir"]) / "docker"
    left = [p for p in state.rglob("*") if sandbox_id in p.name or app in p.name]
    assert left == []
    assert sandbox_id not in Path("/proc/self/mountinfo").read_text()


@pytest.mark.parametrize("sandbox_file", [None, b'{"version": "v1", "name": '])
def test_a_pod_without_a_good_sandbox_file_is_reported_and_left_alone(
    node: tuple[CriDockerd, Path, Path],
    daemon_factory: Callable[..., Daemon],
    sandbox_file: bytes | None,
) -> None:
    made, _, ipam_dir = node
    sandbox_id, uid = made.run_pod("lost", sandbox_file=sandbox_file)
    app = made.create_container(sandbox_id, "lost", uid, "app")
    daemon = daemon_factory("docker", adopting(node))
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "pycrid.tools.cli",
            "adopt",
            "--check",
            "--config",
            str(daemon.config_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    reason = "no sandbox file" if sandbox_file is None else "is malformed"
    assert re.search(rf"cannot adopt {sandbox_id[:13]} \S+: .*{reason}", check.stdout), check.stdout
    assert f"cannot adopt {app[:13]}" in check.stdout
    pods = daemon.runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=CALL_TIMEOUT).items
    assert sandbox_id not in [p.id for p in pods]
    daemon.restart()
    assert inspect(sandbox_id)["State"]["Running"] and inspect(app)["State"]["Running"]
    assert ip_allocations(ipam_dir)  # its network is cri-dockerd's still
    made.clean()
    for allocation in ip_allocations(ipam_dir):
        next(ipam_dir.rglob(allocation)).unlink()
