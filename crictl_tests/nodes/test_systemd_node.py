"""pycrid on a node shaped like kind's: systemd as PID 1, both adapters on the systemd driver.

One node container per adapter (about a minute each to install and boot, then
the kubelet checks): pycrid installed as docs/install.md says with socket
activation, kubelet 1.20 with ``--cgroup-driver=systemd`` and two static pods.
The tests run in file order against the module's node.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crictl_tests import harness
from crictl_tests.nodes import install
from crictl_tests.nodes.node import Node, build_image, can_build

BOOT_LIMIT = 15.0
"""kind waits 30 s for a node's multi-user.target; pycrid's node must be well under it."""
POD_TIMEOUT = 180.0


def _need(reason: str | None) -> None:
    if reason is None:
        return
    if harness.in_ci():
        pytest.fail(f"no node container can be had: {reason}")
    pytest.skip(f"no node container can be had: {reason}")


@pytest.fixture(scope="session")
def node_image() -> str:
    _need(can_build())
    _need(None if harness.registry_answers() else "the test registry is not running")
    for tool in ("kubelet", "crictl"):
        _need(None if harness.find_tool(tool) else f"{tool} is not installed")
    return build_image()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install.build_wheelhouse(tmp_path_factory.mktemp("wheels"))


def host_cgroups() -> tuple[list[str], list[str]]:
    """What a node must never change on the host: /sys/fs/cgroup and its mounts."""
    mounts = [
        " ".join(line.split()[3:6])
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if "/sys/fs/cgroup" in line
    ]
    return sorted(os.listdir("/sys/fs/cgroup")), sorted(mounts)


@pytest.fixture(scope="module", params=["oci", "docker"])
def node(request: pytest.FixtureRequest, node_image: str, wheelhouse: Path) -> Iterator[Node]:
    adapter = request.param
    before = host_cgroups()
    # dockerd in a node must not share the host's network (see node.py).
    node = Node(f"pycrid-node-{adapter}", node_image, "host" if adapter == "oci" else "bridge")
    node.remove()  # one left by an interrupted run
    node.start()
    node.adapter = adapter  # type: ignore[attr-defined]
    try:
        kubelet = Path(harness.find_tool("kubelet") or "")
        crictl = Path(harness.find_tool("crictl") or "")
        install.install(node, adapter, wheelhouse, kubelet, crictl)
        node.reboot()  # the installed node boots the way it always will
        yield node
    except BaseException:
        print(node.journal("pycrid", "kubelet", "docker", lines=120))
        raise
    finally:
        node.sh("systemctl stop kubelet pycrid-relay", check=False, timeout=60)
        node.remove()
    assert host_cgroups() == before, "the node changed the host's cgroup mounts"


def unit(node: Node, name: str, *properties: str) -> dict[str, str]:
    out = node.sh(f"systemctl show {name} -p {','.join(properties)}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_for(what: str, check: Any, timeout: float, node: Node | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    logs = node.journal("pycrid", "kubelet", lines=80) if node else ""
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{logs}")


def kubelet_pods(node: Node) -> dict[str, dict[str, Any]]:
    text = node.get(f"http://127.0.0.1:{install.READ_ONLY_PORT}/pods")
    if not text:
        return {}
    listed = json.loads(text)
    # A static pod is named <manifest's name>-<node name>.
    return {p["metadata"]["name"].split("-pycrid-node-")[0]: p for p in listed.get("items") or []}


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    return statuses[0]


def running_containers(node: Node, name: str = "") -> dict[str, int]:
    """Container ID -> its process's PID, for every running container (named ``name``).

    The crasher's container exits every few seconds: one that is gone by the
    time it is inspected is left out.
    """
    selector = f" --name {name}" if name else ""
    ids = node.sh(f"crictl ps -q{selector}").stdout.split()
    pids = {}
    for container_id in ids:
        inspected = node.sh(f"crictl inspect {container_id}", check=False)
        if inspected.returncode != 0:
            continue
        pid = int(json.loads(inspected.stdout)["info"].get("pid") or 0)
        if pid and node.sh(f"test -d /proc/{pid}", check=False).returncode == 0:
            pids[container_id] = pid
    return pids


def test_the_node_boots_to_running_well_under_kinds_30_seconds(node: Node) -> None:
    assert node.boot_seconds < BOOT_LIMIT, f"booted in {node.boot_seconds:.1f} s"


def test_the_socket_listens_before_the_daemon_runs(node: Node) -> None:
    assert unit(node, "pycrid.socket", "ActiveState")["ActiveState"] == "active"
    assert unit(node, "pycrid.service", "ActiveState")["ActiveState"] == "inactive"
    node.sh("test -S /run/pycrid/pycrid.sock")
    listening = node.sh("cat /proc/net/unix").stdout
    assert "/run/pycrid/pycrid.sock" in listening


def test_kubelets_first_call_activates_the_daemon_and_ready_follows(node: Node) -> None:
    node.sh("systemctl start kubelet")

    def active() -> dict[str, str] | None:
        found = unit(node, "pycrid.service", "ActiveState", "SubState", "TriggeredBy")
        return found if found["ActiveState"] == "active" else None

    state = wait_for("pycrid.service active", active, 60, node)
    # Type=notify: "active (running)" only once READY=1 arrived.
    assert state["SubState"] == "running"
    assert "pycrid.socket" in state["TriggeredBy"]
    log = node.journal("pycrid", lines=200)
    assert "serving CRI on fd://" in log
    assert f"with the {node.adapter} adapter" in log  # type: ignore[attr-defined]
    if node.adapter == "oci":  # type: ignore[attr-defined]
        config = json.loads(node.sh("crictl info").stdout)["config"]
        config = json.loads(config) if isinstance(config, str) else config
        assert config["cgroupManager"] == "systemd"


def test_static_pods_become_ready_with_probes_and_a_restart(node: Node) -> None:
    def ready() -> bool:
        pods = kubelet_pods(node)
        web, crasher = pods.get("web"), pods.get("crasher")
        if not web or not crasher:
            return False
        return (
            container_status(web).get("ready") is True
            and container_status(crasher).get("restartCount", 0) >= 1
        )

    wait_for("web Ready and crasher restarted", ready, POD_TIMEOUT, node)
    crasher = container_status(kubelet_pods(node)["crasher"])
    terminated = (crasher.get("lastState") or {}).get("terminated") or {}
    assert terminated.get("exitCode") == 3
    assert terminated.get("message", "").strip() == "bye"


def test_every_container_is_a_scope_under_kubepods_carrying_its_limit(node: Node) -> None:
    containers = running_containers(node)
    assert containers
    prefix = "docker" if node.adapter == "docker" else "pycrid"  # type: ignore[attr-defined]
    limits = []
    for container_id, pid in containers.items():
        read = node.sh(f"cat /proc/{pid}/cgroup", check=False)
        if read.returncode != 0:
            continue  # exited meanwhile (the crasher)
        lines = read.stdout.splitlines()
        memory = next(line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory")
        assert memory.startswith("/kubepods.slice/kubepods-"), memory
        scope = memory.rsplit("/", 1)[1]
        assert scope.startswith(f"{prefix}-{container_id[:12]}") and scope.endswith(".scope")
        active = node.sh(f"systemctl is-active {scope}", check=False).stdout.strip()
        limit = node.sh(f"cat /sys/fs/cgroup/memory{memory}/memory.limit_in_bytes", check=False)
        if node.sh(f"test -d /proc/{pid}", check=False).returncode != 0:
            continue  # the crasher exited meanwhile, and its scope with it
        assert active == "active", scope
        limits.append(int(limit.stdout))
    assert install.WEB_MEMORY_LIMIT in limits


def test_stats_are_read_from_the_scopes(node: Node) -> None:
    (web_id,) = running_containers(node, "web")
    stats = json.loads(node.sh(f"crictl stats -o json --id {web_id}").stdout)["stats"]
    assert stats
    for entry in stats:
        assert int(entry["memory"]["workingSetBytes"]["value"]) > 0, entry
        assert int(entry["cpu"]["usageCoreNanoSeconds"]["value"]) > 0, entry
    pods = json.loads(node.sh("crictl statsp -o json").stdout)["stats"]
    web = next(p for p in pods if p["attributes"]["metadata"]["name"].startswith("web-"))
    # The pod's own slice, holding exactly its pause and its container.
    assert int(web["linux"]["memory"]["workingSetBytes"]["value"]) > 0, web


def memory_cgroup(node: Node, pid: int) -> str:
    lines = node.sh(f"cat /proc/{pid}/cgroup").stdout.splitlines()
    return next(line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory")


def memory_limit(node: Node, cgroup: str) -> int:
    return int(node.sh(f"cat /sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes").stdout)


UPDATE_POD = """
import sys, grpc
from pycrid.api.cri import api_pb2 as cri, api_pb2_grpc as rpc
stub = rpc.RuntimeServiceStub(grpc.insecure_channel("unix:///run/pycrid/pycrid.sock"))
resources = cri.LinuxContainerResources(memory_limit_in_bytes=int(sys.argv[2]))
stub.UpdatePodSandboxResources(
    cri.UpdatePodSandboxResourcesRequest(pod_sandbox_id=sys.argv[1], resources=resources)
)
"""


def test_resource_updates_reach_the_scope_and_the_slice(node: Node) -> None:
    ((web_id, pid),) = running_containers(node, "web").items()
    scope = memory_cgroup(node, pid)
    node.sh(f"crictl update --memory {96 << 20} {web_id}")
    assert memory_limit(node, scope) == 96 << 20
    pod_id = json.loads(node.sh(f"crictl inspect {web_id}").stdout)["status"]["labels"][
        "io.kubernetes.pod.uid"
    ]
    sandbox = node.sh(f"crictl pods -q --label io.kubernetes.pod.uid={pod_id}").stdout.split()[0]
    node.write("/root/update_pod.py", UPDATE_POD)
    node.sh(f"/opt/pycrid/bin/python /root/update_pod.py {sandbox} {160 << 20}")
    pod_slice = scope.rsplit("/", 1)[0]
    assert memory_limit(node, pod_slice) == 160 << 20
    properties = unit(node, pod_slice.rsplit("/", 1)[1], "MemoryMax", "MemoryLimit")
    assert str(160 << 20) in properties.values(), properties


def test_a_killed_daemon_comes_back_through_restart_keeping_containers(node: Node) -> None:
    before = running_containers(node, "web")
    restarts = int(unit(node, "pycrid.service", "NRestarts")["NRestarts"])
    web_restarts = container_status(kubelet_pods(node)["web"])["restartCount"]
    node.sh("systemctl kill -s KILL pycrid")

    def restarted() -> bool:
        found = unit(node, "pycrid.service", "NRestarts", "SubState")
        return int(found["NRestarts"]) > restarts and found["SubState"] == "running"

    wait_for("pycrid restarted", restarted, 60, node)
    after = running_containers(node, "web")
    assert after == before, "the web container did not survive the daemon's restart"
    time.sleep(5)
    assert container_status(kubelet_pods(node)["web"])["restartCount"] == web_restarts


def test_stopping_the_daemon_leaves_containers_running(node: Node) -> None:
    before = running_containers(node, "web")
    assert before
    # kubelet first: its next call would start pycrid again through the socket.
    node.sh("systemctl stop kubelet && systemctl stop pycrid.service")
    assert unit(node, "pycrid.service", "ActiveState")["ActiveState"] == "inactive"
    for pid in before.values():
        node.sh(f"kill -0 {pid}")
    node.sh("systemctl start kubelet")
    wait_for(
        "pycrid back through the socket",
        lambda: unit(node, "pycrid.service", "SubState")["SubState"] == "running",
        60,
        node,
    )
    assert running_containers(node, "web") == before
