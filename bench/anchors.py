"""Benchmark: pycrid's adapters beside containerd and cri-dockerd, in one run, as ratios.

Each runtime in turn (pycrid docker, pycrid oci, containerd, cri-dockerd; the
anchors started by ``../shared/tools/anchors/start.sh`` unless they already
run) is grown to 10, 50 and 100 pods of one busybox container each, all with
CNI on a bridge of their own, from one gRPC client in this process. At each
count it times:

- pod start (RunPodSandbox + CreateContainer + StartContainer) over the pods
  added to reach the count;
- ListPodSandbox, ListContainers, PodSandboxStatus, ContainerStatus, and for
  pycrid the same calls on a "floor" (bench/relist.py: a do-nothing
  ``grpc.aio`` server answering from dicts of the runtime's own answers),
  interleaved call by call;
- ListContainerStats, Status and ImageFsInfo;
- the memory of the daemon and its shims (PSS), per pod over the runtime
  with no pods, and the daemon's RSS.

At the largest count: the CPU of a kubelet-like 1 Hz relist (both lists and
the status of a tenth of the pods each second; the floor's round half a
second later), and a restart of the daemon with the pods running: the time
from the new process's start to its first answer and to both lists showing
every pod ready and every container running. Then the pods are removed and:

- a burst: 50 pods started with 10 calls in flight; the time until all run,
  and the p50 / p99 of one pod's start;
- pulls (oci adapter and containerd): a cold and a warm pull of a ten-layer
  300 MB image from the local registry, and four tags of it pulled at once
  (bench/largeimage.py builds them into the registry on the first run).

Every figure is printed beside its reference and the ratio: oci / containerd,
docker / cri-dockerd, pycrid / floor. Needs the test environment (``bash
scripts/testenv.sh up``), containerd (Debian's package) and the anchors'
scripts:

    python bench/anchors.py [--runtimes docker,oci,containerd,cri-dockerd]
        [--counts 10,50,100] [--repeats 100] [--relist-seconds 30]
        [--burst 50] [--in-flight 10] [--pull-runs 1] [--skip burst,pull,restart,relist]
        [--format text|markdown]

Everything it creates is removed at the end, also after Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import largeimage
import relist
from common import (
    TIMEOUT,
    Pod,
    Timings,
    percentile,
    remove_pod,
    rss_kib,
    start_pod,
    uninterrupted,
)
from runtimes import (
    ANCHORS,
    LABELS,
    PYCRID,
    REFERENCE,
    PycridRuntime,
    Runtime,
    anchor,
    boottime,
    pss_kib,
    pycrid,
    started_at,
)

from pycrid.api.cri import api_pb2 as cri

IMAGE = "127.0.0.1:5000/e2e-test-images/busybox:1.29-2"
"""The pods' image, by a name every runtime pulls from the local registry as it is."""

READ_CALLS = relist.READ_CALLS
NODE_CALLS = ("ListContainerStats", "Status", "ImageFsInfo")
FLOORED_NODE_CALLS = ("Status", "ImageFsInfo")
"""Node-wide calls kubelet polls that the floor answers too (its copy of the daemon's)."""
PULLERS = ("oci", "containerd")
NONE = "-"


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Level:
    """What was measured at one pod count."""

    count: int
    starts: Timings = field(default_factory=Timings)
    reads: Timings = field(default_factory=Timings)
    floor: Timings = field(default_factory=Timings)
    pss_kib: int = 0
    rss_kib: int = 0


@dataclass
class Relist:
    """A 1 Hz relist: percent of one core used by the daemon, dockerd and the floor."""

    daemon: float
    dockerd: float
    floor: float | None


@dataclass
class Result:
    """Everything measured on one runtime."""

    name: str
    levels: list[Level] = field(default_factory=list)
    empty_pss_kib: int = 0
    relist: Relist | None = None
    restart: tuple[float, float] | None = None
    """Seconds from the new daemon's start to its first answer, and to complete lists."""
    bursts: list[tuple[float, list[float]]] = field(default_factory=list)
    """Per burst: seconds until all its pods ran, and each pod's start in ms."""
    pulls: largeimage.Pulls = field(default_factory=largeimage.Pulls.none)

    def level(self, count: int) -> Level:
        return next(lv for lv in self.levels if lv.count == count)


# Measuring.


def node_call(runtime: Any, images: Any, name: str) -> Callable[[], Any]:
    """A call of one of NODE_CALLS on the given stubs."""
    if name == "ListContainerStats":
        return lambda: runtime.ListContainerStats(cri.ListContainerStatsRequest(), timeout=TIMEOUT)
    if name == "Status":
        return lambda: runtime.Status(cri.StatusRequest(), timeout=TIMEOUT)
    return lambda: images.ImageFsInfo(cri.ImageFsInfoRequest(), timeout=TIMEOUT)


