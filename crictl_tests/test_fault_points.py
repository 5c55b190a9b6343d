"""A SIGKILL at every named step of the calls that change things, on both adapters.

Each test starts a daemon with one fault point armed (``PYCRID_FAULT_POINT``,
``adapters/faults.py``), walks one pod through its life (pull, run, create a
logging container, start it, stop another, stop the pod) until the daemon
kills itself at that point, restarts it without the point, and checks:

- what the CRI says matches the backend: a READY pod's pause process runs, a
  RUNNING container runs in runc or Docker, a CREATED one waits there, a
  half-stopped pod is NOTREADY;
- the objects carry on: a CREATED container starts, a RUNNING one refuses a
  second start and stays RUNNING, StopPodSandbox finishes a teardown that
  was cut short and releases the pod's IP;
- the logging container lost no line;
- after removal nothing is left: runc or Docker containers, conmon
  processes, mounts, namespace pins, CNI IPs, bundles, records, cgroups.
"""

from __future__ import annotations

import glob
import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from crictl_tests import dockerpods, harness
from crictl_tests.dockerpods import Pods, docker_inspect, ip_allocations, wait_for
from crictl_tests.harness import BUSYBOX_IMAGE, Daemon
from pycrid.adapters import faults
from pycrid.api.cri import api_pb2 as cri

STEPS = ("pull", "run", "create", "start", "stop", "stoppod")

# (point, the step whose call reaches it first)
OCI_POINTS = [
    ("oci.pull.after-manifests", "pull"),
    ("oci.pull.after-unpack", "pull"),
    ("oci.pull.before-commit", "pull"),
    ("oci.pull.after-commit", "pull"),
    ("oci.run.after-record", "run"),
    ("oci.run.after-conmon-create", "run"),
    ("network.after-cni-add", "run"),
    ("oci.run.before-runc-start", "run"),
    ("oci.run.after-runc-start", "run"),
    ("oci.create.after-record", "create"),
    ("oci.create.after-conmon-create", "create"),
    ("oci.start.before-runc-start", "start"),
    ("oci.start.after-runc-start", "start"),
    ("oci.stop.after-signal", "stop"),
    ("oci.stop.after-sigkill", "stop"),
    ("oci.stoppod.after-intent", "stoppod"),
    ("oci.stoppod.after-containers", "stoppod"),
    ("network.after-cni-del", "stoppod"),
    ("oci.stoppod.after-network", "stoppod"),
]
DOCKER_POINTS = [
    ("docker.pull.after-pull", "pull"),
    ("docker.run.after-create", "run"),
    ("docker.run.after-start", "run"),
    ("network.after-cni-add", "run"),
    ("docker.create.after-create", "create"),
    ("docker.start.after-docker-start", "start"),
    ("docker.stop.after-docker-stop", "stop"),
    ("docker.stoppod.after-intent", "stoppod"),
    ("docker.stoppod.after-containers", "stoppod"),
    ("network.after-cni-del", "stoppod"),
    ("docker.stoppod.after-network", "stoppod"),
]
CASES = [("oci", *p) for p in OCI_POINTS] + [("docker", *p) for p in DOCKER_POINTS]

COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done"
IGNORES_TERM = "trap '' TERM; while true; do sleep 1; done"
STOP_TIMEOUT = 1


@pytest.fixture
def armed_daemon(
    request: pytest.FixtureRequest, docker_engine: None, test_registry: None
) -> Iterator[Daemon]:
    adapter, point = request.param
    root = harness.new_root()
    extra: dict = {}
    if adapter == "docker":
        conf_dir, _ = dockerpods.cni_conf_dir(root)
        extra = {"network": {"mode": "cni", "cni_conf_dir": str(conf_dir)}}
    daemon = Daemon(
        root=root,
        config=harness.merge(harness.base_config(root, adapter), extra),
        env={faults.ENV: point},
    )
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def ipam_dir(daemon: Daemon) -> Path:
    return daemon.root / "ipam"


def backend_state(daemon: Daemon, object_id: str) -> str:
    """runc's or Docker's word for the object: created, running, stopped or gone."""
    if daemon.config["adapter"] == "oci":
        root = Path(daemon.config["run_dir"]) / "oci" / "runc"
        done = subprocess.run(
            ["runc", "--root", str(root), "state", object_id], capture_output=True, text=True
        )
        return json.loads(done.stdout)["status"] if done.returncode == 0 else "gone"
    try:
        status = docker_inspect(object_id)["State"]["Status"]
    except subprocess.CalledProcessError:
        return "gone"
    return {"exited": "stopped", "dead": "stopped"}.get(status, status)


def cgroups_of(ids: list[str]) -> list[str]:
    """cgroup directories (any controller, three levels down) named after the IDs."""
    found = []
    for pattern in ("/sys/fs/cgroup/*/*/*", "/sys/fs/cgroup/*/*/*/*", "/sys/fs/cgroup/*/*"):
        found += [p for p in glob.glob(pattern) if any(i in Path(p).name for i in ids)]
    return sorted(set(found))


def log_numbers(path: str) -> list[int]:
    with open(path) as f:
        return [int(line.split(" ", 3)[3]) for line in f if line.split(" ", 3)[2] == "F"]


