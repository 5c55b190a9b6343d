"""Fuzz: generated and hostile CRI requests against a real daemon, on each adapter (CNI).

Every RPC of ``runtime.v1.RuntimeService`` and ``ImageService`` gets requests
drawn by hypothesis from its input message's descriptor (``crigen.py``), with
the IDs of a real pod and real containers mixed in so that the adapter's code
runs too. The whole run is bounded: ``EXAMPLES`` requests per RPC at most and
``BUDGET`` seconds of requests in all, shared out by ``WEIGHTS``.

It checks that the daemon never answers UNKNOWN or INTERNAL, does not hang,
does not die, and that once every pod and container is removed through the CRI
nothing is left: no Docker container of the daemon, no checkpoint, no run
file or pinned netns, no CNI IP allocation, no iptables rule of the pod subnet
(on oci: no record, root filesystem, mount or conmon).

Paths in requests include FIFOs, device nodes and symlinks (``crigen.HOSTILE_FILES``)
and ``/dev/zero``; a few shapes random requests cannot draw are sent once per run
(``known_defects``): counts far above ``[limits]``, a PID namespace target in
another pod. While the fuzz runs, a watcher asks Version every 0.2 s: an answer
slower than ``VERSION_SLOW`` is a failure (something blocked the event loop).

Deterministic by default (seed 0). ``PYCRID_FUZZ_RANDOM=1`` draws a random seed
and ``PYCRID_FUZZ_SEED=n`` replays one; ``PYCRID_FUZZ_BUDGET`` (seconds) and
``PYCRID_FUZZ_EXAMPLES`` change the bounds. The summary (requests, codes, seed)
is printed in the terminal summary, with or without ``-s``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, seed, settings

from crictl_tests import crigen
from crictl_tests.dockerpods import Pods, cni_conf_dir, docker_ids, files_under
from crictl_tests.harness import BUSYBOX_IMAGE, PAUSE_IMAGE, Daemon
from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node.imageref import parse_reference
from pycrid.api.cri import api_pb2 as cri

CALL_DEADLINE = 15.0
"""The deadline of every generated call."""
BUDGET = float(os.environ.get("PYCRID_FUZZ_BUDGET", "75"))
"""Seconds of generated requests per adapter."""
EXAMPLES = int(os.environ.get("PYCRID_FUZZ_EXAMPLES", "300"))
TRACE = frozenset(filter(None, os.environ.get("PYCRID_FUZZ_TRACE", "").split(",")))
"""RPCs whose most common error messages the summary lists (a debugging aid)."""
EVENTS_WINDOW = 0.3
VERSION_SLOW = 1.0
"""Seconds within which Version must answer whatever else is in flight."""
"""How long the endless GetContainerEvents stream is read before the test cancels it."""

if os.environ.get("PYCRID_FUZZ_RANDOM", "") not in ("", "0"):
    SEED = random.SystemRandom().randrange(2**32)
else:
    SEED = int(os.environ.get("PYCRID_FUZZ_SEED", "0"))

FUZZ_BRIDGE = "pycrid-fz0"
FUZZ_SUBNET = "10.89.79.0/24"
"""Pods get addresses here, on a bridge of their own, with no route off it."""

# What runs last: these take the real pod and containers away.
DESTRUCTIVE = (
    "StopContainer",
    "RemoveContainer",
    "RemoveImage",
    "StopPodSandbox",
    "RemovePodSandbox",
)
ENDLESS = frozenset({"GetContainerEvents"})
WEIGHTS = {
    "RunPodSandbox": 8,
    "CreateContainer": 6,
    "PullImage": 3,
    "StartContainer": 3,
    "ExecSync": 3,
    "ContainerStats": 2,
    "ListContainerStats": 2,
    "StreamContainerStats": 2,
    "PodSandboxStats": 2,
    "ListPodSandboxStats": 2,
    "StreamPodSandboxStats": 2,
    "StopContainer": 2,
    "StopPodSandbox": 2,
    "RemovePodSandbox": 2,
}
"""Share of the time budget per RPC (1 when not listed); time one RPC leaves is passed on."""

ACCEPTED = frozenset(grpc.StatusCode) - {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


@dataclass
class Fuzzer:
    daemon: Daemon
    pool: crigen.Pool
    codes: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(what happened, the request that showed it)."""
    seconds: Counter[str] = field(default_factory=Counter)
    traced: Counter[str] = field(default_factory=Counter)
    pulled: set[str] = field(default_factory=set)
    """Image names that generated PullImage requests pulled."""
    sent: int = 0
    crashed: bool = False
    adapter: str = "docker"

    def call(self, method: MethodDescriptor, request: Message) -> tuple[grpc.StatusCode, str, Any]:
        """Send one request; its status code, details and response (None for streams)."""
        images = method.containing_service.name == "ImageService"
        stub = getattr(self.daemon.images if images else self.daemon.runtime, method.name)
        timer = None
        try:
            if method.server_streaming:
                stream = stub(request, timeout=CALL_DEADLINE)
                if method.name in ENDLESS:
                    timer = threading.Timer(EVENTS_WINDOW, stream.cancel)
                    timer.start()
                for _ in stream:
                    pass
                response = None
            else:
                response = stub(request, timeout=CALL_DEADLINE)
        except grpc.RpcError as e:
            return e.code(), e.details() or "", None
        finally:
            if timer is not None:
                timer.cancel()
        return grpc.StatusCode.OK, "", response

    def send(self, method: MethodDescriptor, request: Message) -> None:
        crigen.check_safe(method.name, request, self.pool)
        self.sent += 1
        began = time.monotonic()
        code, details, response = self.call(method, request)
        self.seconds[method.name] += time.monotonic() - began
        self.codes[(method.name, code.name)] += 1
        if method.name in TRACE:
            self.traced[f"{method.name} {code.name} {details[:90]}"] += 1
        # What generated requests create, later ones use.
        if isinstance(response, cri.RunPodSandboxResponse):
            self.pool.sandbox_ids.append(response.pod_sandbox_id)
        if isinstance(response, cri.CreateContainerResponse):
            self.pool.container_ids.append(response.container_id)
        if isinstance(response, cri.PullImageResponse):
            self.pulled.add(request.image.image)
        if self.accepted(method, request, code):
            return
        if self.daemon.process is not None and self.daemon.process.poll() is not None:
            self.crashed = True
            details = f"the daemon exited ({self.daemon.process.returncode}); {details}"
        self.failures.append(
            (f"{method.name} -> {code.name}: {details[:200]!r}", crigen.short_repr(request))
        )

    def accepted(self, method: MethodDescriptor, request: Message, code: grpc.StatusCode) -> bool:
        if code == grpc.StatusCode.CANCELLED:
            return method.name in ENDLESS  # the test cancelled it
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            # Only a timeout in the request explains it: ExecSync answers so when
            # its command outlives the timeout (the CRI says so), StopContainer
            # when its grace period outlives the call's deadline. Else it is a hang.
            if isinstance(request, cri.ExecSyncRequest):
                return request.timeout > 0
            timeout = getattr(request, "timeout", 0)
            return isinstance(timeout, int) and timeout >= CALL_DEADLINE - 1
        if code == grpc.StatusCode.UNAVAILABLE:
            return self.daemon.process is None or self.daemon.process.poll() is None
        return code in ACCEPTED

    def fuzz(self, method: MethodDescriptor, index: int, until: float) -> None:
        """Up to EXAMPLES requests for ``method``, none sent after ``until``."""

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @seed(SEED + index)
        @given(crigen.request_strategy(method, self.pool))
        def run(request: Message) -> None:
            if self.crashed or time.monotonic() > until:
                return
            self.send(method, request)

        run()


