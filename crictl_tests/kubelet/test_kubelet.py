"""A real kubelet drives pycrid: static pods through their whole life, on each adapter.

Every scenario's pod is written at the start, so that the slow ones (back-off,
log rotation) run side by side; the tests then check them in order, each
through kubelet's own view. The tests that restart pycrid or kubelet, and the
image garbage collection that removes images, come last.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from crictl_tests.harness import PAUSE_IMAGE
from crictl_tests.kubelet import manifests
from crictl_tests.kubelet.conftest import record_figure
from crictl_tests.kubelet.node import (
    NAMESPACE,
    NODE_NAME,
    POD_LOGS,
    KubeletNode,
    cgroup_paths,
    container_id,
    container_status,
    free_port,
    full_name,
    insecure_tls,
    is_ready,
    read_cgroup,
    wait_for,
)
from pycrid.api.cri import api_pb2 as cri
from pycrid.server.streaming.client import SpdyExec, SpdyPortForward, read_all

LOG_LINES = 2000
LOG_LINES_PER_SECOND = 50
OOM_LIMIT = "24Mi"
GRACE_SECONDS = 5
UNUSED_IMAGE = "registry.k8s.io/k8s-staging-cri-tools/test-image-1:latest"
# Pods whose containers restart by design: left out of the "nothing restarted" checks.
RESTARTING = {"liveness", "crash", "oom"}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def node(bare_node: KubeletNode) -> KubeletNode:
    """The node with every scenario's static pod written."""
    (bare_node.host_dir / "from-host").write_text("written by the host\n")
    bare_node.host_port = free_port()
    for pod in (
        manifests.init_and_probes(),
        manifests.liveness(),
        manifests.crash(),
        manifests.logger(LOG_LINES, LOG_LINES_PER_SECOND),
        manifests.streams(),
        manifests.qos("besteffort", manifests.BEST_EFFORT),
        manifests.qos("burstable", manifests.BURSTABLE),
        manifests.qos("guaranteed", manifests.GUARANTEED),
        manifests.oom(OOM_LIMIT),
        manifests.volumes(str(bare_node.host_dir)),
        manifests.host_network(),
        manifests.host_port(bare_node.host_port),
        manifests.graceful(str(bare_node.host_dir), GRACE_SECONDS),
        manifests.edited("1"),
    ):
        bare_node.write_manifest(pod)
    return bare_node


@pytest.fixture(autouse=True)
def _checked(cri_errors_allowed: list[str]) -> list[str]:
    return cri_errors_allowed


# Streaming through kubelet's server, the way kubectl reaches it.


def exec_url(node: KubeletNode, pod: str, container: str, command: list[str], **flags: bool) -> str:
    query = [("command", c) for c in command]
    query += [(name, "1") for name, on in flags.items() if on]
    path = f"/exec/{NAMESPACE}/{full_name(pod)}/{container}?{urlencode(query)}"
    return node.api_url(path)


async def run_exec(node: KubeletNode, pod: str, container: str, *command: str) -> tuple[str, int]:
    """(stdout, exit code) of a command run through kubelet's /exec."""
    url = exec_url(node, pod, container, list(command), output=True, error=True)
    session = await SpdyExec.open(url, tls=insecure_tls())
    result = await session.wait()
    return result.stdout.decode(), result.exit_code


def sh(node: KubeletNode, pod: str, container: str, script: str) -> str:
    out, code = asyncio.run(run_exec(node, pod, container, "sh", "-c", script))
    assert code == 0, f"{script!r} in {pod}/{container} exited {code}: {out}"
    return out


def ready_pod(node: KubeletNode, name: str, timeout: float = 120) -> dict[str, Any]:
    return node.wait_pod(name, lambda p: is_ready(p) and p, "Ready", timeout)


# 1. Init containers, then probes.