class Walk:
    """One pod's life, step by step, remembering what it made."""

    def __init__(self, pods: Pods) -> None:
        self.pods = pods
        self.config = pods.sandbox_config("walked")
        self.sandbox_id = ""
        self.counter = ""
        self.stopped = ""

    def step(self, name: str) -> None:
        pods = self.pods
        if name == "pull":
            pods.pull(BUSYBOX_IMAGE)
        elif name == "run":
            self.sandbox_id = pods.run(self.config)
        elif name == "create":
            config = pods.container_config("counter", command=["sh", "-c", COUNTER])
            self.counter = pods.create(self.sandbox_id, config, self.config)
        elif name == "start":
            pods.start(self.counter)
        elif name == "stop":
            # SIGTERM is ignored, so that the stop goes on to SIGKILL.
            config = pods.container_config("stopped", command=["sh", "-c", IGNORES_TERM])
            self.stopped = pods.run_container(self.sandbox_id, config)
            pods.rt.StopContainer(
                cri.StopContainerRequest(container_id=self.stopped, timeout=STOP_TIMEOUT),
                timeout=60,
            )
        elif name == "stoppod":
            pods.rt.StopPodSandbox(
                cri.StopPodSandboxRequest(pod_sandbox_id=self.sandbox_id), timeout=60
            )


def check_matches_backend(pods: Pods) -> None:
    """Every pod and container the CRI lists is what the backend says it is."""
    daemon = pods.daemon
    for pod in pods.rt.ListPodSandbox(cri.ListPodSandboxRequest()).items:
        status = pods.sandbox_status(pod.id).status
        if status.state == cri.SANDBOX_READY:
            assert backend_state(daemon, pod.id) == "running", pod.id
            assert status.network.ip in ip_allocations(ipam_dir(daemon))
    for container in pods.rt.ListContainers(cri.ListContainersRequest()).containers:
        state = pods.status(container.id).status.state
        expected = {
            cri.CONTAINER_CREATED: ("created",),
            cri.CONTAINER_RUNNING: ("running",),
            cri.CONTAINER_EXITED: ("stopped", "gone"),
        }[state]
        found = backend_state(daemon, container.id)
        assert found in expected, (container.metadata.name, state, found)


@pytest.mark.parametrize(
    ("armed_daemon", "point", "dies_in"),
    [((adapter, point), point, step) for adapter, point, step in CASES],
    indirect=["armed_daemon"],
    ids=[f"{adapter}-{point}" for adapter, point, _ in CASES],
)
def test_sigkill_at_a_named_point_leaves_state_true_and_nothing_behind(
    armed_daemon: Daemon, point: str, dies_in: str
) -> None:
    daemon = armed_daemon
    pods = Pods(daemon, ipam_dir=ipam_dir(daemon))
    walk = Walk(pods)
    try:
        died_in = ""
        for step in STEPS:
            try:
                walk.step(step)
            except grpc.RpcError:
                died_in = step
                break
        assert died_in == dies_in, daemon.log_tail()
        assert daemon.process is not None
        assert daemon.process.wait(10) == -signal.SIGKILL
        assert f"fault point {point} reached" in daemon.log_path.read_text()

        daemon.env = {}
        daemon.start()
        check_matches_backend(pods)
        listed = pods.rt.ListPodSandbox(cri.ListPodSandboxRequest()).items
        pods.sandboxes = [p.id for p in listed]
        pods.ran = list(pods.sandboxes)
        ids = pods.sandboxes + [
            c.id for c in pods.rt.ListContainers(cri.ListContainersRequest()).containers
        ]
        if died_in == "stoppod":
            assert pods.sandbox_status(walk.sandbox_id).status.state == cri.SANDBOX_NOTREADY

        # The objects carry on from where the crash left them.
        for container in pods.rt.ListContainers(cri.ListContainersRequest()).containers:
            if container.state == cri.CONTAINER_CREATED:
                pods.start(container.id)
                assert pods.status(container.id).status.state == cri.CONTAINER_RUNNING
            elif container.state == cri.CONTAINER_RUNNING:
                with pytest.raises(grpc.RpcError) as refused:
                    pods.start(container.id)
                assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert pods.status(container.id).status.state == cri.CONTAINER_RUNNING
        counter = next(
            (
                c
                for c in pods.rt.ListContainers(cri.ListContainersRequest()).containers
                if c.metadata.name == "counter"
            ),
            None,
        )
        log_path = pods.status(counter.id).status.log_path if counter is not None else ""
        if counter is not None and counter.state == cri.CONTAINER_RUNNING:
            wait_for(lambda: len(log_numbers(log_path)) > 10, "the counter's log to flow")
        for sandbox_id in pods.sandboxes:
            pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
            assert pods.sandbox_status(sandbox_id).status.state == cri.SANDBOX_NOTREADY
        assert ip_allocations(ipam_dir(daemon)) == []
        check_matches_backend(pods)
        if log_path:
            numbers = log_numbers(log_path)
            assert numbers == list(range(len(numbers))), "log lines lost"
            if died_in in ("stop", "stoppod"):
                assert len(numbers) > 10  # it ran before the crash and after
        pods.remove_all()
        assert pods.leftovers() == {}
        assert cgroups_of(ids) == []
    finally:
        pods.close()