def methods() -> list[MethodDescriptor]:
    """Every RPC of both services, the destructive ones last."""
    found = [
        method
        for service in ("RuntimeService", "ImageService")
        for method in cri.DESCRIPTOR.services_by_name[service].methods
    ]
    return sorted(found, key=lambda m: DESTRUCTIVE.index(m.name) if m.name in DESTRUCTIVE else -1)


# The machine around the daemon.


def fuzz_network(root: Path) -> tuple[Path, Path]:
    """The shipped conflist on a bridge and subnet of the fuzz's own, with no way out.

    No masquerading and no default route: whatever a pod tried, it reaches its
    bridge and nothing else.
    """
    conf_dir, ipam_dir = cni_conf_dir(root)
    conflist = next(conf_dir.glob("*.conflist"))
    conf = json.loads(conflist.read_text())
    bridge = conf["plugins"][0]
    bridge.update(bridge=FUZZ_BRIDGE, ipMasq=False)
    bridge["ipam"]["ranges"] = [[{"subnet": FUZZ_SUBNET}]]
    bridge["ipam"]["routes"] = []
    conflist.write_text(json.dumps(conf))
    return conf_dir, ipam_dir


def scratch_dir() -> Path:
    """Where generated log directories, mounts and seccomp profiles point."""
    root = Path(tempfile.mkdtemp(prefix="pycrid-fuzz-"))
    (root / "mnt").mkdir()
    (root / "logs").mkdir()
    (root / "file.txt").write_text("fuzz\n")
    (root / "seccomp.json").write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    (root / "bad-seccomp.json").write_text("{")
    (root / "empty-seccomp.json").write_text("")
    # crigen.HOSTILE_FILES and crigen.LOG_FILES.
    zero = os.makedev(1, 5)  # /dev/zero's numbers
    os.mkfifo(root / "fifo")
    os.mknod(root / "zero", 0o666 | stat.S_IFCHR, zero)
    (root / "link-to-fifo").symlink_to(root / "fifo")
    (root / "link-to-seccomp.json").symlink_to(root / "seccomp.json")
    os.mkfifo(root / "logs" / "fifo.log")
    os.mknod(root / "logs" / "zero.log", 0o666 | stat.S_IFCHR, zero)
    (root / "logs" / "link.log").symlink_to(root / "file.txt")
    (root / "logs" / "link-dir").symlink_to(root / "mnt")
    return root


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A command's result; a command that hangs (a wedged dockerd) fails the test, not CI."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{' '.join(argv)[:200]} did not finish in {timeout}s") from None


