"""Benchmark: pod and container lifecycle on each adapter, at 10, 50 and 100 pods.

For each adapter it starts its own pycrid daemon (CNI networking on a bridge
of its own; the docker adapter may use Docker's bridge with ``--network
docker``), then for each pod count creates that many pods with one busybox
container each, timing every CRI call, lists them repeatedly, and tears
everything down again. Prints, adapters side by side, the median of each
call, the median pod start (RunPodSandbox + CreateContainer +
StartContainer), and the daemon's resident memory with all pods up and
after they are gone. The adapters run one after the other in one process,
so their figures are comparable with each other, not with another run's.

Needs dockerd and the local test registry (``bash scripts/testenv.sh up``):

    python bench/lifecycle.py [--adapters docker,oci] [--counts 10,50,100] [--network cni|docker]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pycrid.api.cri import api_pb2 as cri
from pycrid.crictl_tests import dockerpods, harness

LIST_REPEATS = 20
TIMEOUT = 120


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Timings:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def time(self, name: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = call()
        self.samples[name].append((time.perf_counter() - started) * 1000)
        return result

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])


def run_level(daemon: harness.Daemon, count: int, log_root: Path) -> tuple[Timings, int]:
    rt = daemon.runtime
    timings = Timings()
    pods: list[tuple[str, str]] = []
    for index in range(count):
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(
                name=f"bench-{index}", namespace="bench", uid=uuid.uuid4().hex
            ),
            log_directory=str(log_root / f"pod-{count}-{index}"),
        )
        started = time.perf_counter()
        sandbox_id = timings.time(
            "RunPodSandbox",
            lambda c=config: (
                rt.RunPodSandbox(cri.RunPodSandboxRequest(config=c), timeout=TIMEOUT).pod_sandbox_id
            ),
        )
        container = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name="sleeper"),
            image=cri.ImageSpec(image=harness.BUSYBOX_IMAGE),
            command=["sh", "-c", "sleep 3600"],
            log_path="sleeper.log",
        )
        container_id = timings.time(
            "CreateContainer",
            lambda s=sandbox_id, c=container, p=config: (
                rt.CreateContainer(
                    cri.CreateContainerRequest(pod_sandbox_id=s, config=c, sandbox_config=p),
                    timeout=TIMEOUT,
                ).container_id
            ),
        )
        timings.time(
            "StartContainer",
            lambda c=container_id: rt.StartContainer(
                cri.StartContainerRequest(container_id=c), timeout=TIMEOUT
            ),
        )
        timings.samples["pod start"].append((time.perf_counter() - started) * 1000)
        pods.append((sandbox_id, container_id))
    for repeat in range(LIST_REPEATS):
        listed = timings.time(
            "ListPodSandbox",
            lambda: rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=TIMEOUT),
        )
        assert len(listed.items) == count
        listed = timings.time(
            "ListContainers",
            lambda: rt.ListContainers(cri.ListContainersRequest(), timeout=TIMEOUT),
        )
        assert len(listed.containers) == count
        sandbox_id, container_id = pods[repeat % count]
        timings.time(
            "PodSandboxStatus",
            lambda s=sandbox_id: rt.PodSandboxStatus(
                cri.PodSandboxStatusRequest(pod_sandbox_id=s), timeout=TIMEOUT
            ),
        )
        timings.time(
            "ContainerStatus",
            lambda c=container_id: rt.ContainerStatus(
                cri.ContainerStatusRequest(container_id=c), timeout=TIMEOUT
            ),
        )
    assert daemon.process is not None
    rss_up = rss_kib(daemon.process.pid)
    for sandbox_id, container_id in pods:
        timings.time(
            "StopContainer",
            lambda c=container_id: rt.StopContainer(
                cri.StopContainerRequest(container_id=c, timeout=0), timeout=TIMEOUT
            ),
        )
        timings.time(
            "RemoveContainer",
            lambda c=container_id: rt.RemoveContainer(
                cri.RemoveContainerRequest(container_id=c), timeout=TIMEOUT
            ),
        )
        timings.time(
            "StopPodSandbox",
            lambda s=sandbox_id: rt.StopPodSandbox(
                cri.StopPodSandboxRequest(pod_sandbox_id=s), timeout=TIMEOUT
            ),
        )
        timings.time(
            "RemovePodSandbox",
            lambda s=sandbox_id: rt.RemovePodSandbox(
                cri.RemovePodSandboxRequest(pod_sandbox_id=s), timeout=TIMEOUT
            ),
        )
    return timings, rss_up


CALLS = (
    "pod start",
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
    "ListPodSandbox",
    "ListContainers",
    "PodSandboxStatus",
    "ContainerStatus",
)


Level = tuple[int, Timings, int, int]


def bench_adapter(
    adapter: str, network: str, counts: list[int], root: Path
) -> tuple[float, list[Level]]:
    """Start a daemon on ``adapter`` and run every level on it; (start RSS, levels)."""
    extra: dict[str, Any] = {"log_level": "info"}
    if adapter == "docker":
        extra["network"] = {"mode": network}
        if network == "cni":
            conf_dir, _ = dockerpods.cni_conf_dir(root / adapter)
            extra["network"]["cni_conf_dir"] = str(conf_dir)
    daemon = harness.start_daemon(adapter, extra)
    try:
        daemon.images.PullImage(
            cri.PullImageRequest(image=cri.ImageSpec(image=harness.BUSYBOX_IMAGE)),
            timeout=TIMEOUT,
        )
        assert daemon.process is not None
        start_rss = rss_kib(daemon.process.pid) / 1024
        levels: list[Level] = []
        for count in counts:
            timings, rss_up = run_level(daemon, count, root / adapter / "logs")
            levels.append((count, timings, rss_up, rss_kib(daemon.process.pid)))
        return start_rss, levels
    finally:
        daemon.stop()
        harness.remove_root(daemon)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", default="docker,oci")
    parser.add_argument("--counts", default="10,50,100")
    parser.add_argument("--network", choices=("docker", "cni"), default="cni")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    adapters = args.adapters.split(",")

    with tempfile.TemporaryDirectory(prefix="pycrid-bench-") as scratch:
        results = {a: bench_adapter(a, args.network, counts, Path(scratch)) for a in adapters}
    print(f"docker adapter network mode: {args.network}")
    for adapter, (start_rss, _) in results.items():
        print(f"{adapter}: daemon RSS at start {start_rss:.1f} MiB")
    columns = [(a, c) for c in counts for a in adapters]
    print(f"{'median ms':<18}" + "".join(f"{f'{a} {c}':>12}" for a, c in columns))

    def level(adapter: str, count: int) -> Level:
        return next(lv for lv in results[adapter][1] if lv[0] == count)

    for call in CALLS:
        print(f"{call:<18}" + "".join(f"{level(a, c)[1].median(call):>12.1f}" for a, c in columns))
    print(f"{'RSS up (MiB)':<18}" + "".join(f"{level(a, c)[2] / 1024:>12.1f}" for a, c in columns))
    print(
        f"{'RSS after (MiB)':<18}" + "".join(f"{level(a, c)[3] / 1024:>12.1f}" for a, c in columns)
    )


if __name__ == "__main__":
    main()
