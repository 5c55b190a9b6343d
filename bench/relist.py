"""Benchmark: kubelet's relist calls beside a do-nothing Python floor, at 10, 50 and 100 pods.

kubelet calls ListPodSandbox, ListContainers and the status calls every
second on every node, so their cost is paid forever. For each adapter this
starts a pycrid daemon of its own (CNI networking on the benchmarks' own
bridge) and grows it to each pod count (one busybox container sleeping in
each pod). At each count it:

1. copies the daemon's ListPodSandbox, ListContainers, PodSandboxStatus and
   ContainerStatus answers into the dicts of a "floor" server: a minimal
   grpc.aio server in a separate Python process, on its own Unix socket, that
   answers those four calls from prebuilt messages of the same sizes and
   does nothing else. It is what any Python CRI server costs on this machine;
2. times the four calls on the daemon and on the floor, interleaved, from one
   gRPC client in this process, and prints the medians, p95s and the ratio
   pycrid / floor;
3. prints the median pod start (RunPodSandbox + CreateContainer +
   StartContainer, over the pods added to reach the count) and the daemon's
   resident memory with all pods up;
4. times critest-style lifecycle calls: a container created, started,
   stopped and removed in the first pod, ImageStatus and ListImages.

At the largest count it then waits as long with no calls, and runs a
kubelet-like 1 Hz relist for a while (each second ListPodSandbox,
ListContainers, and PodSandboxStatus and ContainerStatus for a tenth of the
pods, on the daemon and then on the floor). It prints the CPU used by the
daemon, dockerd and the floor under the relist (percent of one core: utime +
stime from /proc over wall time), the median round, and what the daemon and
dockerd used with no calls (dockerd may be busy with others on the machine).

Needs dockerd and the local test registry (``bash scripts/testenv.sh up``):

    python bench/relist.py [--adapters docker,oci] [--counts 10,50,100]
        [--repeats 200] [--idle-seconds 30] [--format text|markdown]

Everything it creates (pods, containers, daemons, the floor, temporary
directories) is removed at the end, also after Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from common import (
    TIMEOUT,
    Pod,
    Timings,
    bench_daemon,
    processes,
    remove_container,
    remove_pod,
    rss_kib,
    sleeper_config,
    start_pod,
    uninterrupted,
)

from pycrid.api.cri import api_pb2 as cri
from pycrid.api.cri import api_pb2_grpc
from pycrid.tools import scratchdaemon

READ_CALLS = ("ListPodSandbox", "ListContainers", "PodSandboxStatus", "ContainerStatus")
LIFECYCLE_CALLS = (
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ImageStatus",
    "ListImages",
)
WARMUP_ROUNDS = 10
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 32 * 1024 * 1024)]


# The floor server.


@dataclass
class FloorData:
    """The messages the floor answers with, by pod sandbox or container ID."""

    pods: dict[str, cri.PodSandbox]
    containers: dict[str, cri.Container]
    pod_statuses: dict[str, cri.PodSandboxStatusResponse]
    container_statuses: dict[str, cri.ContainerStatusResponse]
    node: dict[str, Any] = field(default_factory=dict)
    """The answers to Status and ImageFsInfo (``copy_node``), by call name."""

    def copy_node(self, rt: Any, images: Any) -> FloorData:
        """Also the daemon's answers to Status and ImageFsInfo, which kubelet polls."""
        self.node["Status"] = rt.Status(cri.StatusRequest(), timeout=TIMEOUT)
        self.node["ImageFsInfo"] = images.ImageFsInfo(cri.ImageFsInfoRequest(), timeout=TIMEOUT)
        return self

    @classmethod
    def copy_from(cls, rt: Any, pods: list[Pod]) -> FloorData:
        """The daemon's own answers to the four calls, for every pod and container."""
        listed_pods = rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=TIMEOUT).items
        listed = rt.ListContainers(cri.ListContainersRequest(), timeout=TIMEOUT).containers
        return cls(
            pods={p.id: p for p in listed_pods},
            containers={c.id: c for c in listed},
            pod_statuses={
                p.sandbox_id: rt.PodSandboxStatus(
                    cri.PodSandboxStatusRequest(pod_sandbox_id=p.sandbox_id), timeout=TIMEOUT
                )
                for p in pods
            },
            container_statuses={
                p.container_id: rt.ContainerStatus(
                    cri.ContainerStatusRequest(container_id=p.container_id), timeout=TIMEOUT
                )
                for p in pods
            },
        )

    def save(self, path: Path) -> None:
        """Write the messages to ``path`` (JSON of base64 protobuf encodings)."""

        def encode(messages: dict[str, Any]) -> dict[str, str]:
            return {
                k: base64.b64encode(m.SerializeToString()).decode() for k, m in messages.items()
            }

        parts = ("pods", "containers", "pod_statuses", "container_statuses", "node")
        path.write_text(json.dumps({name: encode(getattr(self, name)) for name in parts}))

    @classmethod
    def load(cls, path: Path) -> FloorData:
        saved = json.loads(path.read_text())

        def decode(name: str, kind: Any) -> dict[str, Any]:
            return {k: kind.FromString(base64.b64decode(v)) for k, v in saved[name].items()}

        return cls(
            pods=decode("pods", cri.PodSandbox),
            containers=decode("containers", cri.Container),
            pod_statuses=decode("pod_statuses", cri.PodSandboxStatusResponse),
            container_statuses=decode("container_statuses", cri.ContainerStatusResponse),
            node={
                name: kind.FromString(base64.b64decode(saved.get("node", {})[name]))
                for name, kind in NODE_ANSWERS.items()
                if name in saved.get("node", {})
            },
        )