def subnet_rules() -> list[str]:
    """iptables rules that still name the fuzz subnet (CNI DEL removes a pod's)."""
    prefix = FUZZ_SUBNET.rsplit(".", 1)[0] + "."  # "10.89.79."
    rules = []
    for table in ("nat", "filter"):
        out = run("iptables", "-w", "5", "-t", table, "-S").stdout
        rules += [line for line in out.splitlines() if prefix in line]
    return rules


def image_tags() -> set[str]:
    """Docker's image tags, in full form (``docker.io/library/busybox:latest``)."""
    out = run("docker", "images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    return {normalized(line) for line in out.split() if not line.endswith(":<none>")}


def normalized(name: str) -> str:
    try:
        return str(parse_reference(name))
    except InvalidArgument:
        return name


def remove_cgroups() -> None:
    """The cgroup parents that generated pods named (Docker leaves parents behind)."""
    root = Path("/sys/fs/cgroup")
    hierarchies = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    for hierarchy in [root, *hierarchies]:
        for top in hierarchy.glob(f"{crigen.CGROUP_PREFIX}*"):
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)


@contextlib.contextmanager
def tidy_machine(daemon: Daemon, scratch: Path, pulled: set[str]) -> Iterator[None]:
    """Afterwards: what the fuzz added to the shared machine goes, whatever happened.

    ``pulled`` is filled meanwhile with the image names the fuzz pulled; the
    tags among them that Docker did not have before are removed (never with
    ``-f``: an image keeps its other names).
    """
    tags_before = image_tags()
    bridge_before = Path(f"/sys/class/net/{FUZZ_BRIDGE}").exists()
    try:
        yield
    finally:
        try:
            for container_id in docker_ids(daemon):
                run("docker", "rm", "-f", container_id)
            added = image_tags() - tags_before
            for tag in sorted({normalized(name) for name in pulled} & added):
                run("docker", "rmi", tag)
        finally:
            remove_cgroups()
            if not bridge_before:
                run("ip", "link", "del", FUZZ_BRIDGE)
            shutil.rmtree(scratch, ignore_errors=True)


# Real objects whose IDs the requests use.


