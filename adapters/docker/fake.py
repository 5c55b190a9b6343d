"""An in-memory dockerd for unit tests: ``DockerApi`` on plain dicts.

``FakeDocker`` keeps what the adapter reads back: containers with their
names, labels, states, times and exit codes; images with their IDs, tags and
digests, and a registry to pull more from; execs with their output; each
container's log. It fails the way dockerd does, through the same status
table (errormap.py): a taken name is a 409 that create_container turns into
AlreadyExists, a missing container a 404, and so on.

Tests play the parts dockerd leaves to processes and to the network: a
container ``exit``s (or is ``oom_killed``), an exec runs one of
``programs``, a container ``log``s a line. They also break it: ``fail`` makes
the next calls of a method raise, ``delay`` makes them slow (bounded by the
CRI call's deadline as the real client is), ``down`` makes dockerd
unreachable; ``calls`` records every call.

The fake's processes have PIDs above any kernel's ``pid_max``, so code that
reads /proc or signals a PID never touches a real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pycrid.adapters import errors
from pycrid.adapters.deadline import seconds_left
from pycrid.adapters.docker.api import (
    ContainerInspect,
    ContainerSummary,
    DiskUsage,
    Document,
    ExecInspect,
    Filters,
    ImageConfig,
    ImageInspect,
    ImageSummary,
    SystemInfo,
)
from pycrid.adapters.docker.errormap import error_for_status, pull_stream_error
from pycrid.adapters.docker.hijack import Hijacked
from pycrid.adapters.docker.stdstream import encode_frame
from pycrid.adapters.node.imageref import parse_reference

ZERO_TIME = "0001-01-01T00:00:00Z"
FIRST_PID = 5_000_000  # above the largest pid_max Linux allows (2**22)


def docker_time(ns: int) -> str:
    """Docker's RFC 3339 timestamp with nanoseconds."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def _normal(reference: str) -> str:
    """A reference in full form, for comparing names the way Docker resolves them."""
    try:
        return str(parse_reference(reference))
    except errors.InvalidArgument:
        return reference


def _familiar(repository: str) -> str:
    """Docker's short form of a repository (``docker.io/library/x`` is ``x``)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if repository.startswith(prefix):
            return repository[len(prefix) :]
    return repository


@dataclass
class FakeImage:
    id: str
    tags: list[str] = field(default_factory=list)
    """Docker's familiar names: ``busybox:1``, ``127.0.0.1:5000/pause:3.10``."""
    digests: list[str] = field(default_factory=list)
    """``repository@sha256:...``, one per repository it was pulled from."""
    size: int = 1_000_000
    user: str = ""
    manifest: str = ""
    """The digest a registry serves it under."""

    def names(self) -> list[str]:
        return self.tags + self.digests


@dataclass
class FakeContainer:
    id: str
    name: str
    image_id: str
    body: dict[str, object]
    created: int
    status: str = "created"
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: int = 0
    finished_at: int = 0
    ip: str = ""
    size_rw: int = 0
    resources: dict[str, object] = field(default_factory=dict)
    log: list[tuple[int, str, bytes]] = field(default_factory=list)
    """(timestamp, stream, data) of each message it printed."""

    @property
    def labels(self) -> dict[str, str]:
        labels = self.body.get("Labels")
        return dict(labels) if isinstance(labels, dict) else {}

    @property
    def tty(self) -> bool:
        return bool(self.body.get("Tty"))

    @property
    def network_mode(self) -> str:
        host_config = self.body.get("HostConfig")
        mode = host_config.get("NetworkMode") if isinstance(host_config, dict) else None
        return str(mode or "bridge")

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass
class ExecResult:
    """What a program run by an exec does."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    hang: bool = False
    """Runs until it is killed (its stream interrupted), then exits 137."""
    echo_stdin: bool = False
    """Copies its stdin to its stdout until stdin ends (``cat``), when attached."""


Program = Callable[[list[str]], ExecResult]


def _echo(argv: list[str]) -> ExecResult:
    return ExecResult(stdout=" ".join(argv[1:]).encode() + b"\n")


DEFAULT_PROGRAMS: dict[str, Program] = {
    "true": lambda argv: ExecResult(),
    "false": lambda argv: ExecResult(exit_code=1),
    "echo": _echo,
    "cat": lambda argv: ExecResult(echo_stdin=True),
    "sleep": lambda argv: ExecResult(hang=True),
}


@dataclass
class FakeExec:
    id: str
    container_id: str
    argv: list[str]
    tty: bool
    result: ExecResult
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    sizes: list[tuple[int, int]] = field(default_factory=list)

    def finish(self, code: int) -> None:
        self.running = False
        self.exit_code = code


def _output(execution: FakeExec) -> bytes:
    """The exec's output as dockerd sends it: framed, unless it has a TTY."""
    result = execution.result
    if execution.tty:
        return result.stdout + result.stderr
    return b"".join(
        encode_frame(name, chunk)
        for name, chunk in (("stdout", result.stdout), ("stderr", result.stderr))
        if chunk
    )