NODE_ANSWERS: dict[str, Any] = {
    "Status": cri.StatusResponse,
    "ImageFsInfo": cri.ImageFsInfoResponse,
}


class FloorServicer(api_pb2_grpc.RuntimeServiceServicer):
    """The four relist calls answered from dicts; every other call is UNIMPLEMENTED.

    Filters are ignored: kubelet's relist asks for everything.
    """

    def __init__(self, data: FloorData) -> None:
        self.data = data

    async def ListPodSandbox(self, request: Any, context: Any) -> cri.ListPodSandboxResponse:
        return cri.ListPodSandboxResponse(items=self.data.pods.values())

    async def ListContainers(self, request: Any, context: Any) -> cri.ListContainersResponse:
        return cri.ListContainersResponse(containers=self.data.containers.values())

    async def PodSandboxStatus(self, request: Any, context: Any) -> cri.PodSandboxStatusResponse:
        answer = self.data.pod_statuses.get(request.pod_sandbox_id)
        if answer is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such pod sandbox")
            raise AssertionError("abort raises")
        return answer

    async def ContainerStatus(self, request: Any, context: Any) -> cri.ContainerStatusResponse:
        answer = self.data.container_statuses.get(request.container_id)
        if answer is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such container")
            raise AssertionError("abort raises")
        return answer

    async def Status(self, request: Any, context: Any) -> cri.StatusResponse:
        return await _node_answer(self.data, "Status", context)


class FloorImages(api_pb2_grpc.ImageServiceServicer):
    """ImageFsInfo answered from the copy; every other image call is UNIMPLEMENTED."""

    def __init__(self, data: FloorData) -> None:
        self.data = data

    async def ImageFsInfo(self, request: Any, context: Any) -> cri.ImageFsInfoResponse:
        return await _node_answer(self.data, "ImageFsInfo", context)


async def _node_answer(data: FloorData, name: str, context: Any) -> Any:
    answer = data.node.get(name)
    if answer is None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"no {name} answer was copied")
        raise AssertionError("abort raises")
    return answer


