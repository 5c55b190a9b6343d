"""Helpers shared by the benchmarks: a daemon of their own, pods, timings, memory.

The benchmarks run as scripts (``python bench/<name>.py``), so this module is
imported as ``common`` from the scripts' own directory.
"""

from __future__ import annotations

import contextlib
import math
import signal
import statistics
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrid.api.cri import api_pb2 as cri
from pycrid.tools import scratchdaemon

TIMEOUT = 120
# A bridge and subnet of the benchmarks' own, so that they never share
# addresses with a test suite running on the same machine.
BENCH_BRIDGE = "pycrid-bch0"
BENCH_SUBNET = "10.89.83.0/24"


def rss_kib(pid: int) -> int:
    """The resident memory (VmRSS) of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Timings:
    """Samples in milliseconds, by call name."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def time(self, name: str, call: Callable[[], Any]) -> Any:
        """Run ``call``, record how long it took under ``name`` and return its result."""
        started = time.perf_counter()
        result = call()
        self.samples[name].append((time.perf_counter() - started) * 1000)
        return result

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def p95(self, name: str) -> float:
        return percentile(self.samples[name], 0.95)


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C is ignored inside: clean-up runs to its end."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def processes(name: str, *needles: str) -> list[int]:
    """PIDs of the processes called ``name`` whose command line holds every needle."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() != name[:15]:
                continue
            line = " ".join(cmdline(int(entry.name)))
            if all(needle in line for needle in needles):
                found.append(int(entry.name))
    return found


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


@contextlib.contextmanager
def bench_daemon(adapter: str, network: str, root: Path) -> Iterator[scratchdaemon.Daemon]:
    """A pycrid daemon on ``adapter`` with busybox pulled; stopped and removed at the end.

    Pods get CNI networking on the benchmarks' own bridge (the docker adapter
    uses Docker's bridge instead with ``network="docker"``); the bridge is
    deleted at the end when it was not there before.
    """
    extra: dict[str, Any] = {"log_level": "info"}
    if adapter == "oci" or network == "cni":
        conf_dir, _ = scratchdaemon.write_cni_conf(root / adapter, BENCH_BRIDGE, BENCH_SUBNET)
        extra["network"] = {"mode": "cni", "cni_conf_dir": str(conf_dir)}
    else:
        extra["network"] = {"mode": network}
    bridge_was_there = link_exists(BENCH_BRIDGE)
    daemon = scratchdaemon.start_daemon(adapter, extra)
    try:
        daemon.images.PullImage(
            cri.PullImageRequest(image=cri.ImageSpec(image=scratchdaemon.BUSYBOX_IMAGE)),
            timeout=TIMEOUT,
        )
        yield daemon
    finally:
        with uninterrupted():
            daemon.stop()
            scratchdaemon.remove_root(daemon)
            if not bridge_was_there and link_exists(BENCH_BRIDGE):
                subprocess.run(["ip", "link", "delete", BENCH_BRIDGE], check=False)


def sleeper_config(
    name: str = "sleeper", attempt: int = 0, image: str = scratchdaemon.BUSYBOX_IMAGE
) -> cri.ContainerConfig:
    """A busybox container that sleeps for an hour."""
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name, attempt=attempt),
        image=cri.ImageSpec(image=image),
        command=["sh", "-c", "sleep 3600"],
        log_path=f"{name}-{attempt}.log",
    )


@dataclass
class Pod:
    """A pod the benchmark runs, with its one container."""

    sandbox_id: str
    container_id: str
    config: cri.PodSandboxConfig


def start_pod(
    rt: Any,
    timings: Timings,
    name: str,
    log_dir: Path,
    image: str = scratchdaemon.BUSYBOX_IMAGE,
) -> Pod:
    """Run a pod with one sleeper container, timing each call and the whole "pod start"."""
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="bench", uid=uuid.uuid4().hex),
        log_directory=str(log_dir),
        # As kubelet sends it: cri-dockerd leaves a pod without it on Docker's bridge.
        linux=cri.LinuxPodSandboxConfig(
            security_context=cri.LinuxSandboxSecurityContext(
                namespace_options=cri.NamespaceOption()
            )
        ),
    )
    started = time.perf_counter()
    sandbox_id = timings.time(
        "RunPodSandbox",
        lambda: (
            rt.RunPodSandbox(
                cri.RunPodSandboxRequest(config=config), timeout=TIMEOUT
            ).pod_sandbox_id
        ),
    )
    container_id = timings.time(
        "CreateContainer",
        lambda: (
            rt.CreateContainer(
                cri.CreateContainerRequest(
                    pod_sandbox_id=sandbox_id,
                    config=sleeper_config(image=image),
                    sandbox_config=config,
                ),
                timeout=TIMEOUT,
            ).container_id
        ),
    )
    timings.time(
        "StartContainer",
        lambda: rt.StartContainer(
            cri.StartContainerRequest(container_id=container_id), timeout=TIMEOUT
        ),
    )
    timings.samples["pod start"].append((time.perf_counter() - started) * 1000)
    return Pod(sandbox_id, container_id, config)


def remove_container(rt: Any, timings: Timings, container_id: str) -> None:
    """Stop (at once) and remove a container, timing both calls."""
    timings.time(
        "StopContainer",
        lambda: rt.StopContainer(
            cri.StopContainerRequest(container_id=container_id, timeout=0), timeout=TIMEOUT
        ),
    )
    timings.time(
        "RemoveContainer",
        lambda: rt.RemoveContainer(
            cri.RemoveContainerRequest(container_id=container_id), timeout=TIMEOUT
        ),
    )


def remove_pod(rt: Any, timings: Timings, pod: Pod) -> None:
    """Remove the pod's container, then stop and remove the pod, timing every call."""
    remove_container(rt, timings, pod.container_id)
    sandbox_id = pod.sandbox_id
    timings.time(
        "StopPodSandbox",
        lambda: rt.StopPodSandbox(
            cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=TIMEOUT
        ),
    )
    timings.time(
        "RemovePodSandbox",
        lambda: rt.RemovePodSandbox(
            cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=TIMEOUT
        ),
    )