class _ExecStream:
    """An exec's output, as ``exec_start`` hands it over; see ``RawStream``."""

    def __init__(self, execution: FakeExec) -> None:
        self._exec = execution
        self._data = bytearray(_output(execution))
        self._stop = threading.Event()

    def read(self, size: int) -> bytes:
        if self._data:
            chunk = bytes(self._data[:size])
            del self._data[:size]
            return chunk
        if self._exec.result.hang:
            self._stop.wait()
            self._exec.finish(137)
            return b""
        self._exec.finish(self._exec.result.exit_code)
        return b""

    def interrupt(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()


class _LogStream:
    """A container's log from ``since`` on, as dockerd streams it; see ``RawStream``."""

    def __init__(self, fake: FakeDocker, container: FakeContainer, follow: bool, since: int):
        self._fake = fake
        self._container = container
        self._follow = follow
        self._next = 0
        self._since = since
        self._pending = bytearray()
        self._stopped = False

    def _encode(self, timestamp: int, stream: str, data: bytes) -> bytes:
        line = docker_time(timestamp).encode() + b" " + data
        return line if self._container.tty else encode_frame(stream, line)

    def read(self, size: int) -> bytes:
        with self._fake.changed:
            while not self._pending:
                log = self._container.log
                while self._next < len(log):
                    timestamp, stream, data = log[self._next]
                    self._next += 1
                    if timestamp >= self._since:
                        self._pending += self._encode(timestamp, stream, data)
                if self._pending or self._stopped:
                    break
                if not self._follow or not self._container.running:
                    break
                self._fake.changed.wait()
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            return chunk

    def interrupt(self) -> None:
        with self._fake.changed:
            self._stopped = True
            self._fake.changed.notify_all()

    def close(self) -> None:
        self.interrupt()


class _EventStream:
    """Events from the moment it opened, as dockerd streams them; see ``RawStream``."""

    def __init__(self, fake: FakeDocker) -> None:
        self._fake = fake
        self._pending = bytearray()
        self._ended = False

    def push(self, line: bytes) -> None:
        """Called with ``fake.changed`` held."""
        self._pending += line

    def end(self) -> None:
        """Called with ``fake.changed`` held: the connection is gone."""
        self._ended = True

    def read(self, size: int) -> bytes:
        with self._fake.changed:
            while not self._pending and not self._ended:
                self._fake.changed.wait()
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            return chunk

    def interrupt(self) -> None:
        with self._fake.changed:
            self._ended = True
            self._fake.changed.notify_all()

    def close(self) -> None:
        self.interrupt()
        with self._fake.changed:
            if self in self._fake.event_streams:
                self._fake.event_streams.remove(self)


class _AsyncLogStream:
    """``_LogStream`` on the event loop; see ``AsyncStream``."""

    def __init__(self, stream: _LogStream) -> None:
        self._stream = stream
        self._reading: asyncio.Future[bytes] | None = None

    async def read(self) -> bytes:
        # A cancelled read's bytes go to the next read, as with a real stream.
        if self._reading is None:
            self._reading = asyncio.ensure_future(asyncio.to_thread(self._stream.read, 64 * 1024))
        try:
            return await asyncio.shield(self._reading)
        finally:
            if self._reading.done():
                self._reading = None

    def abort(self) -> None:
        self._stream.interrupt()

    async def close(self) -> None:
        self._stream.close()


@dataclass
class _Failure:
    error: errors.CRIError
    times: int | None
    target: str | None


class FakeDocker:
    """``DockerApi`` in memory; see the module docstring."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self.clock = clock
        self.containers: dict[str, FakeContainer] = {}
        self.images: dict[str, FakeImage] = {}
        self.registry: dict[str, FakeImage] = {}
        """What ``pull_image`` finds, by full reference (``domain/path:tag`` or ``@digest``)."""
        self.unreachable: set[str] = set()
        """Registry hosts a pull cannot reach (dockerd answers 500)."""
        self.denied: set[str] = set()
        """Registry hosts that refuse the pull (dockerd answers 403)."""
        self.stream_errors: dict[str, str] = {}
        """Pull errors that arrive in the progress stream, by full reference."""
        self.start_errors: dict[str, str] = {}
        """Containers, by name, whose process fails to start, and the runtime's message."""
        self.execs: dict[str, FakeExec] = {}
        self.programs: dict[str, Program] = dict(DEFAULT_PROGRAMS)
        self.runtimes = {"runc": {"path": "runc"}}
        self.root_dir = "/var/lib/docker"
        self.cgroup_driver = "cgroupfs"
        """Docker's data root; writable layers are ``<root_dir>/overlay2/<id>/diff``."""
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.down = False
        self.changed = threading.Condition()
        """Notified when a container logs or stops, or an event happens (streams wait on it)."""
        self.event_streams: list[_EventStream] = []
        self.quiet = False
        """When True, changes happen without events (as if the stream lagged)."""
        self._failures: dict[str, list[_Failure]] = {}
        self._delays: dict[tuple[str, str | None], float] = {}
        self._ids = itertools.count(1)
        self._pids = itertools.count(FIRST_PID)
        self._ips = itertools.count(2)

    @property
    def endpoint(self) -> str:
        return "fake://docker"

    # What tests do to it.

    def fail(
        self,
        method: str,
        error: errors.CRIError,
        times: int | None = 1,
        target: str | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` raise ``error`` (None: every call).

        With ``target``, only calls whose first argument (an ID, a name) it is.
        """
        self._failures.setdefault(method, []).append(_Failure(error, times, target))

    def fail_status(self, method: str, status: int, message: str, times: int | None = 1) -> None:
        """The next calls of ``method`` fail as dockerd's ``status`` answer does."""
        self.fail(method, error_for_status(status, message, method), times)

    def delay(self, method: str, seconds: float, target: str | None = None) -> None:
        """Calls of ``method`` (about ``target`` only, if given) take ``seconds``; 0 undoes it."""
        self._delays[(method, target)] = seconds

    def called(self, method: str) -> list[tuple[object, ...]]:
        """The arguments of each call of ``method``, in order."""
        return [args for name, args in self.calls if name == method]

    def add_image(
        self,
        reference: str,
        *,
        size: int = 1_000_000,
        user: str = "",
        digest: str = "",
    ) -> FakeImage:
        """An image dockerd has, tagged ``reference``; the registry serves it too."""
        ref = parse_reference(reference)
        manifest = digest or _digest(f"manifest {ref.repository}:{ref.tag}")
        image = FakeImage(id=_digest(f"image {reference}"), size=size, user=user, manifest=manifest)
        if ref.tag:
            image.tags.append(f"{_familiar(ref.repository)}:{ref.tag}")
        image.digests.append(f"{_familiar(ref.repository)}@{manifest}")
        self.images[image.id] = image
        self.registry[str(ref)] = image
        return image

    def publish(
        self, reference: str, *, size: int = 1_000_000, user: str = "", image_id: str = ""
    ) -> FakeImage:
        """An image a registry serves under ``reference``; dockerd has it once pulled."""
        ref = parse_reference(reference)
        image = FakeImage(
            id=image_id or _digest(f"image {ref.path}:{ref.tag}"),
            size=size,
            user=user,
            manifest=ref.digest or _digest(f"manifest {ref.path}:{ref.tag}"),
        )
        self.registry[str(ref)] = image
        return image

    def exit(
        self,
        container_id: str,
        code: int = 0,
        *,
        oom: bool = False,
        late_oom: bool = False,
        lost_oom: bool = False,
    ) -> None:
        """The container's process ends with ``code``.

        ``late_oom``: dockerd 20.10's race when the kill is quick: containerd's OOM
        event comes after the exit, so inspect keeps OOMKilled false and the ``oom``
        event follows ``die``. ``lost_oom``: the kill came before the shim watched
        the cgroup, so dockerd never hears of it.
        """
        late_oom = late_oom or lost_oom
        with self.changed:
            container = self.containers[container_id]
            container.status = "exited"
            container.exit_code = code
            container.oom_killed = oom and not late_oom
            container.pid = 0
            container.finished_at = self.clock()
            if oom and not late_oom:
                self.emit("container", "oom", container_id)
            self.emit("container", "die", container_id, exitCode=str(code))
            if oom and late_oom and not lost_oom:
                self.emit("container", "oom", container_id)
            self.changed.notify_all()

    def emit(self, kind: str, action: str, actor: str, **attributes: str) -> None:
        """An event, to every open event stream (unless ``quiet``)."""
        if self.quiet:
            return
        now = self.clock()
        event = {
            "Type": kind,
            "Action": action,
            "Actor": {"ID": actor, "Attributes": attributes},
            "id": actor,
            "status": action,
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        line = json.dumps(event).encode() + b"\n"
        with self.changed:
            for stream in self.event_streams:
                stream.push(line)
            self.changed.notify_all()

    def break_events(self) -> None:
        """Every open event stream ends, as when the connection drops."""
        with self.changed:
            for stream in self.event_streams:
                stream.end()
            self.event_streams.clear()
            self.changed.notify_all()

    def log(self, container_id: str, data: bytes, stream: str = "stdout") -> None:
        """The container prints ``data`` (one Docker log message: a line or a 16K chunk)."""
        with self.changed:
            self.containers[container_id].log.append((self.clock(), stream, data))
            self.changed.notify_all()

    # Every call passes here first.

    async def _enter(self, method: str, *args: object) -> None:
        self.calls.append((method, args))
        if self.down:
            raise errors.Unavailable(f"docker is not reachable at {self.endpoint}")
        left = seconds_left()
        if left is not None and left <= 0:
            raise errors.DeadlineExceeded(f"no time left for docker {method}")
        about = str(args[0]) if args else None
        pause = self._delays.get((method, about)) or self._delays.get((method, None), 0.0)
        if pause:
            if left is not None and left < pause:
                await asyncio.sleep(left)
                raise errors.DeadlineExceeded(f"docker {method} outlived the call's deadline")
            await asyncio.sleep(pause)
        queued = self._failures.get(method, [])
        for failure in queued:
            if failure.target is None or failure.target == about:
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        queued.remove(failure)
                raise failure.error

    def _new_id(self, kind: str) -> str:
        return hashlib.sha256(f"{kind} {next(self._ids)}".encode()).hexdigest()

    # The daemon.

    async def ping(self) -> bool:
        try:
            await self._enter("ping")
        except errors.CRIError:
            return False
        return True

    async def info(self) -> SystemInfo:
        await self._enter("info")
        return SystemInfo(
            DockerRootDir=self.root_dir,
            Driver="overlay2",
            CgroupDriver=self.cgroup_driver,
            CgroupVersion="1",
            Runtimes={name: {"path": path["path"]} for name, path in self.runtimes.items()},
            DefaultRuntime="runc",
            ServerVersion="20.10-fake",
        )

    async def df(self) -> DiskUsage:
        await self._enter("df")
        return DiskUsage(
            LayersSize=sum(image.size for image in self.images.values()),
            Containers=[{"Id": c.id, "SizeRw": c.size_rw} for c in self.containers.values()],
        )

    # Containers.

    def _container(self, reference: str) -> FakeContainer:
        found = self.containers.get(reference)
        if found is not None:
            return found
        name = reference.lstrip("/")
        for container in self.containers.values():
            if container.name == name:
                return container
        matches = [c for c in self.containers.values() if c.id.startswith(reference)]
        if reference and len(matches) == 1:
            return matches[0]
        raise error_for_status(404, f"No such container: {reference}")

    def _admits(self, container: FakeContainer, filters: Filters) -> bool:
        for wanted in filters.get("label", []):
            key, has_value, value = wanted.partition("=")
            if key not in container.labels or (has_value and container.labels[key] != value):
                return False
        ids = filters.get("id", [])
        if ids and not any(container.id.startswith(i) for i in ids):
            return False
        names = filters.get("name", [])
        if names and not any(n.lstrip("/") in container.name for n in names):
            return False
        statuses = filters.get("status", [])
        return not statuses or container.status in statuses

    async def list_containers(self, filters: Filters) -> list[ContainerSummary]:
        await self._enter("list_containers", dict(filters))
        return [
            ContainerSummary(
                Id=c.id,
                Names=[f"/{c.name}"],
                Image=str(c.body.get("Image", "")),
                ImageID=c.image_id,
                State=c.status,
                Labels=c.labels,
                Created=c.created // 1_000_000_000,
            )
            for c in self.containers.values()
            if self._admits(c, filters)
        ]

    async def inspect_container(self, container: str) -> ContainerInspect:
        await self._enter("inspect_container", container)
        return self._inspect(self._container(container))

    def _inspect(self, c: FakeContainer) -> ContainerInspect:
        return ContainerInspect(
            Id=c.id,
            Name=f"/{c.name}",
            Created=docker_time(c.created),
            Image=c.image_id,
            State={
                "Status": c.status,
                "Running": c.running,
                "Restarting": False,
                "OOMKilled": c.oom_killed,
                "Pid": c.pid,
                "ExitCode": c.exit_code,
                "Error": c.error,
                "StartedAt": docker_time(c.started_at) if c.started_at else ZERO_TIME,
                "FinishedAt": docker_time(c.finished_at) if c.finished_at else ZERO_TIME,
            },
            Config={"Image": str(c.body.get("Image", "")), "Labels": c.labels, "Tty": c.tty},
            GraphDriver={
                "Name": "overlay2",
                "Data": {"UpperDir": f"{self.root_dir}/overlay2/{c.id}/diff"},
            },
            NetworkSettings={
                "Networks": {c.network_mode: {"IPAddress": c.ip if c.running else ""}}
            },
        )

    async def create_container(self, name: str, body: Document) -> str:
        await self._enter("create_container", name, dict(body))
        for holder in self.containers.values():
            if holder.name == name:
                raise error_for_status(
                    409,
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{holder.id}".',
                    "create_container",
                )
        image = self._image(str(body.get("Image", "")))
        container = FakeContainer(
            id=self._new_id("container"),
            name=name,
            image_id=image.id,
            body=dict(body),
            created=self.clock(),
        )
        self.containers[container.id] = container
        self.emit("container", "create", container.id)
        return container.id

    async def start_container(self, container_id: str) -> None:
        await self._enter("start_container", container_id)
        container = self._container(container_id)
        if container.running:
            return  # dockerd answers 304
        failure = self.start_errors.get(container.name)
        if failure is not None:
            container.error = failure
            container.exit_code = 128
            raise error_for_status(500, failure)
        container.status = "running"
        container.pid = next(self._pids)
        container.started_at = self.clock()
        container.finished_at = 0
        container.exit_code = 0
        container.error = ""
        if container.network_mode == "bridge":
            container.ip = f"172.17.0.{next(self._ips)}"
        self.emit("container", "start", container.id)

    async def stop_container(self, container_id: str, timeout: int) -> None:
        await self._enter("stop_container", container_id, timeout)
        container = self._container(container_id)
        if container.running:
            # SIGKILL at once, or the process ends on the SIGTERM.
            self.exit(container.id, 137 if timeout == 0 else 143)

    async def remove_container(
        self, container_id: str, *, force: bool = False, volumes: bool = False
    ) -> None:
        await self._enter("remove_container", container_id, force, volumes)
        container = self._container(container_id)
        if container.running and not force:
            raise error_for_status(
                409,
                f"You cannot remove a running container {container.id}. "
                "Stop the container before attempting removal or force remove",
            )
        with self.changed:
            del self.containers[container.id]
            container.status = "removing"
            self.emit("container", "destroy", container.id)
            self.changed.notify_all()

    async def update_container(self, container_id: str, resources: Document) -> None:
        await self._enter("update_container", container_id, dict(resources))
        self._container(container_id).resources.update(resources)

    async def resize_container(self, container_id: str, height: int, width: int) -> None:
        await self._enter("resize_container", container_id, height, width)
        self._running(container_id)

    def _running(self, container_id: str) -> FakeContainer:
        container = self._container(container_id)
        if not container.running:
            raise error_for_status(409, f"Container {container.id} is not running")
        return container

    async def attach_container(
        self, container_id: str, *, stdin: bool, stdout: bool, stderr: bool
    ) -> Hijacked:
        """A connection that carries nothing and ends when the container stops."""
        await self._enter("attach_container", container_id, stdin, stdout, stderr)
        container = self._running(container_id)

        def serve(sock: socket.socket) -> None:
            sock.settimeout(0.05)
            while container.running:
                with contextlib.suppress(TimeoutError):
                    if not sock.recv(64 * 1024):
                        return  # the client hung up

        return await _hijacked(serve)

    def open_events(self, filters: Filters) -> _EventStream:
        self.calls.append(("open_events", (dict(filters),)))
        if self.down:
            raise errors.Unavailable(f"docker is not reachable at {self.endpoint}")
        stream = _EventStream(self)
        with self.changed:
            self.event_streams.append(stream)
        return stream

    async def stream_logs(
        self, container_id: str, *, follow: bool, since: str | None
    ) -> _AsyncLogStream:
        await self._enter("stream_logs", container_id, follow, since)
        container = self._container(container_id)
        return _AsyncLogStream(_LogStream(self, container, follow, _since_ns(since)))

    # Images.

    def _image(self, reference: str) -> FakeImage:
        """By ID, unique ID prefix, tag or digest reference; 404 otherwise."""
        found = self.images.get(reference) or self.images.get(f"sha256:{reference}")
        if found is not None:
            return found
        wanted = _normal(reference)
        for image in self.images.values():
            if any(_normal(name) == wanted for name in image.names()):
                return image
        prefix = reference.removeprefix("sha256:")
        matches = [i for i in self.images.values() if i.id[len("sha256:") :].startswith(prefix)]
        if prefix and len(matches) == 1:
            return matches[0]
        raise error_for_status(404, f"No such image: {reference}")

    def _image_inspect(self, image: FakeImage) -> ImageInspect:
        return ImageInspect(
            Id=image.id,
            RepoTags=list(image.tags),
            RepoDigests=list(image.digests),
            Size=image.size,
            Created="2026-01-01T00:00:00Z",
            Config=ImageConfig(User=image.user, Cmd=["sh"], Env=[]),
        )

    async def inspect_image(self, image: str) -> ImageInspect:
        await self._enter("inspect_image", image)
        return self._image_inspect(self._image(image))

    async def list_images(self) -> list[ImageSummary]:
        await self._enter("list_images")
        return [
            ImageSummary(
                Id=image.id,
                RepoTags=list(image.tags) or None,
                RepoDigests=list(image.digests) or None,
                Size=image.size,
                Created=1767225600,
            )
            for image in self.images.values()
        ]

    async def pull_image(
        self,
        repository: str,
        tag: str,
        auth: Mapping[str, str] | None = None,
        *,
        idle_timeout: float | None = None,
        progress: Callable[[Mapping[str, object]], None] | None = None,
    ) -> None:
        await self._enter("pull_image", repository, tag, dict(auth) if auth else None)
        separator = "@" if tag.startswith("sha256:") else ":"
        reference = _normal(f"{repository}{separator}{tag}")
        host = parse_reference(reference).domain
        if host in self.unreachable:
            raise error_for_status(
                500,
                f'Get "http://{host}/v2/": dial tcp {host}: connect: connection refused',
                "pull_image",
            )
        if host in self.denied:
            raise error_for_status(403, f"pull access denied for {repository}")
        if reference in self.stream_errors:
            raise pull_stream_error(self.stream_errors[reference], repository)
        published = self._published(reference)
        if published is None:
            raise error_for_status(404, f"manifest for {reference} not found: manifest unknown")
        image = self.images.setdefault(
            published.id,
            FakeImage(
                id=published.id,
                size=published.size,
                user=published.user,
                manifest=published.manifest,
            ),
        )
        name = _familiar(parse_reference(reference).repository)
        if separator == ":":
            self._retag(image, f"{name}:{tag}")
        digest = f"{name}@{published.manifest}"
        if digest not in image.digests:
            image.digests.append(digest)
        if progress is not None:
            layer = published.id[7:19]
            progress(
                {
                    "status": "Downloading",
                    "id": layer,
                    "progressDetail": {"current": published.size, "total": published.size},
                }
            )
            progress({"status": "Pull complete", "id": layer})
        self.emit("image", "pull", reference)

    def _published(self, reference: str) -> FakeImage | None:
        """What the registry serves under a tag, or under a manifest digest."""
        found = self.registry.get(reference)
        if found is not None:
            return found
        ref = parse_reference(reference)
        for key, image in self.registry.items():
            if ref.digest == image.manifest and parse_reference(key).repository == ref.repository:
                return image
        return None

    def _retag(self, image: FakeImage, tag: str) -> None:
        for other in self.images.values():
            if other is not image and tag in other.tags:
                other.tags.remove(tag)
        if tag not in image.tags:
            image.tags.append(tag)

    async def tag_image(self, image: str, repository: str, tag: str) -> None:
        await self._enter("tag_image", image, repository, tag)
        found = self._image(image)
        self._retag(found, f"{_familiar(repository)}:{tag}")
        self.emit("image", "tag", found.id)

    async def remove_image(self, image: str, *, force: bool = False, prune: bool = True) -> None:
        await self._enter("remove_image", image, force, prune)
        found = self._image(image)
        by_name = _normal(image) in {_normal(name) for name in found.names()}
        if by_name and len(found.names()) > 1:
            found.tags = [t for t in found.tags if _normal(t) != _normal(image)]
            found.digests = [d for d in found.digests if _normal(d) != _normal(image)]
            self.emit("image", "untag", found.id)
            return
        users = [c for c in self.containers.values() if c.image_id == found.id]
        if users and not force:
            raise error_for_status(
                409,
                f"conflict: unable to remove repository reference {image!r} (must force) - "
                f"container {users[0].id[:12]} is using its referenced image {found.id[7:19]}",
            )
        del self.images[found.id]
        self.emit("image", "delete", found.id)

    # Exec.

    async def exec_create(
        self,
        container_id: str,
        cmd: Sequence[str],
        *,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        tty: bool = False,
    ) -> str:
        await self._enter("exec_create", container_id, list(cmd))
        container = self._running(container_id)
        argv = list(cmd)
        program = self.programs.get(argv[0] if argv else "")
        result = (
            program(argv)
            if program is not None
            else ExecResult(
                stdout=f'exec: "{argv[0] if argv else ""}": executable file not found\n'.encode(),
                exit_code=126,
            )
        )
        execution = FakeExec(self._new_id("exec"), container.id, argv, tty, result)
        self.execs[execution.id] = execution
        return execution.id

    def _exec(self, exec_id: str) -> FakeExec:
        found = self.execs.get(exec_id)
        if found is None:
            raise error_for_status(404, f"No such exec instance: {exec_id}")
        return found

    def _start(self, exec_id: str) -> FakeExec:
        execution = self._exec(exec_id)
        if execution.started:
            raise error_for_status(409, f"Error: Exec command {exec_id} is already running")
        self._running(execution.container_id)
        execution.started = execution.running = True
        return execution

    async def exec_start(self, exec_id: str) -> _ExecStream:
        await self._enter("exec_start", exec_id)
        return _ExecStream(self._start(exec_id))

    async def exec_attach(self, exec_id: str, *, tty: bool) -> Hijacked:
        await self._enter("exec_attach", exec_id, tty)
        execution = self._start(exec_id)
        result = execution.result

        def serve(sock: socket.socket) -> None:
            try:
                sock.sendall(_output(execution))
                if result.echo_stdin or result.hang:
                    while data := sock.recv(64 * 1024):
                        if result.echo_stdin:
                            sock.sendall(data if tty else encode_frame("stdout", data))
            finally:
                execution.finish(137 if result.hang else result.exit_code)

        return await _hijacked(serve)

    async def exec_inspect(self, exec_id: str) -> ExecInspect:
        await self._enter("exec_inspect", exec_id)
        execution = self._exec(exec_id)
        return ExecInspect(
            ID=execution.id,
            Running=execution.running,
            ExitCode=execution.exit_code,
            Pid=0,  # never a PID to kill: see the module docstring
            ContainerID=execution.container_id,
        )

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        await self._enter("exec_resize", exec_id, height, width)
        self._exec(exec_id).sizes.append((height, width))


def _since_ns(since: str | None) -> int:
    if not since:
        return 0
    seconds, _, nanos = since.partition(".")
    return int(seconds) * 1_000_000_000 + int((nanos + "000000000")[:9])


async def _hijacked(serve: Callable[[socket.socket], None]) -> Hijacked:
    """A connection whose far end ``serve`` runs in a thread, then closes."""
    ours, theirs = socket.socketpair()

    def run() -> None:
        try:
            serve(theirs)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                theirs.shutdown(socket.SHUT_RDWR)
            theirs.close()

    threading.Thread(target=run, name="fake-docker-stream", daemon=True).start()
    reader, writer = await asyncio.open_connection(sock=ours)
    return Hijacked(reader, writer, b"")