async def serve_floor(socket_path: Path, data_path: Path) -> None:
    """Serve the floor on ``socket_path`` until SIGTERM or SIGINT."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", 32 * 1024 * 1024),
            ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        ]
    )
    data = FloorData.load(data_path)
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(FloorServicer(data), server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(FloorImages(data), server)
    server.add_insecure_port(f"unix://{socket_path}")
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(0)


@dataclass
class Floor:
    """A running floor process and clients of it."""

    process: subprocess.Popen[bytes]
    runtime: api_pb2_grpc.RuntimeServiceStub
    images: api_pb2_grpc.ImageServiceStub


@contextlib.contextmanager
def floor_server(data: FloorData, timeout: float = 30.0) -> Iterator[Floor]:
    """Run the floor in a separate Python process answering with ``data``; stopped at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="pycrid-floor-"))
    socket_path = workdir / "floor.sock"
    data.save(workdir / "floor.json")
    log = open(workdir / "floor.log", "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-floor", str(socket_path), str(workdir / "floor.json")],
        stdout=log,
        stderr=log,
        start_new_session=True,  # Ctrl-C reaches this process only; it stops the floor
    )
    log.close()
    channel = grpc.insecure_channel(f"unix://{socket_path}", options=CHANNEL_OPTIONS)
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            output = (workdir / "floor.log").read_text(errors="replace")
            raise RuntimeError(f"the floor server did not start:\n{output}") from None
        yield Floor(
            process,
            api_pb2_grpc.RuntimeServiceStub(channel),
            api_pb2_grpc.ImageServiceStub(channel),
        )
    finally:
        channel.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


# Measuring.


def read_call(rt: Any, name: str, pod: Pod) -> Callable[[], Any]:
    """A call of one of READ_CALLS; the status calls ask about ``pod``."""
    if name == "ListPodSandbox":
        return lambda: rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=TIMEOUT)
    if name == "ListContainers":
        return lambda: rt.ListContainers(cri.ListContainersRequest(), timeout=TIMEOUT)
    if name == "PodSandboxStatus":
        request = cri.PodSandboxStatusRequest(pod_sandbox_id=pod.sandbox_id)
        return lambda: rt.PodSandboxStatus(request, timeout=TIMEOUT)
    request = cri.ContainerStatusRequest(container_id=pod.container_id)
    return lambda: rt.ContainerStatus(request, timeout=TIMEOUT)


def time_reads(rt: Any, floor: Any, pods: list[Pod], repeats: int) -> tuple[Timings, Timings]:
    """READ_CALLS on the daemon and on the floor, interleaved call by call."""
    pycrid, floor_timings = Timings(), Timings()
    for repeat in range(-WARMUP_ROUNDS, repeats):
        pod = pods[repeat % len(pods)]
        for name in READ_CALLS:
            pycrid.time(name, read_call(rt, name, pod))
            floor_timings.time(name, read_call(floor, name, pod))
    for timings in (pycrid, floor_timings):
        for name in READ_CALLS:
            del timings.samples[name][:WARMUP_ROUNDS]
    listed = rt.ListContainers(cri.ListContainersRequest(), timeout=TIMEOUT).containers
    assert len(listed) == len(pods), f"{len(listed)} containers listed, {len(pods)} expected"
    return pycrid, floor_timings