def time_reads(rt: Runtime, pods: list[Pod], level: Level, args: argparse.Namespace) -> None:
    """The read calls, beside the floor for pycrid; then the node-wide calls."""
    if isinstance(rt, PycridRuntime):
        data = relist.FloorData.copy_from(rt.runtime, pods).copy_node(rt.runtime, rt.images)
        with relist.floor_server(data) as floor:
            level.reads, level.floor = relist.time_reads(
                rt.runtime, floor.runtime, pods, args.repeats
            )
            for name in FLOORED_NODE_CALLS:
                ours = node_call(rt.runtime, rt.images, name)
                theirs = node_call(floor.runtime, floor.images, name)
                for repeat in range(-relist.WARMUP_ROUNDS, args.repeats):
                    if repeat < 0:
                        ours(), theirs()
                    else:
                        level.reads.time(name, ours)
                        level.floor.time(name, theirs)
    else:
        for repeat in range(-relist.WARMUP_ROUNDS, args.repeats):
            for name in READ_CALLS:
                call = relist.read_call(rt.runtime, name, pods[repeat % len(pods)])
                if repeat < 0:
                    call()
                else:
                    level.reads.time(name, call)
    for name in NODE_CALLS:
        if level.reads.samples[name]:
            continue  # timed beside the floor
        repeats = args.stats_repeats if name == "ListContainerStats" else args.repeats
        call = node_call(rt.runtime, rt.images, name)
        call()
        for _ in range(repeats):
            level.reads.time(name, call)


def memory(rt: Runtime, pods: list[Pod]) -> int:
    """PSS of the daemon and of the shims of ``pods`` (Docker's shims serve two runtimes)."""
    ids = {p.sandbox_id for p in pods} | {p.container_id for p in pods}
    return pss_kib([rt.daemon_pid(), *rt.shim_pids(ids)])


def relist_cpu(rt: Runtime, pods: list[Pod], seconds: int) -> Relist:
    """``seconds`` of a 1 Hz relist on the runtime (and on the floor, half a second later)."""
    floor_context: Any = contextlib.nullcontext(None)
    if isinstance(rt, PycridRuntime):
        floor_context = relist.floor_server(relist.FloorData.copy_from(rt.runtime, pods))
    with floor_context as floor:
        groups = {"daemon": [rt.daemon_pid()], "dockerd": relist.dockerd_pids()}
        targets = [rt.runtime]
        if floor is not None:
            groups["floor"] = [floor.process.pid]
            targets.append(floor.runtime)

        def rounds() -> None:
            started = time.monotonic()
            for tick in range(seconds):
                first = tick * max(1, len(pods) // 10)
                for slot, target in enumerate(targets):
                    at = started + tick + slot / len(targets)
                    time.sleep(max(0.0, at - time.monotonic()))
                    relist.relist_round(target, pods, first)
            time.sleep(max(0.0, started + seconds - time.monotonic()))

        used = relist.cpu_percent(groups, rounds)
    return Relist(used["daemon"], used["dockerd"], used.get("floor"))


def lists_complete(rt: Runtime, pods: list[Pod]) -> bool:
    """Whether both lists show every one of ``pods`` ready and its container running."""
    try:
        listed = rt.runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=5).items
        containers = rt.runtime.ListContainers(cri.ListContainersRequest(), timeout=5).containers
    except grpc.RpcError:
        return False
    ready = {p.id for p in listed if p.state == cri.SANDBOX_READY}
    running = {c.id for c in containers if c.state == cri.CONTAINER_RUNNING}
    return all(p.sandbox_id in ready and p.container_id in running for p in pods)


def restart(rt: Runtime, pods: list[Pod]) -> tuple[float, float]:
    """Restart the daemon; seconds from its start to the first answer and to complete lists."""
    pid = rt.restart()
    first = complete = 0.0
    deadline = time.monotonic() + 120
    while not first:
        with contextlib.suppress(grpc.RpcError):
            rt.runtime.Version(cri.VersionRequest(), timeout=1, wait_for_ready=False)
            first = boottime()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{rt.label} did not answer after a restart")
        if not first:
            time.sleep(0.005)
    while not complete:
        if lists_complete(rt, pods):
            complete = boottime()
        elif time.monotonic() > deadline:
            raise RuntimeError(f"{rt.label} did not list every pod after a restart")
        else:
            time.sleep(0.005)
    if isinstance(rt, PycridRuntime):
        rt.settle()
    began = started_at(pid)
    return first - began, complete - began


