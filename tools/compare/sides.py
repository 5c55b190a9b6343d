"""The two sides of a comparison: a CRI socket, or an adapter started here.

``adapter:docker`` and ``adapter:oci`` start a child ``pycrid serve`` in a
private temporary directory (socket, state, run dir, CNI bridge) and stop it
afterwards; ``unix:///path`` connects to a runtime that is already serving.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
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

ADAPTER_PREFIX = "adapter:"
ADAPTERS = ("docker", "oci")
# The oci side's pods get a bridge and subnet that nothing else on the node uses.
OCI_BRIDGE = "pycrid-cmp0"
OCI_SUBNET = "10.89.95.0/24"
START_TIMEOUT = 60.0


class SideError(Exception):
    """A side could not be parsed or started."""


@dataclass
class Side:
    """One runtime under comparison and the stubs that reach it."""

    spec: str
    label: str
    root: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    channel: grpc.Channel | None = None
    runtime: Any = None
    images: Any = None
    private_dirs: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        if self.root is not None:
            return f"unix://{self.root}/pycrid.sock"
        return self.spec

    def log_tail(self, lines: int = 20) -> str:
        if self.root is None:
            return ""
        try:
            text = (self.root / "daemon.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def parse_side(spec: str, label: str) -> Side:
    if spec.startswith(ADAPTER_PREFIX):
        name = spec.removeprefix(ADAPTER_PREFIX)
        if name not in ADAPTERS:
            raise SideError(f"{spec}: the adapters are {', '.join(ADAPTERS)}")
        return Side(spec=spec, label=label)
    if spec.startswith("unix://") and len(spec) > len("unix://"):
        return Side(spec=spec, label=label)
    raise SideError(f"{spec}: a side is unix:///path or adapter:docker or adapter:oci")


def adapter_config(root: Path, adapter: str, pause_image: str) -> dict[str, Any]:
    """The generated config of an adapter side, before ``--adapter-config`` is laid over it."""
    network: dict[str, Any] = {"mode": "docker"}
    if adapter == "oci":
        conf_dir, _ = privateconfig.write_cni_conf(root, OCI_BRIDGE, OCI_SUBNET)
        network = {"mode": "cni", "cni_conf_dir": str(conf_dir)}
    return privateconfig.private_config(root, adapter, pause_image=pause_image, network=network)


def start(side: Side, pause_image: str, extra: dict[str, Any]) -> None:
    """Connect to the side, starting its daemon first when it is an adapter."""
    if side.spec.startswith(ADAPTER_PREFIX):
        _start_daemon(side, pause_image, extra)
    _connect(side)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            side.runtime.Version(cri.VersionRequest(), timeout=2)
            return
        except grpc.RpcError as e:
            if side.process is not None and side.process.poll() is not None:
                raise SideError(f"{side.spec} exited at start:\n{side.log_tail()}") from e
            if time.monotonic() > deadline or side.process is None:
                raise SideError(f"{side.spec} does not answer: {e.details()}") from e
            time.sleep(0.1)


def _start_daemon(side: Side, pause_image: str, extra: dict[str, Any]) -> None:
    adapter = side.spec.removeprefix(ADAPTER_PREFIX)
    # Short: a Unix socket path has at most 107 bytes.
    side.root = Path(tempfile.mkdtemp(prefix=f"pycrid-cmp-{adapter}-", dir="/tmp"))
    config = privateconfig.merge(adapter_config(side.root, adapter, pause_image), extra)
    config["listen"] = side.endpoint
    side.private_dirs = [str(side.root)]
    config_path = side.root / "config.toml"
    config_path.write_text(tomli_w.dumps(config))
    with open(side.root / "daemon.log", "ab") as log:
        side.process = subprocess.Popen(
            [sys.executable, "-m", "pycrid.tools.cli", "serve", "--config", str(config_path)],
            stdout=log,
            stderr=log,
            # Its own session: a Ctrl-C reaches compare, which cleans up first.
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    socket_path = side.root / "pycrid.sock"
    while not socket_path.exists():
        if side.process.poll() is not None:
            raise SideError(f"{side.spec} exited at start:\n{side.log_tail()}")
        if time.monotonic() > deadline:
            raise SideError(f"{side.spec} did not start in {START_TIMEOUT:g}s")
        time.sleep(0.05)


def _connect(side: Side) -> None:
    side.channel = grpc.insecure_channel(
        side.endpoint, options=[("grpc.max_receive_message_length", 32 * 1024 * 1024)]
    )
    side.runtime = api_pb2_grpc.RuntimeServiceStub(side.channel)
    side.images = api_pb2_grpc.ImageServiceStub(side.channel)


def stop(side: Side) -> None:
    """Close the channel; stop the daemon started here and remove its directory."""
    if side.channel is not None:
        side.channel.close()
        side.channel = None
    if side.process is not None and side.process.poll() is None:
        side.process.send_signal(signal.SIGTERM)
        try:
            side.process.wait(30)
        except subprocess.TimeoutExpired:
            side.process.kill()
            side.process.wait()
    if side.root is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(side.root)
