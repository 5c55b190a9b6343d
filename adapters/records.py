"""The records both adapters keep of pods and containers, and the store that holds them.

A record is what an adapter knows of one pod or container: its CRI config,
which never changes, and its state, which moves forward only. The docker
adapter's records are a cache of what Docker said (docker/store.py); the oci
adapter's are its own truth, written to disk (oci/runtime/store.py). Both
satisfy ``PodRecord`` and ``ContainerRecord``, so the CRI's views
(criviews.py), metrics, pod resources and events read either alike.

A store holds the records by full ID, and beside them one ``IdIndex`` per
kind that resolves the unique prefixes crictl passes. A record is *added*
while its object is being made (events and recovery must find it), and
*published* once the call that makes it succeeds: only published IDs
resolve, count and appear in stats. Both tables change only through the
store's methods (``RecordTables``), so the record and its index entry never
drift apart, and the store tells one listener of every change (``on_change``,
``on_gone``: the adapter's feed of container events)::

    add_sandbox(record, published=False) --> in sandboxes
    publish_sandbox(id)                  --> and in sandbox_ids: resolvable
    discard_sandbox(id)                  --> in neither
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from pycrid.adapters import revision
from pycrid.adapters.errors import NotFound
from pycrid.adapters.idindex import IdIndex
from pycrid.adapters.node.podnetwork import NetworkState
from pycrid.api.cri import api_pb2 as cri


class PodRecord(Protocol):
    id: str
    config: cri.PodSandboxConfig
    created_at: int
    runtime_handler: str
    network: NetworkState
    pid: int
    """The pause process (0 when it does not run)."""

    @property
    def ready(self) -> bool: ...

    @property
    def state(self) -> cri.PodSandboxState: ...


class ContainerRecord(Protocol):
    id: str
    sandbox_id: str
    config: cri.ContainerConfig
    image_id: str
    image_ref: str
    log_path: str
    created_at: int
    started_at: int
    finished_at: int
    exit_code: int
    resources: cri.LinuxContainerResources
    pid: int
    message: str
    """Why it failed to start or exited as it did (ContainerStatus.message)."""

    @property
    def state(self) -> cri.ContainerState: ...

    @property
    def reason(self) -> str: ...


class RecordStore(Protocol):
    """What code shared by the adapters reads of a store."""

    @property
    def sandboxes(self) -> Mapping[str, PodRecord]: ...

    @property
    def containers(self) -> Mapping[str, ContainerRecord]: ...

    @property
    def sandbox_ids(self) -> IdIndex: ...

    @property
    def container_ids(self) -> IdIndex: ...

    def sandbox(self, sandbox_id: str) -> PodRecord: ...

    def containers_of(self, sandbox_id: str) -> Sequence[ContainerRecord]: ...


S = TypeVar("S", bound=PodRecord)
C = TypeVar("C", bound=ContainerRecord)


class RecordTables(Generic[S, C]):
    """Pods and containers by full ID, with their ID indexes; a store's base."""

    def __init__(self) -> None:
        self.sandboxes: dict[str, S] = {}
        self.containers: dict[str, C] = {}
        self.sandbox_ids = IdIndex("pod sandbox")
        """The published pods' IDs."""
        self.container_ids = IdIndex("container")
        """The published containers' IDs."""
        self.on_change: Callable[[S | C], None] | None = None
        """Told when a record's state may have moved (container events follow it)."""
        self.on_gone: Callable[[str, str], None] | None = None
        """Told of an object forgotten, with its ID and its pod's ID."""

    def changed(self, record: S | C) -> None:
        if self.on_change is not None:
            self.on_change(record)

    def gone(self, object_id: str, sandbox_id: str) -> None:
        if self.on_gone is not None:
            self.on_gone(object_id, sandbox_id)

    def sandbox(self, sandbox_id: str) -> S:
        try:
            return self.sandboxes[sandbox_id]
        except KeyError:
            raise NotFound(f"pod sandbox {sandbox_id[:13]} not found") from None

    def container(self, container_id: str) -> C:
        try:
            return self.containers[container_id]
        except KeyError:
            raise NotFound(f"container {container_id[:13]} not found") from None

    def containers_of(self, sandbox_id: str) -> list[C]:
        return [c for c in self.containers.values() if c.sandbox_id == sandbox_id]

    def resolve_sandbox(self, prefix: str) -> str:
        return self.sandbox_ids.resolve(prefix)

    def resolve_container(self, prefix: str) -> str:
        return self.container_ids.resolve(prefix)

    def add_sandbox(self, record: S, *, published: bool = True) -> None:
        revision.move()
        self.sandboxes[record.id] = record
        if published:
            self.sandbox_ids.add(record.id)

    def add_container(self, record: C, *, published: bool = True) -> None:
        revision.move()
        self.containers[record.id] = record
        if published:
            self.container_ids.add(record.id)

    def publish_sandbox(self, sandbox_id: str) -> None:
        revision.move()
        if sandbox_id in self.sandboxes:
            self.sandbox_ids.add(sandbox_id)

    def publish_container(self, container_id: str) -> None:
        revision.move()
        if container_id in self.containers:
            self.container_ids.add(container_id)

    def publish_all(self) -> None:
        """Every record resolvable: after recovery."""
        revision.move()
        self.sandbox_ids.replace(self.sandboxes)
        self.container_ids.replace(self.containers)

    def discard_sandbox(self, sandbox_id: str) -> S | None:
        """Forget a pod's record and its ID; the record, or None when there was none."""
        revision.move()
        self.sandbox_ids.discard(sandbox_id)
        return self.sandboxes.pop(sandbox_id, None)

    def discard_container(self, container_id: str) -> C | None:
        revision.move()
        self.container_ids.discard(container_id)
        return self.containers.pop(container_id, None)
