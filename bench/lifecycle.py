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
import tempfile
from functools import partial
from pathlib import Path

from common import TIMEOUT, Timings, bench_daemon, remove_pod, rss_kib, start_pod

from pycrid.api.cri import api_pb2 as cri
from pycrid.tools import scratchdaemon

LIST_REPEATS = 20


def run_level(daemon: scratchdaemon.Daemon, count: int, log_root: Path) -> tuple[Timings, int]:
    """Run ``count`` pods, list them repeatedly, remove them; (timings, RSS in KiB with pods up)."""
    rt = daemon.runtime
    timings = Timings()
    pods = [
        start_pod(rt, timings, f"bench-{index}", log_root / f"pod-{count}-{index}")
        for index in range(count)
    ]
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
        pod = pods[repeat % count]
        timings.time(
            "PodSandboxStatus",
            partial(
                rt.PodSandboxStatus,
                cri.PodSandboxStatusRequest(pod_sandbox_id=pod.sandbox_id),
                timeout=TIMEOUT,
            ),
        )
        timings.time(
            "ContainerStatus",
            partial(
                rt.ContainerStatus,
                cri.ContainerStatusRequest(container_id=pod.container_id),
                timeout=TIMEOUT,
            ),
        )
    assert daemon.process is not None
    rss_up = rss_kib(daemon.process.pid)
    for pod in pods:
        remove_pod(rt, timings, pod)
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
    with bench_daemon(adapter, network, root) as daemon:
        assert daemon.process is not None
        start_rss = rss_kib(daemon.process.pid) / 1024
        levels: list[Level] = []
        for count in counts:
            timings, rss_up = run_level(daemon, count, root / adapter / "logs")
            levels.append((count, timings, rss_up, rss_kib(daemon.process.pid)))
        return start_rss, levels


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