def test_init_containers_run_in_order_and_probes_make_the_pod_ready(node: KubeletNode) -> None:
    pod = ready_pod(node, "init-probes")
    first, second = pod["status"]["initContainerStatuses"]
    assert [first["name"], second["name"]] == ["first", "second"]
    for status in (first, second):
        assert status["state"]["terminated"]["exitCode"] == 0, status
    assert first["state"]["terminated"]["finishedAt"] <= second["state"]["terminated"]["startedAt"]
    init_done = second["state"]["terminated"]["finishedAt"]
    for status in pod["status"]["containerStatuses"]:
        assert status["ready"], status
        assert status["state"]["running"]["startedAt"] >= init_done, status
    assert sh(node, "init-probes", "sidecar", "cat /shared/order") == "first\nsecond\n"


# 2. Liveness.


def test_failing_liveness_probe_restarts_the_container(node: KubeletNode) -> None:
    def restarted(pod: dict[str, Any]) -> dict[str, Any] | None:
        status = container_status(pod, "app")
        return status if status["restartCount"] >= 1 and "running" in status["state"] else None

    status = node.wait_pod("liveness", restarted, "restarted by its liveness probe", 90)
    assert status["lastState"]["terminated"]["exitCode"] == 0  # it took the TERM
    previous = node.container_logs("liveness", "app", previous="true")
    current = node.container_logs("liveness", "app")
    boots = [re.search(r"boot (\S+)", text) for text in (previous, current)]
    assert all(boots), (previous, current)
    assert boots[0][1] != boots[1][1], "the previous instance's log is the current one's"
    assert "unhealthy now" in previous and "stopping" in previous


# 3. A container that exits.