def start_pods(
    rt: Runtime, names: list[str], log_root: Path, in_flight: int, timings: Timings
) -> list[Pod]:
    def one(name: str) -> Pod:
        (log_root / name).mkdir(parents=True, exist_ok=True)  # kubelet's part
        return start_pod(rt.runtime, timings, name, log_root / name, IMAGE)

    if in_flight == 1:
        return [one(name) for name in names]
    with ThreadPoolExecutor(in_flight) as pool:
        return list(pool.map(one, names))


def remove_pods(rt: Runtime, pods: list[Pod]) -> None:
    def one(pod: Pod) -> None:
        try:
            remove_pod(rt.runtime, Timings(), pod)
        except grpc.RpcError as error:
            progress(f"{rt.label}: could not remove pod {pod.sandbox_id}: {error.details()}")

    with uninterrupted(), ThreadPoolExecutor(4) as pool:
        list(pool.map(one, pods))


def burst(rt: Runtime, args: argparse.Namespace, log_root: Path) -> tuple[float, list[float]]:
    timings = Timings()
    names = [f"burst-{index}" for index in range(args.burst)]
    pods: list[Pod] = []
    started = time.perf_counter()
    try:
        pods = start_pods(rt, names, log_root, args.in_flight, timings)
        return time.perf_counter() - started, timings.samples["pod start"]
    finally:
        remove_pods(rt, pods)


def bench_all(
    runtimes: dict[str, Runtime], args: argparse.Namespace, scratch: Path
) -> dict[str, Result]:
    """Every measure on every runtime, the timed ones taken in turns.

    The machine's speed drifts by a third within minutes, so runtimes are
    not measured one after the other: each pod is started on every runtime
    in turn, bursts and pulls alternate between them, and every runtime has
    its pods up while the others are timed.
    """
    results = {name: Result(name) for name in runtimes}
    logs = {name: scratch / name / "logs" for name in runtimes}
    for name, rt in runtimes.items():
        request = cri.PullImageRequest(image=cri.ImageSpec(image=IMAGE))
        rt.images.PullImage(request, timeout=TIMEOUT)
        remove_pods(rt, start_pods(rt, ["warm-up"], logs[name], 1, Timings()))
        results[name].empty_pss_kib = memory(rt, [])
    pods: dict[str, list[Pod]] = {name: [] for name in runtimes}
    try:
        for count in args.counts:
            levels = {name: Level(count) for name in runtimes}
            for name in runtimes:
                results[name].levels.append(levels[name])
            progress(f"starting pods {len(pods[next(iter(runtimes))])} to {count}, in turns")
            for index in range(len(pods[next(iter(runtimes))]), count):
                for name, rt in runtimes.items():
                    started = start_pods(rt, [f"bench-{index}"], logs[name], 1, levels[name].starts)
                    pods[name] += started
            for name, rt in runtimes.items():
                progress(f"{rt.label}: {count} pods up, timing the calls")
                time_reads(rt, pods[name], levels[name], args)
                levels[name].pss_kib = memory(rt, pods[name])
                levels[name].rss_kib = rss_kib(rt.daemon_pid())
        for name, rt in runtimes.items():
            if "relist" not in args.skip:
                progress(f"{rt.label}: 1 Hz relist for {args.relist_seconds} s")
                results[name].relist = relist_cpu(rt, pods[name], args.relist_seconds)
            if "restart" not in args.skip:
                progress(f"{rt.label}: restarting with {len(pods[name])} pods")
                results[name].restart = restart(rt, pods[name])
    finally:
        for name, rt in runtimes.items():
            progress(f"{rt.label}: removing {len(pods[name])} pods")
            remove_pods(rt, pods[name])
    if "burst" not in args.skip:
        for round_ in range(args.burst_rounds):
            for name, rt in runtimes.items():
                progress(f"{rt.label}: burst {round_ + 1} of {args.burst} pods")
                results[name].bursts.append(burst(rt, args, logs[name]))
    if "pull" not in args.skip:
        for _ in range(args.pull_runs):
            for name, rt in runtimes.items():
                if name in PULLERS:
                    progress(f"{rt.label}: pulling the large image")
                    results[name].pulls.add(largeimage.measure(rt.images, 1))
    return results


@contextlib.contextmanager
def open_runtime(name: str, scratch: Path) -> Iterator[Runtime]:
    if name in PYCRID:
        with pycrid(name, scratch) as rt:
            yield rt
    else:
        with anchor(name) as rt:
            yield rt


