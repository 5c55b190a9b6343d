"""The CRI runtimes a benchmark compares: pycrid's adapters and the two anchors.

A runtime is a socket to talk CRI to, the processes that make it up (the
daemon, and the per-container shims: conmon for the oci adapter,
``containerd-shim-runc-v2`` for containerd and for Docker), and a way to
restart its daemon while its containers keep running.

The anchors are containerd 1.6 with its CRI plugin and cri-dockerd on this
machine's dockerd, started beside pycrid by the scripts in
``../shared/tools/anchors`` (override with ``PYCRID_ANCHORS``); their sockets
are in ``ANCHORS_DIR`` (default ``/tmp/pycrid-anchors``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from common import BENCH_BRIDGE, BENCH_SUBNET, cmdline, link_exists, processes, uninterrupted

from pycrid.api.cri import api_pb2_grpc
from pycrid.tools import scratchdaemon

REPO = Path(__file__).resolve().parent.parent
ANCHOR_SCRIPTS = Path(os.environ.get("PYCRID_ANCHORS", REPO.parent / "shared/tools/anchors"))
ANCHORS_DIR = Path(os.environ.get("ANCHORS_DIR", "/tmp/pycrid-anchors"))
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    # A restarted daemon is found within milliseconds, not after gRPC's 1 s back-off.
    ("grpc.initial_reconnect_backoff_ms", 5),
    ("grpc.min_reconnect_backoff_ms", 5),
    ("grpc.max_reconnect_backoff_ms", 20),
]

PYCRID = ("docker", "oci")
ANCHORS = ("containerd", "cri-dockerd")
REFERENCE = {"oci": "containerd", "docker": "cri-dockerd"}
"""The anchor each adapter is measured against."""

LABELS = {
    "docker": "pycrid docker",
    "oci": "pycrid oci",
    "containerd": "containerd",
    "cri-dockerd": "cri-dockerd",
}


def moby_shims(ids: set[str]) -> list[int]:
    """Docker's shims (one per container) of the containers ``ids``: both Docker-based
    runtimes share dockerd, so its shims are told apart by container ID."""
    found = []
    for pid in processes("containerd-shim-runc-v2", "-namespace moby"):
        argv = cmdline(pid)
        if (
            "-id" in argv
            and argv.index("-id") + 1 < len(argv)
            and argv[argv.index("-id") + 1] in ids
        ):
            found.append(pid)
    return found


def pss_kib(pids: list[int]) -> int:
    """The proportional set size of the processes, summed, in KiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total


def started_at(pid: int) -> float:
    """When process ``pid`` started, in CLOCK_BOOTTIME seconds (10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Runtime:
    """One CRI runtime under measurement."""

    name: str

    def __init__(self, name: str, socket_path: Path) -> None:
        self.name = name
        self.socket_path = socket_path
        self.channel = grpc.insecure_channel(f"unix://{socket_path}", options=CHANNEL_OPTIONS)
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)

    @property
    def label(self) -> str:
        return LABELS[self.name]

    def daemon_pid(self) -> int:
        raise NotImplementedError

    def shim_pids(self, ids: set[str]) -> list[int]:
        """The shims of this runtime's containers; ``ids``: its pod and container IDs."""
        raise NotImplementedError

    def restart(self) -> int:
        """Stop the daemon and start it again in the background; the new daemon's PID.

        Returns as soon as the new process exists, before it answers.
        """
        raise NotImplementedError

    def close(self) -> None:
        self.channel.close()


class PycridRuntime(Runtime):
    """A pycrid daemon of the benchmark's own on one adapter, CNI on the bench bridge."""

    def __init__(self, adapter: str, daemon: scratchdaemon.Daemon) -> None:
        super().__init__(adapter, daemon.socket_path)
        self.daemon = daemon
        self._starter: threading.Thread | None = None

    def daemon_pid(self) -> int:
        assert self.daemon.process is not None
        return self.daemon.process.pid

    def shim_pids(self, ids: set[str]) -> list[int]:
        if self.name == "oci":
            return processes("conmon", str(self.daemon.root))
        return moby_shims(ids)

    def restart(self) -> int:
        self.daemon.stop()
        self.daemon.process = None
        self._starter = threading.Thread(target=self.daemon.start, args=(60.0,), daemon=True)
        self._starter.start()
        while self.daemon.process is None:
            time.sleep(0.001)
        return self.daemon.process.pid

    def settle(self) -> None:
        if self._starter is not None:
            self._starter.join()
            self._starter = None


class AnchorRuntime(Runtime):
    """containerd or cri-dockerd as ``../shared/tools/anchors/start.sh`` runs them."""

    def __init__(self, name: str) -> None:
        super().__init__(name, ANCHORS_DIR / f"{name}.sock")

    @property
    def pid_file(self) -> Path:
        return ANCHORS_DIR / f"{self.name}.pid"

    def daemon_pid(self) -> int:
        return int(self.pid_file.read_text())

    def shim_pids(self, ids: set[str]) -> list[int]:
        if self.name == "containerd":
            return processes("containerd-shim-runc-v2", f"-address {self.socket_path}")
        return moby_shims(ids)

    def restart(self) -> int:
        subprocess.run([ANCHOR_SCRIPTS / "stop.sh", self.name], check=True, capture_output=True)
        self.pid_file.unlink(missing_ok=True)
        subprocess.Popen(
            [ANCHOR_SCRIPTS / "start.sh", self.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                return int(self.pid_file.read_text())
            time.sleep(0.002)
        raise RuntimeError(f"{self.name} did not start again")


def anchors_available() -> bool:
    return (ANCHOR_SCRIPTS / "start.sh").exists()


@contextlib.contextmanager
def anchor(name: str) -> Iterator[AnchorRuntime]:
    """The anchor ``name``, started unless it already runs; stopped at the end if started here."""
    was_running = (ANCHORS_DIR / f"{name}.pid").exists() and (ANCHORS_DIR / f"{name}.sock").exists()
    if not was_running:
        subprocess.run([ANCHOR_SCRIPTS / "start.sh", name], check=True)
    runtime = AnchorRuntime(name)
    try:
        yield runtime
    finally:
        runtime.close()
        if not was_running:
            with uninterrupted():
                subprocess.run([ANCHOR_SCRIPTS / "stop.sh", name, "--clean"], check=False)


@contextlib.contextmanager
def pycrid(adapter: str, root: Path) -> Iterator[PycridRuntime]:
    """A pycrid daemon on ``adapter`` with CNI on the benchmarks' bridge; removed at the end."""
    conf_dir, _ = scratchdaemon.write_cni_conf(root / adapter, BENCH_BRIDGE, BENCH_SUBNET)
    extra = {"log_level": "info", "network": {"mode": "cni", "cni_conf_dir": str(conf_dir)}}
    bridge_was_there = link_exists(BENCH_BRIDGE)
    daemon = scratchdaemon.start_daemon(adapter, extra)
    runtime = PycridRuntime(adapter, daemon)
    try:
        yield runtime
    finally:
        with uninterrupted():
            runtime.settle()
            runtime.close()
            daemon.stop()
            scratchdaemon.remove_root(daemon)
            if not bridge_was_there and link_exists(BENCH_BRIDGE):
                subprocess.run(["ip", "link", "delete", BENCH_BRIDGE], check=False)