def real_objects(pods: Pods, scratch: Path) -> crigen.Pool:
    sandbox_id = pods.run(pods.sandbox_config("fuzz-real"))
    # A shell that stops on SIGTERM at once, so that StopContainer does not wait.
    loop = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    running = pods.run_container(sandbox_id, pods.container_config("running", command=loop))
    created = pods.create(sandbox_id, pods.container_config("created", command=["true"]))
    exited = pods.run_container(sandbox_id, pods.container_config("exited", command=["true"]))
    pods.wait_exited(exited)
    image_ids = [
        pods.daemon.images.ImageStatus(
            cri.ImageStatusRequest(image=cri.ImageSpec(image=name)), timeout=CALL_DEADLINE
        ).image.id
        for name in (BUSYBOX_IMAGE, PAUSE_IMAGE)
    ]
    status = pods.rt.Status(cri.StatusRequest(), timeout=CALL_DEADLINE)
    return crigen.Pool(
        sandbox_ids=[sandbox_id],
        container_ids=[running, created, exited],
        image_names=[BUSYBOX_IMAGE, PAUSE_IMAGE, "busybox"],
        image_ids=image_ids,
        scratch=scratch,
        runtime_handlers=[h.name for h in status.runtime_handlers],
    )


def known_defects(pods: Pods, sandbox_id: str, scratch: Path) -> list[tuple[str, str]]:
    """Defects found by fuzzing, checked once on every run with a request of their own.

    Random requests find them only by chance (a generated ID prefix has to pick
    the right container), or must not reach them at all (see the first).
    """
    return [
        *_long_program_in_args(pods, sandbox_id),
        *_bad_mounts(pods, sandbox_id, scratch),
        *_working_dir_on_a_file(pods, sandbox_id),
        *_huge_counts(pods, sandbox_id),
        *_cross_pod_target(pods, sandbox_id),
    ]


def _refused_at_once(what: str, request: Message, call: Callable[[], Any]) -> list[tuple[str, str]]:
    """``call`` must be INVALID_ARGUMENT within 2 seconds."""
    began = time.monotonic()
    try:
        call()
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        code, details = e.code(), e.details() or ""
    took = time.monotonic() - began
    if code == grpc.StatusCode.INVALID_ARGUMENT and took < 2.0:
        return []
    found = (
        f"{what} -> {code.name} in {took:.1f}s: {details[:200]!r}; want INVALID_ARGUMENT at once"
    )
    return [(found, crigen.short_repr(request))]


def _huge_counts(pods: Pods, sandbox_id: str) -> list[tuple[str, str]]:
    """Counts far above the default ``[limits]``: refused before any work."""
    found = []
    shapes: dict[str, Callable[[cri.ContainerConfig], None]] = {
        "100,000 environment variables": lambda c: c.envs.extend(
            cri.KeyValue(key=f"V{i}", value=b"x" * 100) for i in range(100_000)
        ),
        "5,000 mounts": lambda c: c.mounts.extend(
            cri.Mount(container_path=f"/m{i}", host_path="/etc/hostname") for i in range(5000)
        ),
        "5,000 devices": lambda c: c.devices.extend(
            cri.Device(container_path=f"/dev/d{i}", host_path="/dev/null") for i in range(5000)
        ),
    }
    for what, shape in shapes.items():
        config = pods.container_config("huge", command=["true"])
        shape(config)
        request = cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config)
        found += _refused_at_once(
            f"CreateContainer with {what}",
            request,
            lambda r=request: pods.rt.CreateContainer(r, timeout=CALL_DEADLINE),
        )
    pod = pods.sandbox_config("huge")
    pod.port_mappings.extend(cri.PortMapping(container_port=1 + i) for i in range(5000))
    run_request = cri.RunPodSandboxRequest(config=pod)
    found += _refused_at_once(
        "RunPodSandbox with 5,000 port mappings",
        run_request,
        lambda: pods.rt.RunPodSandbox(run_request, timeout=CALL_DEADLINE),
    )
    return found