# Printing.


def ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return NONE
    return f"{value / reference:.2f}"


def cell(value: float | None, digits: int = 2) -> str:
    return NONE if value is None else f"{value:.{digits}f}"


def comparison_rows(
    results: dict[str, Result], count: int
) -> list[tuple[str, dict[str, float | None], int]]:
    """(measure, value by runtime and "floor", digits) at ``count`` pods."""
    rows: list[tuple[str, dict[str, float | None], int]] = []

    def at(name: str) -> Level | None:
        return results[name].level(count) if name in results else None

    def add(
        title: str,
        value: Callable[[Result, Level], float | None],
        digits: int = 2,
        floor: Callable[[Level], float | None] | None = None,
    ) -> None:
        values: dict[str, float | None] = {}
        for name, result in results.items():
            level = result.level(count)
            values[name] = value(result, level)
        if floor is not None:
            measured = [floor(lv) for name in PYCRID if (lv := at(name)) is not None]
            floors = [f for f in measured if f is not None]
            values["floor"] = statistics.median(floors) if floors else None
            for name in PYCRID:
                if (lv := at(name)) is not None:
                    values[f"floor:{name}"] = floor(lv)
        rows.append((title, values, digits))

    def measured(call: str) -> Callable[[Result, Level], float | None]:
        return lambda result, level: level.reads.median(call)

    def floored(call: str) -> Callable[[Level], float | None]:
        return lambda level: level.floor.median(call) if level.floor.samples[call] else None

    add("pod start (ms)", lambda r, lv: lv.starts.median("pod start"), 0)
    for call in READ_CALLS:
        add(f"{call} (ms)", measured(call), floor=floored(call))
    for call in NODE_CALLS:
        digits = 1 if call == "ListContainerStats" else 2
        floor = floored(call) if call in FLOORED_NODE_CALLS else None
        add(f"{call} (ms)", measured(call), digits, floor=floor)
    empty = {name: r.empty_pss_kib for name, r in results.items()}
    add(
        "memory per pod, daemon + shims (PSS, MiB)",
        lambda r, lv: (lv.pss_kib - empty[r.name]) / 1024 / count,
    )
    add("daemon RSS (MiB)", lambda r, lv: lv.rss_kib / 1024, 0)
    return rows


RATIOS = (("oci", "containerd"), ("docker", "cri-dockerd"), ("oci", "floor"), ("docker", "floor"))


def table(title: str, header: list[str], rows: list[list[str]], fmt: str) -> str:
    return relist.table(title, header, rows, fmt)


def report(results: dict[str, Result], args: argparse.Namespace) -> str:
    fmt = args.format
    names = [n for n in (*PYCRID, *ANCHORS) if n in results]
    out = [
        f"pycrid beside the anchors: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"CNI, one busybox container per pod, medians of {args.repeats} calls "
        f"({args.stats_repeats} for ListContainerStats); the floor is a do-nothing Python "
        "gRPC server answering from dicts of the same messages\n"
    ]
    ratios = [(a, b) for a, b in RATIOS if a in results and (b == "floor" or b in results)]
    header = ["measure", "floor", *(LABELS[n] for n in names), *(f"{a} / {b}" for a, b in ratios)]
    for count in args.counts:
        rows = []
        for title, values, digits in comparison_rows(results, count):
            row = [title, cell(values.get("floor"), digits)]
            row += [cell(values.get(n), digits) for n in names]
            for a, b in ratios:
                reference = values.get(f"floor:{a}") if b == "floor" else values.get(b)
                row.append(ratio(values.get(a), reference))
            rows.append(row)
        if count == args.counts[-1]:
            rows += extra_rows(results, names, ratios)
        out.append(table(f"At {count} pods", header, rows, fmt))
    out += burst_and_pulls(results, names, args)
    return "\n".join(out)


def extra_rows(
    results: dict[str, Result], names: list[str], ratios: list[tuple[str, str]]
) -> list[list[str]]:
    rows = []
    relists = {n: results[n].relist for n in names}
    if any(relists.values()):
        floors = [r.floor for r in relists.values() if r and r.floor is not None]
        values: dict[str, float | None] = {n: r.daemon if r else None for n, r in relists.items()}
        row = ["1 Hz relist: daemon CPU %", cell(statistics.median(floors) if floors else None)]
        row += [cell(values[n]) for n in names]
        for a, b in ratios:
            if b == "floor":
                r = relists.get(a)
                row.append(ratio(values.get(a), r.floor if r else None))
            else:
                row.append(ratio(values.get(a), values.get(b)))
        rows.append(row)
        row = [
            "1 Hz relist: dockerd CPU %",
            NONE,
            *(cell(r.dockerd if r else None) for r in relists.values()),
        ]
        rows.append(row + [NONE] * len(ratios))
    for index, title in enumerate(("restart: first answer (s)", "restart: lists complete (s)")):
        values = {}
        for n in names:
            restarted = results[n].restart
            values[n] = restarted[index] if restarted else None
        if any(v is not None for v in values.values()):
            row = [title, NONE, *(cell(values[n]) for n in names)]
            row += [
                ratio(values.get(a), values.get(b)) if b != "floor" else NONE for a, b in ratios
            ]
            rows.append(row)
    return rows


