"""The Docker Engine API as the docker adapter uses it: typed calls, typed documents.

``DockerApi`` names exactly the calls the adapter makes. ``DockerClient``
(client.py) carries them out on dockerd through the docker SDK, ``FakeDocker``
(fake.py) in memory for unit tests; the rest of the adapter sees only this
Protocol. Results are Docker's own JSON documents, described as ``TypedDict``s
that list the keys pycrid reads (Docker sends more, and they are kept).

Every call is bounded by the deadline of the CRI call that made it and raises
only the errors of ``pycrid.adapters.errors`` (see errormap.py). Streams are
the exception to the deadline: an exec's output and a log stream live as
long as the process or the container, so they are read by threads of the
caller's own, never by the client's pool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypedDict

from pycrid.adapters.docker.hijack import Hijacked

Filters = Mapping[str, Sequence[str]]
"""Docker list filters: ``{"label": ["k=v", "k"], "status": ["running"]}``."""

Document = Mapping[str, object]
"""A JSON body pycrid sends (a create body, resource fields), built by spec.py."""


class InspectState(TypedDict, total=False):
    Status: str
    """created, running, paused, restarting, removing, exited or dead."""
    Running: bool
    Restarting: bool
    OOMKilled: bool
    Pid: int
    ExitCode: int
    Error: str
    StartedAt: str
    FinishedAt: str


class InspectConfig(TypedDict, total=False):
    Image: str
    Labels: dict[str, str] | None
    Tty: bool
    OpenStdin: bool
    StdinOnce: bool
    Hostname: str
    User: str
    Env: list[str] | None
    Entrypoint: list[str] | None
    Cmd: list[str] | None
    WorkingDir: str


class InspectHostConfig(TypedDict, total=False):
    Runtime: str
    NetworkMode: str
    PidMode: str
    IpcMode: str
    UTSMode: str
    CgroupParent: str
    CapAdd: list[str] | None
    CapDrop: list[str] | None
    Sysctls: dict[str, str] | None
    CpuShares: int
    CpuQuota: int
    CpuPeriod: int
    CpusetCpus: str
    CpusetMems: str
    Memory: int
    MemorySwap: int
    OomScoreAdj: int
    PidsLimit: int | None


class MountPoint(TypedDict, total=False):
    Type: str
    Source: str
    Destination: str
    RW: bool


class GraphDriverInfo(TypedDict, total=False):
    Name: str
    Data: dict[str, str] | None


class EndpointSettings(TypedDict, total=False):
    IPAddress: str
    GlobalIPv6Address: str


class NetworkSettings(TypedDict, total=False):
    Networks: dict[str, EndpointSettings] | None


class ContainerInspect(TypedDict, total=False):
    """``GET /containers/{id}/json``."""

    Id: str
    Name: str
    Created: str
    Image: str
    """The image ID."""
    Path: str
    Args: list[str] | None
    State: InspectState
    Config: InspectConfig
    HostConfig: InspectHostConfig
    Mounts: list[MountPoint] | None
    LogPath: str
    GraphDriver: GraphDriverInfo
    NetworkSettings: NetworkSettings


class ContainerSummary(TypedDict, total=False):
    """One item of ``GET /containers/json?all=1``."""

    Id: str
    Names: list[str]
    Image: str
    ImageID: str
    State: str
    Labels: dict[str, str] | None
    Created: int


class ImageConfig(TypedDict, total=False):
    User: str
    Env: list[str] | None
    Entrypoint: list[str] | None
    Cmd: list[str] | None
    WorkingDir: str
    StopSignal: str


class ImageInspect(TypedDict, total=False):
    """``GET /images/{name}/json``."""

    Id: str
    RepoTags: list[str] | None
    RepoDigests: list[str] | None
    Size: int
    Created: str
    Config: ImageConfig | None


class ImageSummary(TypedDict, total=False):
    """One item of ``GET /images/json``."""

    Id: str
    RepoTags: list[str] | None
    RepoDigests: list[str] | None
    Size: int
    Created: int


class RuntimeDescription(TypedDict, total=False):
    path: str


class CommitInfo(TypedDict, total=False):
    ID: str


class SystemInfo(TypedDict, total=False):
    """``GET /info``."""

    ServerVersion: str
    RuncCommit: CommitInfo | None
    DockerRootDir: str
    Driver: str
    CgroupDriver: str
    CgroupVersion: str
    Runtimes: dict[str, RuntimeDescription] | None
    DefaultRuntime: str


class ContainerUsage(TypedDict, total=False):
    Id: str
    SizeRw: int


class DiskUsage(TypedDict, total=False):
    """``GET /system/df``."""

    LayersSize: int
    Containers: list[ContainerUsage] | None


class ExecInspect(TypedDict, total=False):
    """``GET /exec/{id}/json``; ``ExitCode`` is None while the process runs."""

    ID: str
    Running: bool
    ExitCode: int | None
    Pid: int
    ContainerID: str


class RawStream(Protocol):
    """Bytes dockerd streams (an exec's output, a container's log), read by blocking calls.

    Read it in a thread of your own: it lasts as long as what it streams.
    """

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" at the end. Raises OSError when the stream broke."""
        ...

    def interrupt(self) -> None:
        """From any thread: make a blocked ``read`` return (b"" or OSError)."""
        ...

    def close(self) -> None: ...


