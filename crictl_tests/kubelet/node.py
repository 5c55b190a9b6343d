"""A node driven by a real kubelet: pycrid, the v1alpha2 relay and kubelet in standalone mode.

kubelet runs without an API server: its pods are static pods, read from a
manifest directory the tests write into. Everything the tests check is seen
through kubelet's own servers (the read-only port's ``/pods`` and
``/stats/summary``, the authenticated port's ``/exec``, ``/attach``,
``/portForward``, ``/containerLogs`` and ``/metrics``) and its log; pycrid's
CRI socket is used only to look behind kubelet (container PIDs, the backend).

Every port is picked free at start, so a node never meets another kubelet on
the machine; the pods get a CNI bridge and subnet of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from crictl_tests import harness
from crictl_tests.dockerpods import Pods, ip_allocations
from crictl_tests.harness import Daemon
from pycrid.adapters.docker.naming import SANDBOX_ID_LABEL
from pycrid.api.cri import api_pb2 as cri
from pycrid.server import privateconfig

NODE_NAME = "pycrid-node"
NAMESPACE = "default"
RELAY = Path(__file__).with_name("relay.py")
# Each adapter's pods get a bridge and subnet no other suite uses.
NETWORKS = {
    "docker": ("pycrid-kbd0", "10.89.86.0/24"),
    "oci": ("pycrid-kbo0", "10.89.87.0/24"),
}
CGROUP_ROOT = Path("/sys/fs/cgroup")
# kubelet 1.20 keeps pod logs here, whatever its root dir.
POD_LOGS = Path("/var/log/pods")
CONTAINER_LOGS = Path("/var/log/containers")
# The registries whose images the tests pull (through the test registry) and may lose.
SUITE_REGISTRIES = tuple(f"{host}/" for host in harness.MIRRORED_REGISTRIES)
# A kubelet log line: severity, date, time, pid, file:line] message.
LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.-]+\.go):\d+\] (.*)$")
# Where kubelet reports a CRI call that failed.
CRI_CALLERS = ("remote_runtime.go", "remote_image.go")
# kubelet removing a container, and asking a status that is not found.
REMOVED_CONTAINER = re.compile(r"RemoveContainer - Container ID: (\w+)")
STATUS_NOT_FOUND = re.compile(r'ContainerStatus "(\w+)" from runtime service failed: .*NotFound')
CALL_TIMEOUT = 60

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def insecure_tls() -> ssl.SSLContext:
    """kubelet serves 10250 with a self-signed certificate of its own."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def wait_for(check: Callable[[], T], what: str, timeout: float, interval: float = 0.5) -> T:
    """The first truthy value of ``check()``; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        with contextlib.suppress(OSError, KeyError, IndexError, ValueError):
            last = check()
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)


@dataclass
class CriError:
    """An ``E`` line of kubelet's log that reports a failed CRI call."""

    line: str

    def matches(self, patterns: list[str]) -> bool:
        return any(re.search(p, self.line) for p in patterns)