def relist_round(rt: Any, pods: list[Pod], first: int) -> None:
    """What kubelet asks each second: both lists, and the status of a tenth of the pods."""
    rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=TIMEOUT)
    rt.ListContainers(cri.ListContainersRequest(), timeout=TIMEOUT)
    for index in range(first, first + max(1, len(pods) // 10)):
        pod = pods[index % len(pods)]
        rt.PodSandboxStatus(
            cri.PodSandboxStatusRequest(pod_sandbox_id=pod.sandbox_id), timeout=TIMEOUT
        )
        rt.ContainerStatus(
            cri.ContainerStatusRequest(container_id=pod.container_id), timeout=TIMEOUT
        )


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes ``pids`` (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def dockerd_pids() -> list[int]:
    """The dockerd processes on this machine."""
    return processes("dockerd")


def echo_ms(pause: float, rounds: int = 5) -> float:
    """Median ms of a one-byte echo between two processes, after ``pause`` seconds of quiet.

    A 1 Hz relist starts every round from quiet: on a virtual machine whose
    idle CPUs are parked, each wake-up on the way through gRPC's threads costs
    far more than back to back, for the floor as for the daemon.
    """
    here, there = socket.socketpair()
    child = os.fork()
    if child == 0:  # pragma: no cover - the echoing child
        here.close()
        while data := there.recv(1):
            there.send(data)
        os._exit(0)
    there.close()
    samples = []
    try:
        for _ in range(rounds):
            time.sleep(pause)
            started = time.perf_counter()
            here.send(b"x")
            here.recv(1)
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        here.close()
        os.waitpid(child, 0)
    return statistics.median(samples)


@dataclass
class Idle:
    """The cost of the 1 Hz relist (percent of one core, median round in ms), and of no calls."""

    pycrid_cpu: float
    dockerd_cpu: float
    floor_cpu: float
    pycrid_round: float
    floor_round: float
    pycrid_quiet: float
    dockerd_quiet: float
    echo_after_quiet: float = 0.0
    echo_back_to_back: float = 0.0


def cpu_percent(processes: dict[str, list[int]], action: Callable[[], None]) -> dict[str, float]:
    """Percent of one core each group of processes used while ``action`` ran."""
    started = time.monotonic()
    before = {name: cpu_seconds(pids) for name, pids in processes.items()}
    action()
    wall = time.monotonic() - started
    return {
        name: (cpu_seconds(pids) - before[name]) / wall * 100 for name, pids in processes.items()
    }


def idle_relist(daemon_pid: int, rt: Any, floor: Floor, pods: list[Pod], seconds: int) -> Idle:
    """``seconds`` with no calls, then a relist round on the daemon and on the floor each second.

    The quiet window shows what the daemon and dockerd (which may be serving
    others too) use on their own, beside what the relist adds.
    """
    processes = {"pycrid": [daemon_pid], "dockerd": dockerd_pids(), "floor": [floor.process.pid]}
    rounds = Timings()

    def relist() -> None:
        # Each round starts from half a second of quiet, the floor's as the daemon's:
        # a round that ran right after the other would find the machine awake.
        started = time.monotonic()
        for tick in range(seconds):
            first = tick * max(1, len(pods) // 10)
            time.sleep(max(0.0, started + tick - time.monotonic()))
            rounds.time("pycrid", partial(relist_round, rt, pods, first))
            time.sleep(max(0.0, started + tick + 0.5 - time.monotonic()))
            rounds.time("floor", partial(relist_round, floor.runtime, pods, first))
        time.sleep(max(0.0, started + seconds - time.monotonic()))

    quiet = cpu_percent(processes, lambda: time.sleep(seconds))
    used = cpu_percent(processes, relist)
    return Idle(
        used["pycrid"],
        used["dockerd"],
        used["floor"],
        rounds.median("pycrid"),
        rounds.median("floor"),
        quiet["pycrid"],
        quiet["dockerd"],
        echo_ms(1.0),
        echo_ms(0.0),
    )


def time_lifecycle(rt: Any, images: Any, pod: Pod, repeats: int, timings: Timings) -> None:
    """critest-style: a container created, started, stopped and removed; image calls."""
    image = cri.ImageSpec(image=scratchdaemon.BUSYBOX_IMAGE)

    def create(attempt: int) -> str:
        return rt.CreateContainer(
            cri.CreateContainerRequest(
                pod_sandbox_id=pod.sandbox_id,
                config=sleeper_config("lifecycle", attempt),
                sandbox_config=pod.config,
            ),
            timeout=TIMEOUT,
        ).container_id

    def start(container_id: str) -> None:
        rt.StartContainer(cri.StartContainerRequest(container_id=container_id), timeout=TIMEOUT)

    for attempt in range(repeats):
        container_id = timings.time("CreateContainer", partial(create, attempt))
        timings.time("StartContainer", partial(start, container_id))
        remove_container(rt, timings, container_id)
        timings.time(
            "ImageStatus",
            lambda: images.ImageStatus(cri.ImageStatusRequest(image=image), timeout=TIMEOUT),
        )
        timings.time(
            "ListImages", lambda: images.ListImages(cri.ListImagesRequest(), timeout=TIMEOUT)
        )


@dataclass
class Level:
    """What was measured at one pod count."""

    count: int
    starts: Timings = field(default_factory=Timings)
    lifecycle: Timings = field(default_factory=Timings)
    pycrid: Timings = field(default_factory=Timings)
    floor: Timings = field(default_factory=Timings)
    pycrid_rss: float = 0.0
    floor_rss: float = 0.0
    idle: Idle | None = None


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_adapter(adapter: str, args: argparse.Namespace, scratch: Path) -> list[Level]:
    """Grow a daemon on ``adapter`` to each pod count and measure there."""
    levels: list[Level] = []
    with bench_daemon(adapter, "cni", scratch) as daemon:
        assert daemon.process is not None
        rt = daemon.runtime
        pods: list[Pod] = []
        try:
            for count in args.counts:
                level = Level(count)
                levels.append(level)
                while len(pods) < count:
                    log_dir = scratch / adapter / "logs" / f"pod-{len(pods)}"
                    pods.append(start_pod(rt, level.starts, f"bench-{len(pods)}", log_dir))
                level.pycrid_rss = rss_kib(daemon.process.pid) / 1024
                progress(f"{adapter}: {count} pods up, timing the relist calls")
                with floor_server(FloorData.copy_from(rt, pods)) as floor:
                    level.floor_rss = rss_kib(floor.process.pid) / 1024
                    level.pycrid, level.floor = time_reads(rt, floor.runtime, pods, args.repeats)
                    if count == args.counts[-1] and args.idle_seconds > 0:
                        progress(f"{adapter}: 1 Hz relist for {args.idle_seconds} s")
                        level.idle = idle_relist(
                            daemon.process.pid, rt, floor, pods, args.idle_seconds
                        )
                time_lifecycle(rt, daemon.images, pods[0], args.lifecycle_repeats, level.lifecycle)
        finally:
            with uninterrupted():
                progress(f"{adapter}: removing {len(pods)} pods")
                for pod in pods:
                    try:
                        remove_pod(rt, Timings(), pod)
                    except grpc.RpcError as e:
                        progress(f"{adapter}: could not remove pod {pod.sandbox_id}: {e}")
    return levels


# Printing.


def table(title: str, header: list[str], rows: list[list[str]], fmt: str) -> str:
    """A table as aligned text or as Markdown."""
    if fmt == "markdown":
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    return "\n".join([title, line(header), *(line(row) for row in rows)]) + "\n"


def report(results: dict[str, list[Level]], args: argparse.Namespace) -> str:
    """Every table of the run."""
    fmt, adapters = args.format, list(results)
    levels = {(a, lv.count): lv for a in adapters for lv in results[a]}
    out = [
        f"pycrid relist benchmark: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"CNI networking, one busybox container per pod\n"
    ]

    header = ["call", "pods"]
    for a in adapters:
        header += [a, "floor", f"{a}/floor"]
    rows = []
    for name in READ_CALLS:
        for count in args.counts:
            row = [name, str(count)]
            for a in adapters:
                lv = levels[a, count]
                ratio = lv.pycrid.median(name) / lv.floor.median(name)
                row += [f"{lv.pycrid.median(name):.2f} / {lv.pycrid.p95(name):.2f}"]
                row += [f"{lv.floor.median(name):.2f} / {lv.floor.p95(name):.2f}", f"{ratio:.1f}"]
            rows.append(row)
    out.append(
        table(
            f"List and status calls (ms, median / p95 of {args.repeats} calls each)",
            header,
            rows,
            fmt,
        )
    )

    header = ["pods"]
    for a in adapters:
        header += [f"{a} pod start (ms)", f"{a} RSS (MiB)", "floor RSS (MiB)"]
    rows = []
    for count in args.counts:
        row = [str(count)]
        for a in adapters:
            lv = levels[a, count]
            row += [f"{lv.starts.median('pod start'):.0f}", f"{lv.pycrid_rss:.1f}"]
            row.append(f"{lv.floor_rss:.1f}")
        rows.append(row)
    out.append(table("Pod start (median of the pods added) and resident memory", header, rows, fmt))

    idle_levels = [(a, levels[a, args.counts[-1]].idle) for a in adapters]
    if any(idle for _, idle in idle_levels):
        header = ["adapter", "pycrid CPU %", "dockerd CPU %", "floor CPU %"]
        header += ["pycrid round (ms)", "floor round (ms)", "no calls: pycrid %", "dockerd %"]
        rows = [
            [
                a,
                f"{i.pycrid_cpu:.2f}",
                f"{i.dockerd_cpu:.2f}",
                f"{i.floor_cpu:.2f}",
                f"{i.pycrid_round:.1f}",
                f"{i.floor_round:.1f}",
                f"{i.pycrid_quiet:.2f}",
                f"{i.dockerd_quiet:.2f}",
            ]
            for a, i in idle_levels
            if i is not None
        ]
        title = (
            f"Idle cost at {args.counts[-1]} pods: a 1 Hz relist for {args.idle_seconds} s, "
            "and as long with no calls (percent of one core)"
        )
        out.append(table(title, header, rows, fmt))
        echoes = next(i for _, i in idle_levels if i is not None)
        out.append(
            f"This machine: a one-byte echo between two processes takes "
            f"{echoes.echo_after_quiet:.2f} ms after 1 s of quiet, "
            f"{echoes.echo_back_to_back:.3f} ms back to back.\n"
        )

    columns = [(a, c) for a in adapters for c in args.counts]
    header = ["call", *(f"{a} {c}" for a, c in columns)]
    rows = [
        [name, *(f"{levels[a, c].lifecycle.median(name):.1f}" for a, c in columns)]
        for name in LIFECYCLE_CALLS
    ]
    title = f"Lifecycle calls (ms, median of {args.lifecycle_repeats}; adapter and pod count)"
    out.append(table(title, header, rows, fmt))
    return "\n".join(out)


def counts_list(text: str) -> list[int]:
    counts = sorted({int(c) for c in text.split(",")})
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("pod counts are positive integers")
    return counts


def main() -> None:
    """Parse the options and run the benchmark (or, internally, serve the floor)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", default="docker", help="comma-separated: docker,oci")
    parser.add_argument("--counts", type=counts_list, default="10,50,100", help="pod counts")
    parser.add_argument("--repeats", type=int, default=200, help="calls timed per read call")
    parser.add_argument("--lifecycle-repeats", type=int, default=10, help="containers run")
    parser.add_argument("--idle-seconds", type=int, default=30, help="length of the 1 Hz relist")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    parser.add_argument(
        "--serve-floor", nargs=2, metavar=("SOCKET", "DATA"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_floor:
        asyncio.run(serve_floor(Path(args.serve_floor[0]), Path(args.serve_floor[1])))
        return

    # SIGTERM unwinds like Ctrl-C, through every clean-up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, list[Level]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="pycrid-bench-") as scratch:
            for adapter in args.adapters.split(","):
                results[adapter] = bench_adapter(adapter, args, Path(scratch))
    except KeyboardInterrupt:
        progress("interrupted; everything the benchmark created is removed")
        sys.exit(130)
    print(report(results, args))


if __name__ == "__main__":
    main()
