"""Helpers for the pod and container end-to-end tests.

``Pods`` creates pods and containers through a daemon's CRI socket, removes
them at the end, and then checks that nothing is left behind: the CRI lists
none of its pods any more and, on the docker adapter, there is no Docker
container with the daemon's instance label, no pinned network namespace, no
checkpoint file, no CNI IP allocation. The contract suite uses it on both
adapters; the rest of this module (Docker inspection, CNI setup) is for the
docker adapter's own tests.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import grpc
import pytest

from crictl_tests import harness
from crictl_tests.harness import BUSYBOX_IMAGE, WEBSERVER_IMAGE, Daemon, write_cni_conf
from pycrid.adapters.docker.naming import INSTANCE_LABEL, instance_id
from pycrid.api.cri import api_pb2 as cri

DOCS_CONFLIST = harness.REPO_ROOT / "docs" / "cni" / "10-pycrid-bridge.conflist"
TEST_BRIDGE = "pycrid-dkt0"
TEST_SUBNET = "10.89.77.0/24"
CALL_TIMEOUT = 60


def docker_ids(daemon: Daemon) -> list[str]:
    """IDs of the Docker containers that carry the daemon's instance label."""
    instance = instance_id(daemon.config["state_dir"])
    out = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", f"label={INSTANCE_LABEL}={instance}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def docker_inspect(container_id: str) -> dict[str, Any]:
    out = subprocess.run(
        ["docker", "inspect", container_id], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)[0]


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file() or p.is_symlink()] if path.exists() else []


def mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def cni_conf_dir(root: Path) -> tuple[Path, Path]:
    """A CNI config dir for the docker adapter's CNI-mode tests: (conf_dir, ipam_dir)."""
    return write_cni_conf(root, TEST_BRIDGE, TEST_SUBNET)