@dataclass
class KubeletNode:
    """pycrid on one adapter, the relay, and kubelet, all under ``root``."""

    adapter: str
    root: Path
    kubelet_bin: str
    daemon: Daemon | None = None
    relay: subprocess.Popen[bytes] | None = None
    kubelet: subprocess.Popen[bytes] | None = None
    api_port: int = field(default_factory=free_port)
    read_only_port: int = field(default_factory=free_port)
    healthz_port: int = field(default_factory=free_port)
    kubelet_settings: dict[str, Any] = field(default_factory=dict)
    host_port: int = 0
    _log_checked: int = 0
    _removed: set[str] = field(default_factory=set)

    # Layout.

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_log(self) -> Path:
        return self.root / "kubelet.log"

    @property
    def relay_socket(self) -> Path:
        return self.root / "relay.sock"

    @property
    def ipam_dir(self) -> Path:
        return self.root / "ipam"

    @property
    def host_dir(self) -> Path:
        """A directory of the host that pods get as a hostPath volume."""
        return self.root / "host"

    # Starting and stopping.

    def start(self) -> None:
        for directory in (self.manifests, self.kubelet_root, self.host_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.start_pycrid()
        self.start_relay()
        self.start_kubelet()

    def start_pycrid(self) -> None:
        config = harness.base_config(self.root, self.adapter)
        bridge, subnet = NETWORKS[self.adapter]
        conf_dir, ipam_dir = privateconfig.write_cni_conf(self.root, bridge, subnet)
        assert ipam_dir == self.ipam_dir
        config["network"] = {"mode": "cni", "cni_conf_dir": str(conf_dir)}
        self.daemon = Daemon(root=self.root, config=config)
        self.daemon.start()

    def start_relay(self) -> None:
        assert self.daemon is not None
        log = open(self.root / "relay.log", "ab")  # noqa: SIM115 - handed to the child
        self.relay = subprocess.Popen(
            [
                sys.executable,
                str(RELAY),
                "--listen",
                f"unix://{self.relay_socket}",
                "--target",
                self.daemon.endpoint,
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        wait_for(self.relay_socket.exists, "the relay's socket", 30, 0.05)

    def kubelet_config(self) -> dict[str, Any]:
        """kubelet's configuration file: the settings of a standalone node, and the tests'."""
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "staticPodPath": str(self.manifests),
            "address": "127.0.0.1",
            "port": self.api_port,
            "readOnlyPort": self.read_only_port,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": True,
            "cgroupRoot": "/",
            "failSwapOn": False,
            "syncFrequency": "10s",
            "fileCheckFrequency": "5s",
            # No eviction: the suite's own node has whatever disk it has.
            "evictionHard": {},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # Rotation is tested: small files, and enough of them that none is
            # deleted while the test reads them back.
            "containerLogMaxSize": "4Ki",
            "containerLogMaxFiles": 50,
        }
        return privateconfig.merge(config, self.kubelet_settings)

    def start_kubelet(self) -> None:
        config_path = self.root / "kubelet.json"
        config_path.write_text(json.dumps(self.kubelet_config(), indent=2))
        endpoint = f"unix://{self.relay_socket}"
        log = open(self.kubelet_log, "ab")  # noqa: SIM115 - handed to the child
        self.kubelet = subprocess.Popen(
            [
                self.kubelet_bin,
                f"--config={config_path}",
                "--container-runtime=remote",
                f"--container-runtime-endpoint={endpoint}",
                f"--image-service-endpoint={endpoint}",
                f"--root-dir={self.kubelet_root}",
                f"--cert-dir={self.root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                "--enforce-node-allocatable=",
                "--v=2",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        wait_for(self.healthz, "kubelet's /healthz", 60)

    def stop_kubelet(self) -> None:
        if self.kubelet is not None and self.kubelet.poll() is None:
            self.kubelet.terminate()
            try:
                self.kubelet.wait(30)
            except subprocess.TimeoutExpired:
                self.kubelet.kill()
                self.kubelet.wait()
        self.kubelet = None

    def restart_kubelet(self, **settings: Any) -> None:
        self.stop_kubelet()
        self.kubelet_settings = privateconfig.merge(self.kubelet_settings, settings)
        self.start_kubelet()

    def stop(self) -> None:
        """Stop kubelet, remove every pod through the CRI, stop the rest, and clean up."""
        self.stop_kubelet()
        try:
            if self.daemon is not None and self.daemon.process is not None:
                self.remove_all_pods()
        finally:
            if self.relay is not None and self.relay.poll() is None:
                self.relay.terminate()
                self.relay.wait(10)
            if self.daemon is not None:
                self.daemon.stop()
            unmount_under(self.kubelet_root)
            remove_kubepods_cgroups()
            remove_pod_logs()

    def remove_all_pods(self) -> None:
        assert self.daemon is not None
        runtime = self.daemon.runtime
        for pod in runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=CALL_TIMEOUT).items:
            runtime.StopPodSandbox(
                cri.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=CALL_TIMEOUT
            )
            runtime.RemovePodSandbox(
                cri.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=CALL_TIMEOUT
            )

    def leftovers(self) -> dict[str, list]:
        """What the backend still holds after ``stop`` (every list should be empty)."""
        assert self.daemon is not None
        pods = Pods(self.daemon, ipam_dir=self.ipam_dir)
        try:
            found = pods._docker_leftovers() if self.adapter == "docker" else pods._oci_leftovers()
        finally:
            shutil.rmtree(pods.log_root, ignore_errors=True)  # made by Pods, used by none here
        found["ip allocations"] = ip_allocations(self.ipam_dir)
        found["mounts under kubelet's root"] = [
            m for m in mount_points() if m.startswith(f"{self.kubelet_root}/")
        ]
        return {kind: items for kind, items in found.items() if items}

    def traces_of(self, sandbox_id: str) -> list[str]:
        """What the backend and the host still hold of one removed pod."""
        assert self.daemon is not None
        found = [m for m in mount_points() if sandbox_id in m]
        for top in (self.daemon.config["state_dir"], self.daemon.config["run_dir"]):
            found += [str(p) for p in Path(top).rglob(f"*{sandbox_id}*")]
        if self.adapter == "docker":
            for query in (f"id={sandbox_id}", f"label={SANDBOX_ID_LABEL}={sandbox_id}"):
                found += subprocess.run(
                    ["docker", "ps", "-aq", "--filter", query],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
        return found

    @contextlib.contextmanager
    def foreign_images_kept(self) -> Iterator[None]:
        """Keep dockerd's images that are not the suite's from kubelet's image GC.

        The docker adapter lists every image dockerd holds, so a GC with low
        thresholds would remove a user's own images too; they are saved first
        and loaded back after. The oci adapter's store is the daemon's own.
        """
        if self.adapter != "docker":
            yield
            return
        names = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        foreign = [n for n in names if "<none>" not in n and not n.startswith(SUITE_REGISTRIES)]
        archive = self.root / "foreign-images.tar"
        if foreign:
            subprocess.run(["docker", "save", "-o", str(archive), *foreign], check=True)
        try:
            yield
        finally:
            if foreign:
                subprocess.run(["docker", "load", "-q", "-i", str(archive)], check=True)
                archive.unlink()

    # kubelet's servers.

    def healthz(self) -> bool:
        return self.http(f"http://127.0.0.1:{self.healthz_port}/healthz") == b"ok"

    def http(self, url: str, timeout: float = 10) -> bytes:
        context = insecure_tls() if url.startswith("https:") else None
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.read()

    def read_only(self, path: str) -> Any:
        return json.loads(self.http(f"http://127.0.0.1:{self.read_only_port}{path}"))

    def api_url(self, path: str, scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.api_port}{path}"

    def api(self, path: str) -> bytes:
        return self.http(self.api_url(path))

    def pods(self) -> dict[str, dict[str, Any]]:
        """kubelet's pods by their manifest's name (kubelet adds ``-<node>``)."""
        items = self.read_only("/pods").get("items") or []
        return {p["metadata"]["name"].removesuffix(f"-{NODE_NAME}"): p for p in items}

    def pod(self, name: str) -> dict[str, Any]:
        return self.pods()[name]

    def container_logs(self, pod: str, container: str, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        path = f"/containerLogs/{NAMESPACE}/{full_name(pod)}/{container}"
        return self.api(path + (f"?{params}" if params else "")).decode(errors="replace")

    def metric(self, name: str) -> float:
        """The sum of every series of one metric on kubelet's /metrics."""
        total = 0.0
        for line in self.api("/metrics").decode().splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    # Static pods.

    def write_manifest(self, pod: dict[str, Any]) -> Path:
        """Write (or replace) a static pod; kubelet ignores files that begin with a dot."""
        path = self.manifests / f"{pod['metadata']['name']}.json"
        staging = self.manifests / f".{path.name}"
        staging.write_text(json.dumps(pod, indent=2))
        os.replace(staging, path)
        return path

    def remove_manifest(self, name: str) -> None:
        (self.manifests / f"{name}.json").unlink()

    def wait_pod(
        self, name: str, check: Callable[[dict[str, Any]], Any], what: str, timeout: float = 90
    ) -> Any:
        return wait_for(lambda: check(self.pod(name)), f"pod {name}: {what}", timeout)

    # pycrid's view.

    def cri_containers(self) -> list[Any]:
        assert self.daemon is not None
        return list(
            self.daemon.runtime.ListContainers(
                cri.ListContainersRequest(), timeout=CALL_TIMEOUT
            ).containers
        )

    def cri_sandboxes(self) -> list[Any]:
        assert self.daemon is not None
        return list(
            self.daemon.runtime.ListPodSandbox(
                cri.ListPodSandboxRequest(), timeout=CALL_TIMEOUT
            ).items
        )

    def container_pid(self, container_id: str) -> int:
        assert self.daemon is not None
        status = self.daemon.runtime.ContainerStatus(
            cri.ContainerStatusRequest(container_id=container_id, verbose=True),
            timeout=CALL_TIMEOUT,
        )
        return int(json.loads(status.info["info"])["pid"])

    # kubelet's log.

    def cri_errors(self) -> list[CriError]:
        """The CRI calls kubelet reported failed since the last look."""
        with open(self.kubelet_log, "rb") as log:
            log.seek(self._log_checked)
            text = log.read()
        self._log_checked += len(text)
        found = []
        for line in text.decode(errors="replace").splitlines():
            if removed := REMOVED_CONTAINER.search(line):
                self._removed.add(removed[1])
            match = LOG_LINE.match(line)
            if not match or match[1] != "E":
                continue
            if match[2] not in CRI_CALLERS and "rpc error" not in line:
                continue
            # kubelet 1.20 may delete a dead container twice (its container GC and
            # its pod worker both ask); the second asks for the status of a
            # container it removed itself, and NotFound is the right answer.
            asked = STATUS_NOT_FOUND.search(line)
            if asked and asked[1] in self._removed:
                continue
            found.append(CriError(line))
        return found

    def log_tail(self, lines: int = 30) -> str:
        text = self.kubelet_log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def full_name(pod: str) -> str:
    return f"{pod}-{NODE_NAME}"


def container_id(pod: dict[str, Any], container: str, init: bool = False) -> str:
    """The runtime's ID of a container in kubelet's pod status ("<runtime>://<id>")."""
    statuses = pod["status"].get("initContainerStatuses" if init else "containerStatuses", [])
    for status in statuses:
        if status["name"] == container:
            return status.get("containerID", "").partition("://")[2]
    raise KeyError(container)


def container_status(pod: dict[str, Any], container: str) -> dict[str, Any]:
    for status in pod["status"].get("containerStatuses", []):
        if status["name"] == container:
            return status
    raise KeyError(container)


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def remove_pod_logs() -> None:
    """Remove the node's pod log directories and their links (kubelet's fixed places)."""
    for path in POD_LOGS.glob(f"*_*-{NODE_NAME}_*"):
        shutil.rmtree(path, ignore_errors=True)
    for link in CONTAINER_LOGS.glob(f"*-{NODE_NAME}_*.log"):
        link.unlink(missing_ok=True)


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def unmount_under(path: Path) -> None:
    """Unmount everything at or below ``path``, deepest first (kubelet leaves its mounts)."""
    prefix = f"{path}/"
    for point in sorted(
        (m for m in mount_points() if m == str(path) or m.startswith(prefix)),
        key=len,
        reverse=True,
    ):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def remove_kubepods_cgroups() -> None:
    """Remove the empty QoS and pod cgroups kubelet made (it leaves them when it stops)."""
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / "kubepods"
        if not top.is_dir() or top.is_symlink():
            continue
        for directory, _, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def cgroup_paths(pid: int) -> dict[str, str]:
    """The process's cgroup path in each v1 hierarchy, by controller."""
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def read_cgroup(controller: str, path: str, name: str) -> str:
    hierarchy = CGROUP_ROOT / controller
    if not hierarchy.exists():  # cpu and cpuacct may share a hierarchy
        hierarchy = CGROUP_ROOT / "cpu,cpuacct"
    return (hierarchy / path.lstrip("/") / name).read_text().strip()


@contextlib.contextmanager
def kubelet_node(adapter: str, kubelet_bin: str) -> Iterator[KubeletNode]:
    """A started node; at the end everything is stopped and removed, and leaks fail the test."""
    root = harness.new_root()
    node = KubeletNode(adapter, root, kubelet_bin)
    try:
        node.start()
        yield node
    except BaseException:
        print(f"--- kubelet log:\n{node.log_tail(60)}" if node.kubelet_log.exists() else "")
        if node.daemon is not None:
            print(f"--- pycrid log:\n{node.daemon.log_tail(60)}")
        raise
    finally:
        try:
            node.stop()
            left = node.leftovers() if node.daemon is not None else {}
            assert left == {}, f"left behind on {adapter}: {left}"
        finally:
            keep_logs(root, adapter)
            shutil.rmtree(root, ignore_errors=True)


def keep_logs(root: Path, adapter: str) -> None:
    """Keep the last run's logs of each adapter's node for a look after the tests."""
    kept = Path(f"/tmp/pycrid-kubelet-logs/{adapter}")
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir(parents=True)
    for name in ("kubelet.log", "daemon.log", "relay.log", "kubelet.json", "config.toml"):
        with contextlib.suppress(OSError):
            shutil.copy(root / name, kept / name)