def _cross_pod_target(pods: Pods, sandbox_id: str) -> list[tuple[str, str]]:
    """A PID namespace target in another pod (its processes would show)."""
    other = pods.run(pods.sandbox_config("fuzz-other"))
    foreign = pods.create(other, pods.container_config("foreign", command=["true"]))
    config = pods.container_config("cross-pod", command=["true"])
    options = config.linux.security_context.namespace_options
    options.pid, options.target_id = cri.TARGET, foreign
    request = cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config)
    return _refused_at_once(
        "CreateContainer with a PID target in another pod",
        request,
        lambda: pods.rt.CreateContainer(request, timeout=CALL_DEADLINE),
    )


def _create(pods: Pods, request: cri.CreateContainerRequest) -> tuple[str, grpc.RpcError | None]:
    try:
        return pods.rt.CreateContainer(request, timeout=CALL_DEADLINE).container_id, None
    except grpc.RpcError as e:
        return "", e


def _long_program_in_args(pods: Pods, sandbox_id: str) -> list[tuple[str, str]]:
    """A program name of some 40 KiB wedges ``runc create`` at StartContainer.

    With it the container in the shared dockerd (``docker rm -f`` hangs until
    runc is killed), so it is never started here. Validation refuses it in
    ``command[0]``; in ``args[0]`` it is the program only when the image has no
    ENTRYPOINT (busybox has none), which only the adapter knows, so
    CreateContainer must refuse it there.
    """
    config = pods.container_config("long-program", command=[], args=["/x/" + "a" * 40_000])
    request = cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config)
    created, error = _create(pods, request)
    if created:
        pods.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=created), timeout=60)
        what = "OK, and StartContainer would wedge runc and the container in dockerd"
    elif error is not None and error.code() != grpc.StatusCode.INVALID_ARGUMENT:
        what = f"{error.code().name}: {error.details()[:200]!r}"
    else:
        return []
    return [
        (
            "CreateContainer of a 40 KiB program name in args[0] (image without ENTRYPOINT) -> "
            f"{what}; want INVALID_ARGUMENT",
            crigen.short_repr(request),
        )
    ]


def _working_dir_on_a_file(pods: Pods, sandbox_id: str) -> list[tuple[str, str]]:
    """A working_dir that is a file in the image: Docker fails the create with a 500 error."""
    config = pods.container_config("file-cwd", command=["true"], working_dir="/etc/hostname")
    request = cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config)
    created, error = _create(pods, request)
    if created:
        pods.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=created), timeout=60)
    if error is None or error.code() in ACCEPTED:
        return []
    return [
        (
            f"CreateContainer with a file as working_dir -> {error.code().name}: "
            f"{error.details()[:200]!r}",
            crigen.short_repr(request),
        )
    ]


def _bad_mounts(pods: Pods, sandbox_id: str, scratch: Path) -> list[tuple[str, str]]:
    """Mounts that only runc refuses, at StartContainer, where Docker answers 500.

    Bidirectional propagation of a host path whose mount is private (the CRI
    runtimes refuse that at CreateContainer), and a mount inside /proc.
    """
    source = str(scratch / "mnt")
    cases = {
        "a bidirectional mount of a private host path": cri.Mount(
            container_path="/m", host_path=source, propagation=cri.PROPAGATION_BIDIRECTIONAL
        ),
        "a mount inside /proc": cri.Mount(container_path="/proc/x", host_path=source),
    }
    found = []
    for i, (what, mount) in enumerate(cases.items()):
        config = pods.container_config(f"bad-mount-{i}", command=["true"], mounts=[mount])
        request = cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config)
        created, error = _create(pods, request)
        code, details = (error.code(), error.details()) if error else (grpc.StatusCode.OK, "")
        rpc = "CreateContainer"
        if created:
            rpc = "StartContainer"
            try:
                pods.start(created)
            except grpc.RpcError as e:
                code, details = e.code(), e.details()
            finally:
                rt = pods.rt
                rt.StopContainer(cri.StopContainerRequest(container_id=created), timeout=60)
                rt.RemoveContainer(cri.RemoveContainerRequest(container_id=created), timeout=60)
        if code not in ACCEPTED:
            found.append(
                (f"{rpc} of {what} -> {code.name}: {details[:200]!r}", crigen.short_repr(request))
            )
    return found