def burst_and_pulls(
    results: dict[str, Result], names: list[str], args: argparse.Namespace
) -> list[str]:
    out = []
    # Per runtime: the median time until all ran, and every pod's start of every burst.
    bursts = {
        n: (
            statistics.median(wall for wall, _ in results[n].bursts),
            [start for _, starts in results[n].bursts for start in starts],
        )
        for n in names
        if results[n].bursts
    }
    if bursts:
        header = ["measure", *(LABELS[n] for n in bursts)]
        pairs = [(a, REFERENCE[a]) for a in PYCRID if a in bursts and REFERENCE[a] in bursts]
        header += [f"{a} / {b}" for a, b in pairs]
        rows = []
        for title, value in (
            ("all running (s)", lambda b: b[0]),
            ("one pod, p50 (ms)", lambda b: percentile(b[1], 0.5)),
            ("one pod, p99 (ms)", lambda b: percentile(b[1], 0.99)),
        ):
            row = [title, *(cell(value(b), 2 if "(s)" in title else 0) for b in bursts.values())]
            row += [ratio(value(bursts[a]), value(bursts[b])) for a, b in pairs]
            rows.append(row)
        title = (
            f"Burst: {args.burst} pods started with {args.in_flight} calls in flight "
            f"(median of {args.burst_rounds} bursts, taken in turns)"
        )
        out.append(table(title, header, rows, args.format))
    pulls = {n: results[n].pulls for n in names if results[n].pulls.cold}
    if pulls:
        header = ["seconds", *(LABELS[n] for n in pulls)]
        both = "oci" in pulls and "containerd" in pulls
        if both:
            header.append("oci / containerd")
        rows = []
        for title, attribute in (
            ("cold pull", "cold"),
            ("warm pull", "warm"),
            ("4 tags at once", "concurrent"),
        ):
            medians = {n: statistics.median(getattr(p, attribute)) for n, p in pulls.items()}
            row = [title, *(cell(v) for v in medians.values())]
            if both:
                row.append(ratio(medians["oci"], medians["containerd"]))
            rows.append(row)
        mb = largeimage.LAYERS * largeimage.LAYER_BYTES // 10**6
        title = (
            f"Pulls of a {largeimage.LAYERS}-layer {mb} MB image from the local registry "
            f"(seconds, median of {args.pull_runs})"
        )
        out.append(table(title, header, rows, args.format))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", default="docker,oci,containerd,cri-dockerd")
    parser.add_argument("--counts", type=relist.counts_list, default="10,50,100")
    parser.add_argument("--repeats", type=int, default=100, help="calls timed per read call")
    parser.add_argument(
        "--stats-repeats", type=int, default=3, help="ListContainerStats calls timed"
    )
    parser.add_argument("--relist-seconds", type=int, default=30)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=10)
    parser.add_argument("--burst-rounds", type=int, default=2, help="bursts per runtime")
    parser.add_argument("--pull-runs", type=int, default=1)
    parser.add_argument("--skip", default="", help="comma-separated: relist,restart,burst,pull")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    args = parser.parse_args()
    args.skip = set(filter(None, args.skip.split(",")))
    names = args.runtimes.split(",")
    unknown = set(names) - set(LABELS)
    if unknown:
        parser.error(f"unknown runtimes: {', '.join(sorted(unknown))}")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Result] = {}
    try:
        if "pull" not in args.skip and set(names) & set(PULLERS):
            largeimage.ensure_pushed(progress)
        with (
            tempfile.TemporaryDirectory(prefix="pycrid-bench-") as scratch,
            contextlib.ExitStack() as stack,
        ):
            runtimes = {
                name: stack.enter_context(open_runtime(name, Path(scratch))) for name in names
            }
            results = bench_all(runtimes, args, Path(scratch))
    except KeyboardInterrupt:
        progress("interrupted; everything the benchmark created is removed")
        sys.exit(130)
    print(report(results, args))


if __name__ == "__main__":
    main()
