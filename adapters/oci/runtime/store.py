"""The oci runtime's own records of pods and containers, on disk before a call returns.

Nothing else knows these objects: runc keeps only what it needs to signal a
process, conmon only the exit code. So every record is written atomically
(``atomicfile``) before the call that changed it answers, and recovery after
``kill -9`` starts from these files.

A container's state is derived from its times, as containerd does::

    created_at set          -> CREATED
    started_at set          -> RUNNING
    finished_at set         -> EXITED
    (a start that failed sets finished_at too: the container never ran)

A pod is READY from the moment its pause container runs and its network is
up until StopPodSandbox, then NOTREADY until it is removed.

Intent is written before each step that cannot be taken back, so that a
crash between the step and the record's update is settled at the next
start: ``starting_at`` before ``runc start`` (recovery asks runc whether the
start happened), ``stopping`` before a pod's teardown (the pod is NOTREADY
from then on and the next StopPodSandbox finishes the teardown).

Records change only through ``save_*``; the CRI config in a record never
changes after creation.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from pycrid.adapters.node import atomicfile
from pycrid.adapters.node.podnetwork import NetworkState
from pycrid.adapters.records import RecordTables
from pycrid.adapters.revision import Tracked
from pycrid.api.cri import api_pb2 as cri


def _to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


@dataclass
class SandboxRecord(Tracked):
    id: str
    config: cri.PodSandboxConfig
    runtime_handler: str
    created_at: int
    network: NetworkState
    ready: bool = False
    pid: int = 0
    """The pause process (0 before it runs and after it exited)."""
    stopping: bool = False
    """StopPodSandbox began: the pod is NOTREADY and its teardown may be unfinished."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False, repr=False)

    @property
    def state(self) -> cri.PodSandboxState:
        return cri.SANDBOX_READY if self.ready else cri.SANDBOX_NOTREADY

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "config": _to_json(self.config),
            "runtime_handler": self.runtime_handler,
            "created_at": self.created_at,
            "network": self.network.to_dict(),
            "ready": self.ready,
            "pid": self.pid,
            "stopping": self.stopping,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SandboxRecord:
        return cls(
            id=raw["id"],
            config=json_format.ParseDict(raw["config"], cri.PodSandboxConfig()),
            runtime_handler=raw.get("runtime_handler", ""),
            created_at=int(raw["created_at"]),
            network=NetworkState.from_dict(raw.get("network") or {}),
            ready=bool(raw.get("ready")),
            pid=int(raw.get("pid", 0)),
            stopping=bool(raw.get("stopping")),
        )


@dataclass
class ContainerRecord(Tracked):
    id: str
    sandbox_id: str
    config: cri.ContainerConfig
    image_name: str
    """The image as the client named it (ContainerStatus.image)."""
    image_id: str
    image_ref: str
    log_path: str
    created_at: int
    resources: cri.LinuxContainerResources = field(default_factory=cri.LinuxContainerResources)
    pid: int = 0
    starting_at: int = 0
    """When StartContainer asked runc to start it (written before it asks)."""
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False, repr=False)

    @property
    def state(self) -> cri.ContainerState:
        if self.finished_at:
            return cri.CONTAINER_EXITED
        if self.started_at:
            return cri.CONTAINER_RUNNING
        return cri.CONTAINER_CREATED

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sandbox_id": self.sandbox_id,
            "config": _to_json(self.config),
            "image_name": self.image_name,
            "image_id": self.image_id,
            "image_ref": self.image_ref,
            "log_path": self.log_path,
            "created_at": self.created_at,
            "resources": _to_json(self.resources),
            "pid": self.pid,
            "starting_at": self.starting_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ContainerRecord:
        return cls(
            id=raw["id"],
            sandbox_id=raw["sandbox_id"],
            config=json_format.ParseDict(raw["config"], cri.ContainerConfig()),
            image_name=raw.get("image_name", ""),
            image_id=raw.get("image_id", ""),
            image_ref=raw.get("image_ref", ""),
            log_path=raw.get("log_path", ""),
            created_at=int(raw["created_at"]),
            resources=json_format.ParseDict(
                raw.get("resources") or {}, cri.LinuxContainerResources()
            ),
            pid=int(raw.get("pid", 0)),
            starting_at=int(raw.get("starting_at", 0)),
            started_at=int(raw.get("started_at", 0)),
            finished_at=int(raw.get("finished_at", 0)),
            exit_code=int(raw.get("exit_code", 0)),
            reason=raw.get("reason", ""),
            message=raw.get("message", ""),
        )


RECORD = "record.json"


class RuntimeStore(RecordTables[SandboxRecord, ContainerRecord]):
    """Pods and containers by full ID, each in ``<root>/<kind>/<id>/record.json``,
    with their ID indexes (records.py)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def sandbox_dir(self, sandbox_id: str) -> Path:
        return self.root / "sandboxes" / sandbox_id

    def container_dir(self, container_id: str) -> Path:
        return self.root / "containers" / container_id

    async def save_sandbox(self, record: SandboxRecord) -> None:
        await atomicfile.write_json_async(self.sandbox_dir(record.id) / RECORD, record.to_json())
        self.add_sandbox(record, published=record.id in self.sandbox_ids)
        self.changed(record)

    async def save_container(self, record: ContainerRecord) -> None:
        await atomicfile.write_json_async(self.container_dir(record.id) / RECORD, record.to_json())
        self.add_container(record, published=record.id in self.container_ids)
        self.changed(record)

    def forget_sandbox(self, sandbox_id: str) -> None:
        """Drop the record (the caller removes the directory with everything in it)."""
        self.discard_sandbox(sandbox_id)
        self.gone(sandbox_id, sandbox_id)
        with contextlib.suppress(FileNotFoundError):
            (self.sandbox_dir(sandbox_id) / RECORD).unlink()

    def forget_container(self, container_id: str) -> None:
        record = self.discard_container(container_id)
        if record is not None:
            self.gone(container_id, record.sandbox_id)
        with contextlib.suppress(FileNotFoundError):
            (self.container_dir(container_id) / RECORD).unlink()

    def load(self) -> list[str]:
        """Read every record on disk; returns what could not be read, one line each."""
        problems = []
        for kind in ("sandboxes", "containers"):
            directory = self.root / kind
            if not directory.is_dir():
                continue
            for entry in sorted(directory.iterdir()):
                atomicfile.remove_leftovers(entry)
                raw = atomicfile.read_json(entry / RECORD)
                if raw is None:
                    continue  # a directory whose record was never written: an orphan
                try:
                    if kind == "sandboxes":
                        self.add_sandbox(SandboxRecord.from_json(raw), published=False)
                    else:
                        self.add_container(ContainerRecord.from_json(raw), published=False)
                except (KeyError, ValueError, TypeError, json_format.ParseError) as e:
                    problems.append(f"{kind}/{entry.name}: {e}")
        return problems