def remove_everything(daemon: Daemon) -> list[str]:
    """Stop and remove every container and pod through the CRI; the failures."""
    rt = daemon.runtime
    failures = []

    def attempt(what: str, call: Callable[[], Any]) -> None:
        try:
            call()
        except grpc.RpcError as e:
            failures.append(f"cleanup: {what} -> {e.code().name}: {e.details()}")

    for c in rt.ListContainers(cri.ListContainersRequest(), timeout=60).containers:
        attempt(
            f"StopContainer {c.id[:13]}",
            lambda c=c: rt.StopContainer(cri.StopContainerRequest(container_id=c.id), timeout=60),
        )
        attempt(
            f"RemoveContainer {c.id[:13]}",
            lambda c=c: rt.RemoveContainer(
                cri.RemoveContainerRequest(container_id=c.id), timeout=60
            ),
        )
    for p in rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=60).items:
        attempt(
            f"StopPodSandbox {p.id[:13]}",
            lambda p=p: rt.StopPodSandbox(
                cri.StopPodSandboxRequest(pod_sandbox_id=p.id), timeout=60
            ),
        )
        attempt(
            f"RemovePodSandbox {p.id[:13]}",
            lambda p=p: rt.RemovePodSandbox(
                cri.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=60
            ),
        )
    left = [
        c.id[:13] for c in rt.ListContainers(cri.ListContainersRequest(), timeout=60).containers
    ]
    left += [p.id[:13] for p in rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=60).items]
    if left:
        failures.append(f"cleanup: still listed after removal: {left}")
    return failures


# The summary in the terminal report.


class Summary:
    """Lines for the terminal summary's "CRI fuzz" section (shown without -s)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.lines:
            terminalreporter.section("CRI fuzz")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture
def summary(request: pytest.FixtureRequest) -> Summary:
    manager = request.config.pluginmanager
    plugin = manager.get_plugin("pycrid-fuzz-summary")
    if plugin is None:
        plugin = Summary()
        manager.register(plugin, "pycrid-fuzz-summary")
    return plugin


def describe(fuzzer: Fuzzer, elapsed: float) -> list[str]:
    totals: Counter[str] = Counter()
    by_rpc: dict[str, Counter[str]] = {}
    for (rpc, code), n in fuzzer.codes.items():
        totals[code] += n
        by_rpc.setdefault(rpc, Counter())[code] += n

    def codes(counter: Counter[str]) -> str:
        return ", ".join(f"{code} {n}" for code, n in counter.most_common())

    lines = [
        f"fuzz: {fuzzer.sent} requests in {elapsed:.0f}s (seed {SEED}): {codes(totals)}",
    ]
    lines += [
        f"  {rpc} ({fuzzer.seconds[rpc]:.1f}s): {codes(counter)}" for rpc, counter in by_rpc.items()
    ]
    lines += [f"  trace: {n} x {what}" for what, n in fuzzer.traced.most_common(25)]
    return lines


GLOBAL_STATE = frozenset({"image-names.json", "runtime-config.json"})
"""The adapters' state files that belong to no pod or container."""


def other_state_files(daemon: Daemon) -> list[str]:
    """Per-object state files that ``Pods.leftovers`` does not look for (log copiers')."""
    state = Path(daemon.config["state_dir"]) / "docker"
    checked = (state / "sandboxes", state / "containers")
    return [
        str(path.relative_to(state))
        for path in files_under(state)
        if not path.is_relative_to(checked[0])
        and not path.is_relative_to(checked[1])
        and not (path.parent == state and path.name in GLOBAL_STATE)
    ]


def logged_errors(daemon: Daemon) -> list[str]:
    """Errors the daemon logged that no status code showed (background tasks, callbacks).

    An INTERNAL answer is logged too ("failed unexpectedly"); those are counted as codes.
    """
    try:
        lines = daemon.log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [
        line[:300]
        for line in lines
        if (" ERROR " in line or " CRITICAL " in line or "never retrieved" in line)
        and "failed unexpectedly" not in line
    ]


