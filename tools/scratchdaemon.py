"""A pycrid daemon on a scratch root, driven over gRPC.

Every daemon gets its own socket, state and run directories under one
temporary directory, and a config file that sends the upstream registries of
the test images to the local registry (scripts/testenv.sh fills it). The
end-to-end tests and the benchmarks start their daemons with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import tomli_w

from pycrid.api.cri import api_pb2 as cri
from pycrid.api.cri import api_pb2_grpc
from pycrid.server import privateconfig

LOCAL_REGISTRY = "127.0.0.1:5000"
LOCAL_MIRROR = f"http://{LOCAL_REGISTRY}"
MIRRORED_REGISTRIES = ("registry.k8s.io", "gcr.io", "k8s.gcr.io", "docker.io")

BUSYBOX_IMAGE = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
WEBSERVER_IMAGE = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
DOCKER_SOCKET = Path("/var/run/docker.sock")


def docker_answers() -> bool:
    """True when a Docker engine answers on the default socket."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(DOCKER_SOCKET))
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        return b" 200 " in s.recv(64)
    return False


def registry_answers() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5000), 2) as s:
        s.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
        return b" 200 " in s.recv(64)
    return False


OCI_BRIDGE = "pycrid-oct0"
OCI_SUBNET = "10.89.81.0/24"


def write_cni_conf(root: Path, bridge_name: str, subnet: str) -> tuple[Path, Path]:
    """A CNI config dir with the shipped conflist on a bridge and subnet of the tests' own.

    Returns (conf_dir, ipam_dir): the bridge and subnet are private to the
    tests that use them, so that suites never share addresses.
    """
    return privateconfig.write_cni_conf(root, bridge_name, subnet)


def base_config(root: Path, adapter: str) -> dict[str, Any]:
    # Only the local registry is ever contacted: the real ones are not tried.
    registries: dict[str, Any] = {
        host: {"mirrors": [LOCAL_MIRROR], "upstream": False} for host in MIRRORED_REGISTRIES
    }
    registries[LOCAL_REGISTRY] = {"insecure": True}
    network: dict[str, Any] = {"mode": "docker"}
    if adapter == "oci":
        # The oci adapter has no Docker network: pods get the shipped bridge
        # conflist, on a bridge and subnet of these tests' own.
        conf_dir, _ = write_cni_conf(root, OCI_BRIDGE, OCI_SUBNET)
        network = {"mode": "cni", "cni_conf_dir": str(conf_dir)}
    config = privateconfig.private_config(
        root, adapter, pause_image=PAUSE_IMAGE, network=network, log_level="debug"
    )
    config["registries"] = registries
    return config


merge = privateconfig.merge


@dataclass
class Daemon:
    """A pycrid daemon process and gRPC stubs connected to it."""

    root: Path
    config: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None
    channel: grpc.Channel | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Set in the daemon's environment on top of the caller's own (PYCRID_FAULT_POINT)."""
    runtime: api_pb2_grpc.RuntimeServiceStub = field(init=False)
    images: api_pb2_grpc.ImageServiceStub = field(init=False)

    @property
    def endpoint(self) -> str:
        return self.config["listen"]

    @property
    def socket_path(self) -> Path:
        return Path(self.endpoint.removeprefix("unix://"))

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    def start(self, timeout: float = 30.0) -> None:
        self.config_path.write_text(tomli_w.dumps(self.config))
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pycrid.tools.cli", "serve", "--config", str(self.config_path)],
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pycrid exited at start:\n{self.log_tail()}")
            if self.socket_path.exists():
                self._connect()
                with contextlib.suppress(grpc.RpcError):
                    self.runtime.Version(cri.VersionRequest(), timeout=2)
                    return
            time.sleep(0.05)
        raise RuntimeError(f"pycrid did not start in {timeout}s:\n{self.log_tail()}")

    def _connect(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.channel = grpc.insecure_channel(
            self.endpoint,
            options=[("grpc.max_receive_message_length", 32 * 1024 * 1024)],
        )
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the daemon and wait for it; returns its exit status."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """``kill -9``: the daemon gets no chance to clean up."""
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def new_root() -> Path:
    """A short temporary directory: Unix socket paths are limited to 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="pycrid-e2e-", dir="/tmp"))


def start_daemon(adapter: str = "docker", extra: dict[str, Any] | None = None) -> Daemon:
    root = new_root()
    daemon = Daemon(root=root, config=merge(base_config(root, adapter), extra or {}))
    try:
        daemon.start()
    except BaseException:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return daemon


def remove_root(daemon: Daemon) -> None:
    shutil.rmtree(daemon.root, ignore_errors=True)
