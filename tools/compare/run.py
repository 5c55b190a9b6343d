"""One comparison run: start the sides, run each scenario on both, clean up, report.

Cleaning up is what the run must never skip. Each scenario removes its pods
when it ends; at the end of the run (normal, failed or interrupted by SIGINT
or SIGTERM) every pod and container that carries this run's label is removed
on both sides, then every image the run pulled that was not there before,
and then the daemons started here are stopped.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import grpc

from pycrid.api.cri import api_pb2 as cri
from pycrid.tools.compare import sides as sidelib
from pycrid.tools.compare.diff import SideRun, compare_scenario
from pycrid.tools.compare.normalise import Normaliser
from pycrid.tools.compare.observe import LABEL, Abort, Probe
from pycrid.tools.compare.report import Result
from pycrid.tools.compare.rules import Rule
from pycrid.tools.compare.scenarios import Scenario
from pycrid.tools.compare.sides import Side
from pycrid.tools.compare.timings import timings

CLEANUP_TIMEOUT = 60.0


@dataclass
class Options:
    a: str
    b: str
    scenarios: list[Scenario]
    rules: list[Rule]
    images: dict[str, str]
    repeat: int = 5
    adapter_config: dict[str, Any] = field(default_factory=dict)


class Progress:
    """One line on stderr, rewritten in place on a terminal."""

    def __init__(self, total: int, out: TextIO = sys.stderr) -> None:
        self.total, self.done, self.out = total, 0, out
        self.tty = out.isatty()

    def show(self, text: str) -> None:
        width = 20
        filled = width * self.done // max(self.total, 1)
        line = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {text}"
        if self.tty:
            self.out.write(f"\r\033[K{line}")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def step(self) -> None:
        self.done += 1

    def close(self) -> None:
        if self.tty:
            self.out.write("\r\033[K")
            self.out.flush()


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM interrupts like SIGINT does, so that the same ``finally`` cleans up."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """A second Ctrl-C must not cut the cleanup short."""
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def compare(options: Options, progress: Progress | None = None) -> Result:
    run_id = uuid.uuid4().hex[:12]
    pair = [sidelib.parse_side(options.a, "A"), sidelib.parse_side(options.b, "B")]
    result = Result(
        options.a, options.b, run_id, [s.name for s in options.scenarios], options.repeat
    )
    progress = progress or Progress(len(options.scenarios) * 2)
    log_roots = {
        s.label: tempfile.mkdtemp(prefix=f"pycrid-cmp-logs-{s.label.lower()}-") for s in pair
    }
    present: dict[str, set[str]] = {}
    with _signals_interrupt():
        try:
            for side in pair:
                progress.show(f"starting {side.spec}")
                sidelib.start(side, options.images["pause"], options.adapter_config)
                present[side.label] = _images_present(side, options.images)
            for scenario in options.scenarios:
                runs = []
                for side in pair:
                    progress.show(f"{scenario.name} on {side.label}")
                    runs.append(
                        _run_scenario(scenario, side, run_id, options, log_roots[side.label])
                    )
                    progress.step()
                result.differences += compare_scenario(
                    scenario.name, runs[0], runs[1], options.rules
                )
                result.timings += timings(scenario.name, runs[0].observations, runs[1].observations)
        finally:
            with _signals_ignored():
                progress.show("cleaning up")
                for side in pair:
                    _clean_up(side, run_id, options.images, present.get(side.label))
                    sidelib.stop(side)
                for root in log_roots.values():
                    shutil.rmtree(root, ignore_errors=True)
                progress.close()
    return result


def _run_scenario(
    scenario: Scenario, side: Side, run_id: str, options: Options, log_root: str
) -> SideRun:
    probe = Probe(side, run_id, options.images, options.repeat, log_root)
    stopped = ""
    try:
        scenario.run(probe)
    except Abort as e:
        stopped = str(e)
    except grpc.RpcError as e:
        stopped = f"{e.code().name}: {e.details()}"
    finally:
        for pod in probe.pods:
            _remove_pod(side, pod)
    normaliser = Normaliser(probe.names, [log_root, *side.private_dirs])
    return SideRun(probe.observations, normaliser, stopped)


def _remove_pod(side: Side, pod: str) -> None:
    # Stop and remove succeed on what is gone: the CRI requires it.
    with contextlib.suppress(grpc.RpcError):
        side.runtime.StopPodSandbox(
            cri.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=CLEANUP_TIMEOUT
        )
    with contextlib.suppress(grpc.RpcError):
        side.runtime.RemovePodSandbox(
            cri.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=CLEANUP_TIMEOUT
        )


def _images_present(side: Side, images: dict[str, str]) -> set[str]:
    present = set()
    for name in images.values():
        with contextlib.suppress(grpc.RpcError):
            answer = side.images.ImageStatus(
                cri.ImageStatusRequest(image=cri.ImageSpec(image=name)), timeout=30
            )
            if answer.HasField("image"):
                present.add(name)
    return present


def _clean_up(side: Side, run_id: str, images: dict[str, str], present: set[str] | None) -> None:
    """Remove what this run created on ``side``, and only that."""
    if side.runtime is None:
        return
    mine = {LABEL: run_id}
    with contextlib.suppress(grpc.RpcError):
        pods = side.runtime.ListPodSandbox(
            cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(label_selector=mine)), timeout=30
        )
        for pod in pods.items:
            _remove_pod(side, pod.id)
    with contextlib.suppress(grpc.RpcError):
        containers = side.runtime.ListContainers(
            cri.ListContainersRequest(filter=cri.ContainerFilter(label_selector=mine)), timeout=30
        )
        for container in containers.containers:
            with contextlib.suppress(grpc.RpcError):
                side.runtime.RemoveContainer(
                    cri.RemoveContainerRequest(container_id=container.id), timeout=CLEANUP_TIMEOUT
                )
    if present is None:
        return
    for key, name in images.items():
        # The pause image is the runtime's own business, not this run's.
        if key == "pause" or name in present:
            continue
        with contextlib.suppress(grpc.RpcError):
            spec = cri.ImageSpec(image=name)
            if side.images.ImageStatus(cri.ImageStatusRequest(image=spec), timeout=30).HasField(
                "image"
            ):
                side.images.RemoveImage(cri.RemoveImageRequest(image=spec), timeout=CLEANUP_TIMEOUT)