def test_exiting_container_backs_off_with_its_termination_message(node: KubeletNode) -> None:
    def backing_off(pod: dict[str, Any], name: str) -> dict[str, Any] | None:
        status = container_status(pod, name)
        waiting = status["state"].get("waiting", {}).get("reason")
        if waiting == "CrashLoopBackOff" and status["lastState"].get("terminated"):
            return status
        return None

    message = node.wait_pod("crash", lambda p: backing_off(p, "message"), "CrashLoopBackOff")
    terminated = message["lastState"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    assert terminated["message"] == "gave up: code 3\n"
    fallback = node.wait_pod("crash", lambda p: backing_off(p, "fallback"), "CrashLoopBackOff")
    terminated = fallback["lastState"]["terminated"]
    assert terminated["exitCode"] == 4
    assert "last words before 4" in terminated["message"]


# 4. Log rotation through ReopenContainerLog.


def log_files(node: KubeletNode) -> list[Path]:
    """The logger's log files, oldest first: the rotated ones by time stamp, then the live one."""
    uid = node.pod("logger")["metadata"]["uid"]
    directory = POD_LOGS / f"{NAMESPACE}_{full_name('logger')}_{uid}" / "writer"
    files = [p for p in directory.iterdir() if p.name.startswith("0.log")]
    return sorted(files, key=lambda p: (p.name == "0.log", p.name))


def log_messages(path: Path) -> list[str]:
    """Whole messages of a CRI log file (partial lines joined)."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    messages, pending = [], ""
    for line in raw.decode().splitlines():
        _, _, tag, text = ([*line.split(" ", 3), ""])[:4]
        pending += text
        if tag == "F":
            messages.append(pending)
            pending = ""
    return messages


def test_log_rotation_loses_and_doubles_no_line(node: KubeletNode) -> None:
    def finished() -> list[Path] | None:
        files = log_files(node)
        return files if "done" in log_messages(files[-1]) else None

    files = wait_for(finished, "the logger to finish", LOG_LINES / LOG_LINES_PER_SECOND + 60, 2)
    rotated = files[:-1]
    assert len(rotated) >= 2, f"kubelet rotated {len(rotated)} times: {files}"
    assert any(p.name.endswith(".gz") for p in rotated), files
    numbers = []
    for path in files:
        for message in log_messages(path):
            if match := re.fullmatch(r"line (\d+) x+", message):
                numbers.append(int(match[1]))
    assert numbers == list(range(1, LOG_LINES + 1)), (
        f"{len(numbers)} lines over {len(files)} files; "
        f"missing {sorted(set(range(1, LOG_LINES + 1)) - set(numbers))[:10]}, "
        f"doubled {sorted(n for n in set(numbers) if numbers.count(n) > 1)[:10]}"
    )


# 5. Streaming through kubelet's server.


async def _exec_and_attach(node: KubeletNode) -> None:
    tls = insecure_tls()
    url = exec_url(
        node,
        "streams",
        "shell",
        ["sh", "-c", "echo out; echo err >&2; exit 7"],
        output=True,
        error=True,
    )
    result = await (await SpdyExec.open(url, tls=tls)).wait()
    assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", 7)

    url = exec_url(node, "streams", "shell", ["sh"], input=True, output=True, tty=True)
    session = await SpdyExec.open(url, stdin=True, tty=True, tls=tls)
    await session.resize(100, 30)
    # Typed at the prompt, as a person would: runc sizes the container's terminal
    # only once the shell runs, and a command typed ahead may run before that.
    await session.read_until(b"# ")
    await session.write(b"echo $((6*7)); stty size\n")
    seen = await session.read_until(b"30 100")
    assert b"42" in seen
    await session.write(b"exit 5\n")
    assert (await session.wait()).exit_code == 5

    path = f"/attach/{NAMESPACE}/{full_name('streams')}/answer?input=1&output=1&error=1"
    session = await SpdyExec.open(node.api_url(path), stdin=True, tls=tls)
    try:
        await session.write(b"hello\n")
        await session.read_until(b"got hello")
    finally:
        await session.close()


async def _port_forward(node: KubeletNode) -> bytes:
    url = node.api_url(f"/portForward/{NAMESPACE}/{full_name('init-probes')}")
    forward = await SpdyPortForward.open(url, tls=insecure_tls())
    try:
        data, error = await forward.connect(manifests.WEB_PORT)
        await data.write(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
        response = await asyncio.wait_for(read_all(data), 30)
        data.reset()
        assert await read_all(error) == b""
        return response
    finally:
        await forward.close()


def test_exec_attach_and_port_forward_through_kubelet(node: KubeletNode) -> None:
    ready_pod(node, "streams")
    ready_pod(node, "init-probes")
    asyncio.run(_exec_and_attach(node))
    response = asyncio.run(_port_forward(node))
    assert response.startswith(b"HTTP/1.") and b" 200 " in response.split(b"\r\n")[0]
    assert b"served by busybox httpd" in response


# 6. Resources and QoS.


def app_cgroups(node: KubeletNode, name: str) -> tuple[str, dict[str, str]]:
    pod = ready_pod(node, name)
    pid = node.container_pid(container_id(pod, "app"))
    return pod["metadata"]["uid"], cgroup_paths(pid)


@pytest.mark.parametrize(
    ("name", "parent", "shares", "quota", "memory"),
    [
        ("besteffort", "/kubepods/besteffort/pod{uid}/", 2, -1, None),
        ("burstable", "/kubepods/burstable/pod{uid}/", 102, -1, 64 * MiB),
        ("guaranteed", "/kubepods/pod{uid}/", 204, 20000, 48 * MiB),
    ],
    ids=["besteffort", "burstable", "guaranteed"],
)
def test_qos_classes_get_the_cgroups_kubelet_asks_for(
    node: KubeletNode, name: str, parent: str, shares: int, quota: int, memory: int | None
) -> None:
    uid, paths = app_cgroups(node, name)
    for controller in ("cpu", "memory", "pids"):
        assert paths[controller].startswith(parent.format(uid=uid)), (controller, paths)
    assert int(read_cgroup("cpu", paths["cpu"], "cpu.shares")) == shares
    assert int(read_cgroup("cpu", paths["cpu"], "cpu.cfs_quota_us")) == quota
    limit = int(read_cgroup("memory", paths["memory"], "memory.limit_in_bytes"))
    if memory is None:
        assert limit > 1 << 40  # unlimited
    else:
        assert limit == memory


def test_stats_summary_has_figures_for_every_running_pod(node: KubeletNode) -> None:
    """kubelet's summary comes from pycrid's stats calls and ImageFsInfo."""
    steady(node)

    def summary() -> dict[str, Any] | None:
        found = node.read_only("/stats/summary")
        pods = {p["podRef"]["name"]: p for p in found.get("pods", [])}
        app = pods.get(full_name("burstable"), {}).get("containers", [{}])[0]
        return found if app.get("cpu", {}).get("usageCoreNanoSeconds") else None

    found = wait_for(summary, "pod figures in /stats/summary", 60, 2)
    image_fs = found["node"]["runtime"]["imageFs"]
    assert image_fs["capacityBytes"] > 0 and image_fs["usedBytes"] > 0, image_fs
    pods = {p["podRef"]["name"]: p for p in found["pods"]}
    for name in ("init-probes", "streams", "besteffort", "burstable", "guaranteed", "volumes"):
        pod = pods[full_name(name)]
        for container in pod["containers"]:
            assert container["memory"]["workingSetBytes"] > 0, (name, container)
            assert container["cpu"]["usageCoreNanoSeconds"] > 0, (name, container)
            assert container["logs"]["usedBytes"] >= 0, (name, container)


def test_container_over_its_memory_limit_is_oom_killed(node: KubeletNode) -> None:
    def terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
        return container_status(pod, "hog")["state"].get("terminated")

    state = node.wait_pod("oom", terminated, "the hog's end")
    assert state["reason"] == "OOMKilled", state
    assert state["exitCode"] == 137


# 7. Volumes and pod spec.


def test_volumes_downward_api_hosts_and_dns(node: KubeletNode) -> None:
    pod = ready_pod(node, "volumes")
    pod_ip = pod["status"]["podIP"]
    assert pod_ip.startswith("10.89."), pod_ip
    assert sh(node, "volumes", "app", "cat /scratch/shared") == "from-writer\n"
    assert sh(node, "volumes", "app", "cat /host/from-host") == "written by the host\n"
    sh(node, "volumes", "app", "echo written by the pod > /host/from-pod")
    assert (node.host_dir / "from-pod").read_text() == "written by the pod\n"
    assert sh(node, "volumes", "app", "cat /podinfo/name") == full_name("volumes")
    assert 'suite="kubelet"' in sh(node, "volumes", "app", "cat /podinfo/labels")
    env = sh(node, "volumes", "app", 'echo "$POD_NAME|$POD_IP|$PLAIN"')
    assert env == f"{full_name('volumes')}|{pod_ip}|plain value\n"

    hosts = sh(node, "volumes", "app", "cat /etc/hosts")
    assert "Kubernetes-managed hosts file" in hosts, hosts
    assert re.search(rf"^{re.escape(pod_ip)}\s+{full_name('volumes')}$", hosts, re.M), hosts
    assert re.search(r"^192\.0\.2\.10\s+alias\.pycrid\.test$", hosts, re.M), hosts

    resolv = sh(node, "volumes", "app", "cat /etc/resolv.conf").splitlines()
    assert "nameserver 192.0.2.53" in resolv, resolv
    assert "search pycrid.test example.test" in resolv, resolv
    assert "options ndots:3" in resolv, resolv


def test_host_network_pod_shares_the_node_network(node: KubeletNode) -> None:
    ready_pod(node, "hostnet")
    inside = sh(node, "hostnet", "app", "readlink /proc/self/ns/net").strip()
    assert inside == os.readlink("/proc/self/ns/net")


def test_host_port_reaches_the_pod_from_the_host(node: KubeletNode) -> None:
    ready_pod(node, "hostport")
    url = f"http://127.0.0.1:{node.host_port}/"

    def page() -> bytes:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()

    assert b"served by busybox httpd" in wait_for(page, f"an answer on {url}", 30)


# 8. Lifecycle.


def sandboxes_of(node: KubeletNode, uid: str) -> list[Any]:
    return [s for s in node.cri_sandboxes() if s.metadata.uid == uid]


def test_removed_manifest_stops_gracefully_and_is_collected(
    node: KubeletNode, cri_errors_allowed: list[str]
) -> None:
    # kubelet 1.20's housekeeping may kill the pod a second time from a relist that
    # still shows the container running, and run its preStop hook again in a
    # container that has just exited: pycrid answers FAILED_PRECONDITION.
    cri_errors_allowed += [
        r"ExecSync \w+ 'sh -c echo prestop .* code = FailedPrecondition "
        r"desc = (?i:container) \w+ is not running",
        r"preStop hook for container \"app\" failed: .* code = FailedPrecondition",
    ]
    pod = ready_pod(node, "graceful")
    uid = pod["metadata"]["uid"]
    pod_ip = pod["status"]["podIP"]
    (sandbox,) = sandboxes_of(node, uid)
    record = node.host_dir / "graceful"
    node.remove_manifest("graceful")

    # The hook runs first, then the TERM, which the container takes a second to act on.
    wait_for(lambda: "term" in record.read_text(), "the TERM to reach the container", 60)
    assert record.read_text().split() == ["started", "prestop", "term"]
    wait_for(lambda: "graceful" not in node.pods(), "kubelet to drop the pod", 60)
    # kubelet's container GC removes a deleted pod's sandbox within its minute.
    wait_for(lambda: not sandboxes_of(node, uid), "the sandbox to be garbage-collected", 150, 2)
    assert not [c for c in node.cri_containers() if c.pod_sandbox_id == sandbox.id]
    assert pod_ip not in [p.name for p in node.ipam_dir.rglob("*")], "its CNI IP is still held"
    leftover_mounts = [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if sandbox.id in line or uid in line
    ]
    assert leftover_mounts == []
    assert node.traces_of(sandbox.id) == []


def test_edited_manifest_replaces_the_pod(node: KubeletNode) -> None:
    old = ready_pod(node, "edited")
    node.write_manifest(manifests.edited("2"))

    def replaced(pod: dict[str, Any]) -> dict[str, Any] | None:
        return pod if pod["metadata"]["uid"] != old["metadata"]["uid"] and is_ready(pod) else None

    new = node.wait_pod("edited", replaced, "the edited pod Ready")
    assert sh(node, "edited", "app", "echo $VERSION") == "2\n"

    def old_stopped() -> bool:
        """The old pod stopped (or already collected): kubelet stops it beside starting
        the new one, and its container gets its grace period."""
        sandboxes = sandboxes_of(node, old["metadata"]["uid"])
        return all(s.state == cri.SANDBOX_NOTREADY for s in sandboxes)

    wait_for(old_stopped, "kubelet to stop the old pod", 60, 1)
    running = [c for c in node.cri_containers() if c.state == cri.CONTAINER_RUNNING]
    assert container_id(new, "app") in [c.id for c in running]
    assert container_id(old, "app") not in [c.id for c in running]


# 9. Restarts.


def running_containers(node: KubeletNode) -> dict[tuple[str, str], tuple[str, int]]:
    """(pod, container) -> (ID, restart count) of the steady pods' running containers."""
    found = {}
    for name, pod in node.pods().items():
        if name in RESTARTING:
            continue
        for status in pod["status"].get("containerStatuses", []):
            if "running" in status["state"]:
                found[name, status["name"]] = (status["containerID"], status["restartCount"])
    return found


def steady(node: KubeletNode) -> dict[tuple[str, str], tuple[str, int]]:
    for name in ("init-probes", "streams", "volumes", "hostnet", "hostport", "edited"):
        ready_pod(node, name)
    return running_containers(node)


def steady_cri_ids(node: KubeletNode) -> set[str]:
    """pycrid's IDs of the steady pods' containers, running or not."""
    return {
        c.id
        for c in node.cri_containers()
        if c.labels.get("io.kubernetes.pod.name", "").removesuffix(f"-{NODE_NAME}")
        not in RESTARTING
    }


def test_pycrid_killed_under_kubelet_keeps_every_container(
    node: KubeletNode, cri_errors_allowed: list[str]
) -> None:
    before = steady(node)
    cri_ids = steady_cri_ids(node)
    relists = node.metric("kubelet_pleg_relist_duration_seconds_count")
    # While pycrid is down every call kubelet makes fails to connect.
    cri_errors_allowed += [
        "code = Unavailable",
        "connection refused",
        "transport is closing",
        "code = DeadlineExceeded",
    ]
    node.daemon.kill()
    killed_at = time.monotonic()
    node.daemon.start()
    answering = time.monotonic() - killed_at
    # kubelet's PLEG relists every second: healthy again means relisting again,
    # and no relist failing after that (the fixture fails any later E line).
    wait_for(
        lambda: node.metric("kubelet_pleg_relist_duration_seconds_count") > relists + 2,
        "kubelet's PLEG to relist",
        30,
        0.2,
    )
    record_figure(f"{node.adapter}: pycrid answering again after SIGKILL", answering)
    record_figure(f"{node.adapter}: kubelet relisting again", time.monotonic() - killed_at)
    wait_for(lambda: node.healthz(), "kubelet's /healthz", 30)
    node.cri_errors()  # the outage's errors are behind us: none may follow
    cri_errors_allowed.clear()
    for _ in range(2):  # two sync periods
        wait_for(lambda: running_containers(node) == before, "every container kept", 25)
    assert steady_cri_ids(node) == cri_ids


def test_kubelet_restarted_finds_its_pods_again(node: KubeletNode) -> None:
    before = steady(node)
    node.restart_kubelet()
    wait_for(lambda: running_containers(node) == before, "kubelet to find its pods", 60)
    # A sync period later nothing was restarted or made twice.
    time.sleep(12)
    assert running_containers(node) == before


# 10. Image garbage collection.


def image_names(node: KubeletNode) -> set[str]:
    images = node.daemon.images.ListImages(cri.ListImagesRequest(), timeout=60).images
    return {tag for image in images for tag in image.repo_tags}


# kubelet 1.20 runs its threshold image GC when it starts, before its file system
# figures are in (it fails "Stats initialization may not have completed yet"), and
# then every 5 minutes. Its eviction manager runs the same collection (every
# unused image, by RemoveImage) every 10 s while the image file system is under
# pressure: a 99 % threshold puts it there. Static pods are critical, so none is
# evicted.
IMAGE_GC_NOW = {
    "imageGCHighThresholdPercent": 1,
    "imageGCLowThresholdPercent": 0,
    "imageMinimumGCAge": "0s",
    "evictionHard": {"imagefs.available": "99%"},
    "evictionPressureTransitionPeriod": "0s",
}


def test_image_gc_removes_unused_images_and_keeps_those_in_use(
    node: KubeletNode, cri_errors_allowed: list[str]
) -> None:
    in_use = {c.image.image for c in node.cri_containers() if c.state == cri.CONTAINER_RUNNING}
    node.daemon.images.PullImage(
        cri.PullImageRequest(image=cri.ImageSpec(image=UNUSED_IMAGE)), timeout=120
    )
    assert UNUSED_IMAGE in image_names(node)
    # kubelet 1.20 knows no pinned images and counts only its own containers'
    # images as in use: it asks to remove the pause image too, and on the docker
    # adapter the images of any other running container. Both adapters refuse an
    # image a running pod or container uses (Docker itself refuses it there).
    cri_errors_allowed.append(
        r"code = FailedPrecondition desc = "
        r"(image sha256:\w+ is in use|cannot remove image sha256:\w+: .* running container)"
    )
    with node.foreign_images_kept():
        node.restart_kubelet(**IMAGE_GC_NOW)
        wait_for(lambda: UNUSED_IMAGE not in image_names(node), "kubelet's image GC", 120, 2)
    kept = {image_name(node, ref) for ref in in_use} | {PAUSE_IMAGE}
    assert kept <= image_names(node), (kept, image_names(node))

    def not_ready() -> list[str]:
        return [n for n, pod in node.pods().items() if n not in RESTARTING and not is_ready(pod)]

    # The collection can end before the restarted kubelet has reported every pod again.
    wait_for(lambda: not not_ready(), "kubelet to report its pods ready again", 60, 2)
    assert not_ready() == []
    # A new pod still starts, on the images that were kept.
    node.write_manifest(manifests.pod("after-gc", manifests.sleeper("app")))
    ready_pod(node, "after-gc")


def image_name(node: KubeletNode, ref: str) -> str:
    status = node.daemon.images.ImageStatus(
        cri.ImageStatusRequest(image=cri.ImageSpec(image=ref)), timeout=60
    )
    return status.image.repo_tags[0] if status.image.repo_tags else ref