class AsyncStream(Protocol):
    """Bytes dockerd streams for as long as something lasts (a container's log), on the loop."""

    async def read(self) -> bytes:
        """The next bytes; b"" at the end. Raises OSError when the stream broke.

        Safe to cancel: nothing is lost.
        """
        ...

    def abort(self) -> None:
        """End the stream now: a pending ``read`` returns b"" or raises OSError."""
        ...

    async def close(self) -> None: ...


class DockerApi(Protocol):
    """The Docker Engine API calls of the docker adapter; see the module docstring."""

    @property
    def endpoint(self) -> str:
        """Where dockerd listens, for messages."""
        ...

    # The daemon.

    async def ping(self) -> bool:
        """Whether dockerd answers (briefly: never raises)."""
        ...

    async def info(self) -> SystemInfo: ...

    async def df(self) -> DiskUsage: ...

    # Containers.

    async def list_containers(self, filters: Filters) -> list[ContainerSummary]:
        """Every container, running or not, that ``filters`` admits."""
        ...

    async def inspect_container(self, container: str) -> ContainerInspect:
        """By ID, unique ID prefix or name."""
        ...

    async def create_container(self, name: str, body: Document) -> str:
        """The new container's ID; AlreadyExists when ``name`` is taken."""
        ...

    async def start_container(self, container_id: str) -> None: ...

    async def stop_container(self, container_id: str, timeout: int) -> None:
        """The stop signal, then SIGKILL after ``timeout`` seconds; a stopped one is left."""
        ...

    async def remove_container(
        self, container_id: str, *, force: bool = False, volumes: bool = False
    ) -> None: ...

    async def update_container(self, container_id: str, resources: Document) -> None:
        """``resources`` in Docker's field names (``CpuShares``, ``Memory``, ...)."""
        ...

    async def resize_container(self, container_id: str, height: int, width: int) -> None: ...

    async def attach_container(
        self, container_id: str, *, stdin: bool, stdout: bool, stderr: bool
    ) -> Hijacked:
        """The container's stdio on a connection of its own (no deadline)."""
        ...

    def open_events(self, filters: Filters) -> RawStream:
        """Blocking: dockerd's event stream from now on, JSON documents one per line.

        It lasts until dockerd or the connection goes; Unavailable when dockerd
        cannot be reached. Call it from a thread of your own.
        """
        ...

    async def stream_logs(
        self, container_id: str, *, follow: bool, since: str | None
    ) -> AsyncStream:
        """The container's timestamped log from ``since`` on (inclusive).

        NotFound when the container is gone.
        """
        ...

    # Images.

    async def inspect_image(self, image: str) -> ImageInspect:
        """By ID, ID prefix, tag or digest reference."""
        ...

    async def list_images(self) -> list[ImageSummary]: ...

    async def pull_image(
        self,
        repository: str,
        tag: str,
        auth: Mapping[str, str] | None = None,
        *,
        idle_timeout: float | None = None,
        progress: Callable[[Mapping[str, object]], None] | None = None,
    ) -> None:
        """Pull ``repository:tag`` (or ``repository@digest``) to its end.

        DeadlineExceeded when dockerd sends nothing for ``idle_timeout``
        seconds; each progress document goes to ``progress`` (from a thread).
        """
        ...

    async def tag_image(self, image: str, repository: str, tag: str) -> None: ...

    async def remove_image(self, image: str, *, force: bool = False, prune: bool = True) -> None:
        """Untag a name, or (by ID with ``force``) remove the image with all its names."""
        ...

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
        """The new exec's ID; FailedPrecondition when the container is not running."""
        ...

    async def exec_start(self, exec_id: str) -> RawStream:
        """Start the exec without stdin; its multiplexed output as a blocking stream."""
        ...

    async def exec_attach(self, exec_id: str, *, tty: bool) -> Hijacked:
        """Start the exec on a connection of its own that carries stdin too (no deadline)."""
        ...

    async def exec_inspect(self, exec_id: str) -> ExecInspect: ...

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None: ...