def conmons_of(run_dir: Path) -> list[int]:
    """conmon processes whose bundle is under ``run_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"conmon") and any(str(run_dir).encode() in a for a in argv):
            found.append(int(entry.name))
    return found


def ip_allocations(ipam_dir: Path) -> list[str]:
    """host-local's allocation files (one per IP in use)."""
    return [
        p.name
        for p in files_under(ipam_dir)
        if p.name not in ("lock",) and not p.name.startswith("last_reserved_ip")
    ]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def fetch(url: str) -> bytes:
    """The body at ``url``; b"" while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except OSError:
        return b""


def rpc_code(call: Callable[[], Any]) -> grpc.StatusCode:
    """The status code a call fails with (OK when it succeeds).

    UNIMPLEMENTED is raised, not returned: an adapter that lacks the call
    fails the test with that error, which is what the contract suite's
    expected failures wait for.
    """
    try:
        call()
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise
        return e.code()
    return grpc.StatusCode.OK


class Pods:
    """Creates pods and containers on a daemon and cleans up after a test."""

    def __init__(self, daemon: Daemon, ipam_dir: Path | None = None) -> None:
        self.daemon = daemon
        self.ipam_dir = ipam_dir
        self.sandboxes: list[str] = []
        self.ran: list[str] = []  # every pod run here, removed or not
        self.log_root = Path(tempfile.mkdtemp(prefix="pycrid-logs-"))

    @property
    def rt(self) -> Any:
        return self.daemon.runtime

    def pull(self, image: str) -> str:
        response = self.daemon.images.PullImage(
            cri.PullImageRequest(image=cri.ImageSpec(image=image)), timeout=CALL_TIMEOUT
        )
        return response.image_ref

    def sandbox_config(self, name: str = "pod", **fields: Any) -> cri.PodSandboxConfig:
        uid = uuid.uuid4().hex
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=name, namespace="pycrid-e2e", uid=uid),
            log_directory=str(self.log_root / uid),
            **fields,
        )
        return config

    def run(self, config: cri.PodSandboxConfig | None = None, handler: str = "") -> str:
        config = config or self.sandbox_config()
        response = self.rt.RunPodSandbox(
            cri.RunPodSandboxRequest(config=config, runtime_handler=handler), timeout=CALL_TIMEOUT
        )
        self.sandboxes.append(response.pod_sandbox_id)
        self.ran.append(response.pod_sandbox_id)
        return response.pod_sandbox_id

    def sandbox_status(self, sandbox_id: str, verbose: bool = False) -> Any:
        return self.rt.PodSandboxStatus(
            cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose),
            timeout=CALL_TIMEOUT,
        )

    def container_config(
        self,
        name: str,
        image: str = BUSYBOX_IMAGE,
        *,
        command: list[str] | None = None,
        **fields: Any,
    ) -> cri.ContainerConfig:
        return cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name),
            image=cri.ImageSpec(image=image),
            command=command if command is not None else ["sh", "-c", "sleep 3600"],
            log_path=f"{name}.log",
            **fields,
        )

    def create(
        self,
        sandbox_id: str,
        config: cri.ContainerConfig,
        sandbox: cri.PodSandboxConfig | None = None,
    ) -> str:
        return self.rt.CreateContainer(
            cri.CreateContainerRequest(
                pod_sandbox_id=sandbox_id,
                config=config,
                sandbox_config=sandbox or cri.PodSandboxConfig(),
            ),
            timeout=CALL_TIMEOUT,
        ).container_id

    def start(self, container_id: str) -> None:
        self.rt.StartContainer(
            cri.StartContainerRequest(container_id=container_id), timeout=CALL_TIMEOUT
        )

    def run_container(self, sandbox_id: str, config: cri.ContainerConfig) -> str:
        container_id = self.create(sandbox_id, config)
        self.start(container_id)
        return container_id

    def run_shell_and_web(self, name: str) -> dict[str, str]:
        """A new pod with a shell container and a web server: the IDs by role.

        The roles are "sandbox", "shell" (busybox, sleeping) and "web" (the
        web server image, serving /www on port 80).
        """
        sandbox_id = self.run(self.sandbox_config(name))
        shell = self.run_container(sandbox_id, self.container_config("shell"))
        web = self.run_container(
            sandbox_id, self.container_config("web", WEBSERVER_IMAGE, command=[])
        )
        return {"sandbox": sandbox_id, "shell": shell, "web": web}

    def status(self, container_id: str, verbose: bool = False) -> cri.ContainerStatus:
        return self.rt.ContainerStatus(
            cri.ContainerStatusRequest(container_id=container_id, verbose=verbose),
            timeout=CALL_TIMEOUT,
        )

    def exec(self, container_id: str, *cmd: str, timeout: int = 20) -> cri.ExecSyncResponse:
        return self.rt.ExecSync(
            cri.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout),
            timeout=CALL_TIMEOUT,
        )

    def wait_exited(self, container_id: str, timeout: float = 60) -> cri.ContainerStatus:
        return wait_for(
            lambda: (
                status
                if (status := self.status(container_id).status).state == cri.CONTAINER_EXITED
                else None
            ),
            f"container {container_id[:13]} to exit",
            timeout,
        )

    def remove_all(self) -> None:
        for sandbox_id in self.sandboxes:
            self.rt.StopPodSandbox(
                cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=CALL_TIMEOUT
            )
            self.rt.RemovePodSandbox(
                cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=CALL_TIMEOUT
            )
        self.sandboxes.clear()

    def leftovers(self) -> dict[str, list]:
        """What a test left behind, by kind (every list should be empty).

        Pods that were run here and are no longer tracked (removed) must be
        gone from ListPodSandbox on any adapter; the rest is what the docker
        adapter leaves on the host when it forgets something.
        """
        found: dict[str, list] = {}
        if gone := [s for s in self.ran if s not in self.sandboxes]:
            listed = self.rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=CALL_TIMEOUT)
            found["pods still listed"] = [p.id for p in listed.items if p.id in gone]
        if self.daemon.config["adapter"] == "docker":
            found.update(self._docker_leftovers())
        else:
            found.update(self._oci_leftovers())
        ipam_dir = self.ipam_dir or self.daemon.root / "ipam"
        found["ip allocations"] = ip_allocations(ipam_dir)
        return {kind: items for kind, items in found.items() if items}

    def _docker_leftovers(self) -> dict[str, list]:
        state = Path(self.daemon.config["state_dir"]) / "docker"
        run = Path(self.daemon.config["run_dir"]) / "docker"
        return {
            "docker containers": docker_ids(self.daemon),
            "sandbox checkpoints": files_under(state / "sandboxes"),
            "container checkpoints": files_under(state / "containers"),
            "log checkpoints": files_under(state / "logs"),
            "run files": files_under(run),
            "netns mounts": mounts_under(run),
        }

    def _oci_leftovers(self) -> dict[str, list]:
        state = Path(self.daemon.config["state_dir"]) / "oci" / "runtime"
        run = Path(self.daemon.config["run_dir"]) / "oci"
        return {
            "records and root filesystems": files_under(state),
            "run files": files_under(run),
            "mounts": mounts_under(run) + mounts_under(state),
            "conmon processes": conmons_of(run),
        }

    def close(self) -> None:
        try:
            self.remove_all()
            left = self.leftovers()
            assert left == {}, f"left behind: {left}\n{self.daemon.log_tail()}"
        finally:
            shutil.rmtree(self.log_root, ignore_errors=True)


@contextlib.contextmanager
def open_pods(daemon: Daemon, *images: str, ipam_dir: Path | None = None) -> Iterator[Pods]:
    """``Pods`` on ``daemon`` with ``images`` pulled; at the end, removed and checked."""
    pods = Pods(daemon, ipam_dir=ipam_dir)
    try:
        for image in images:
            pods.pull(image)
        yield pods
    finally:
        pods.close()


def pods_fixture(*images: str, scope: Literal["function", "module"] = "function") -> Any:
    """A ``pods`` fixture: ``open_pods`` on the module's docker daemon, ``images`` pulled.

    A test module takes it as ``pods = pods_fixture(...)``.
    """

    @pytest.fixture(scope=scope, name="pods")
    def fixture(docker_daemon: Daemon) -> Iterator[Pods]:
        with open_pods(docker_daemon, *images) as pods:
            yield pods

    return fixture


@contextlib.contextmanager
def cni_pods(start: Callable[..., Daemon], *images: str) -> Iterator[Pods]:
    """``open_pods`` on a daemon of its own in "cni" mode, on the shipped conflist.

    ``start`` is the ``daemon_factory`` fixture; ``pods.ipam_dir`` holds the
    IP allocations.
    """
    with tempfile.TemporaryDirectory(prefix="pycrid-cni-") as root:
        conf_dir, ipam_dir = cni_conf_dir(Path(root))
        daemon = start("docker", {"network": {"mode": "cni", "cni_conf_dir": str(conf_dir)}})
        with open_pods(daemon, *images, ipam_dir=ipam_dir) as pods:
            yield pods