def require_alive(daemon: Daemon, failures: list[tuple[str, str]]) -> None:
    """The daemon still runs and answers Version; else fail with what was found so far."""
    try:
        assert daemon.process is not None and daemon.process.poll() is None, "it exited"
        daemon.runtime.Version(cri.VersionRequest(), timeout=10)
    except (AssertionError, grpc.RpcError) as e:
        found = "\n".join(grouped(failures))
        raise AssertionError(
            f"the daemon died or hangs ({e}); failures so far:\n{found}\n"
            f"daemon log:\n{daemon.log_tail()}"
        ) from None


def grouped(failures: list[tuple[str, str]]) -> list[str]:
    """One entry per kind of failure, with its count and the first request that showed it."""
    kinds: dict[str, list[str]] = {}
    for kind, example in failures:
        kinds.setdefault(kind, []).append(example)
    return [
        f"{kind}  (x{len(examples)})" + (f"\n    request: {examples[0]}" if examples[0] else "")
        for kind, examples in kinds.items()
    ]


class VersionWatch:
    """Asks Version every 0.2 s in a thread; the slowest answer, and failures."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.slowest = 0.0
        self.failures: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> VersionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            began = time.monotonic()
            try:
                self.daemon.runtime.Version(cri.VersionRequest(), timeout=10)
            except grpc.RpcError as e:
                if self.daemon.process is None or self.daemon.process.poll() is None:
                    self.failures.append((f"Version -> {e.code().name} during the fuzz", ""))
                return
            took = time.monotonic() - began
            self.slowest = max(self.slowest, took)
            if took > VERSION_SLOW:
                self.failures.append((f"Version answered after {took:.1f}s during the fuzz", ""))


@pytest.mark.parametrize("adapter", ["docker", "oci"])
def test_generated_requests_get_no_unknown_or_internal_and_leave_nothing(
    adapter: str,
    docker_engine: None,
    test_registry: None,
    daemon_factory: Callable[..., Daemon],
    summary: Summary,
) -> None:
    scratch = scratch_dir()
    conf_dir, ipam_dir = fuzz_network(scratch)
    daemon = daemon_factory(adapter, {"network": {"mode": "cni", "cni_conf_dir": str(conf_dir)}})
    pods = Pods(daemon, ipam_dir=ipam_dir)
    failures: list[tuple[str, str]] = []
    pulled: set[str] = set()
    with tidy_machine(daemon, scratch, pulled):
        try:
            pods.pull(BUSYBOX_IMAGE)
            fuzzer = Fuzzer(daemon, real_objects(pods, scratch), pulled=pulled, adapter=adapter)
            started = time.monotonic()
            with VersionWatch(daemon) as watch:
                failures += known_defects(pods, fuzzer.pool.sandbox_ids[0], scratch)
                todo = methods()
                for index, method in enumerate(todo):
                    left = BUDGET - (time.monotonic() - started)
                    weights = [WEIGHTS.get(m.name, 1) for m in todo[index:]]
                    fuzzer.fuzz(method, index, time.monotonic() + left * weights[0] / sum(weights))
                    if fuzzer.crashed:
                        break
            summary.lines += [f"{adapter} adapter:"]
            summary.lines += describe(fuzzer, time.monotonic() - started)
            summary.lines.append(f"  slowest Version during the fuzz: {watch.slowest:.3f}s")
            failures += watch.failures
            failures += fuzzer.failures
            require_alive(daemon, failures)
            failures += [(line, "") for line in remove_everything(daemon)]
            leftovers = pods.leftovers()
            if adapter == "docker":
                leftovers["other state files"] = other_state_files(daemon)
            else:  # UpdateRuntimeConfig's file belongs to no pod
                records = leftovers.get("records and root filesystems", [])
                records[:] = [p for p in records if p.name not in GLOBAL_STATE]
                leftovers = {kind: found for kind, found in leftovers.items() if found}
            leftovers["iptables rules"] = subnet_rules()
            failures += [(f"left behind: {k}: {v[:5]}", "") for k, v in leftovers.items() if v]
            failures += [(f"daemon log: {line}", "") for line in logged_errors(daemon)]
            require_alive(daemon, failures)
        finally:
            shutil.rmtree(pods.log_root, ignore_errors=True)
    report = grouped(failures)
    summary.lines.append(f"fuzz: {len(failures)} failures of {len(report)} kinds")
    assert not report, f"{len(failures)} failures:\n" + "\n".join(report)
