"""The docker adapter's memory of its pods and containers.

Docker is the source of truth; this is a cache of what Docker said, plus the
few facts Docker cannot hold (a pod's network, a container's updated
resources), which are saved to small JSON files, the state files, under
``state_dir/docker/``, written atomically before the call that made them
returns.

Container states, as Docker reports them and the CRI names them::

    docker create --> created --(start)--> running --(exit, stop, kill)--> exited
      CREATED           |                   RUNNING                        EXITED
                        +--(start failed)---------------------------------> EXITED

A pod is READY while its pause container runs and its network is set up;
it is NOTREADY otherwise, and never becomes READY again.

Metadata (configs, creation times, images) never changes once recorded.
States come from Docker: its answers to inspect (which also fill the
details: PID, times, exit code) and to ``docker ps -a``, and its events
(events.py). These arrive out of order with each other, so a state only
moves forward (created, then running, then exited; ``STATE_RANK``): an
inspect answered before an event it crossed cannot take the record back.
The CRI never restarts a container, so forward is the only way it goes.

While the event stream is up and was followed by a full listing, the store
is ``live``: every change Docker made is in it, and calls answer from it.
A record's details are ``current`` when an inspect filled them at its
present state; otherwise a status call asks Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from pycrid.adapters.docker.api import ContainerInspect
from pycrid.adapters.docker.naming import docker_time_ns
from pycrid.adapters.node import atomicfile
from pycrid.adapters.node.oomlog import KernelOomLog
from pycrid.adapters.node.podnetwork import NetworkState
from pycrid.adapters.records import RecordTables
from pycrid.adapters.revision import Tracked
from pycrid.api.cri import api_pb2 as cri

RUNNING_STATES = ("running", "paused", "restarting")
EXITED_STATES = ("exited", "dead", "removing")
SIGKILL_EXIT = 128 + 9
"""The exit code of a process the OOM killer ended."""
STATE_RANK = {"created": 0, **dict.fromkeys(RUNNING_STATES, 1), **dict.fromkeys(EXITED_STATES, 2)}


def moves_forward(current: str, new: str) -> bool:
    """Whether Docker state ``new`` may replace ``current`` (see the module docstring)."""
    return STATE_RANK.get(new, 0) >= STATE_RANK.get(current, 0)


@dataclass
class _Tracked(Tracked):
    """What pods and containers share: a Docker state and how well it is known."""

    docker_state: str = "created"
    inspected_state: str = ""
    """The state at which an inspect last filled the details."""
    removing: bool = False
    """pycrid is removing it, and forgets it itself (events.py need not)."""

    @property
    def details_current(self) -> bool:
        return self.inspected_state == self.docker_state

    def advance(self, docker_state: str) -> bool:
        """Take a state from a listing or an event; True when it changed."""
        if docker_state == self.docker_state or not moves_forward(self.docker_state, docker_state):
            return False
        self.docker_state = docker_state
        return True

    def _take_inspect(self, inspect: ContainerInspect) -> dict[str, Any] | None:
        """The inspect's State, or None when it is older than what is known."""
        state = inspect.get("State") or {}
        docker_state = state.get("Status") or self.docker_state
        if not moves_forward(self.docker_state, docker_state):
            return None
        self.docker_state = self.inspected_state = docker_state
        return dict(state)


@dataclass(kw_only=True)
class SandboxRecord(_Tracked):
    id: str
    config: cri.PodSandboxConfig
    runtime_handler: str
    created_at: int
    network: NetworkState
    resolv_conf: str = ""
    pid: int = 0
    added_at: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def ready(self) -> bool:
        return self.docker_state in RUNNING_STATES and self.network.ready

    @property
    def state(self) -> cri.PodSandboxState:
        return cri.SANDBOX_READY if self.ready else cri.SANDBOX_NOTREADY

    def update(self, inspect: ContainerInspect) -> None:
        state = self._take_inspect(inspect)
        if state is not None:
            self.pid = state.get("Pid") or 0


@dataclass(kw_only=True)
class ContainerRecord(_Tracked):
    id: str
    sandbox_id: str
    config: cri.ContainerConfig
    log_path: str
    created_at: int
    image_id: str
    image_ref: str
    resources: cri.LinuxContainerResources
    listed_image_ref: str = ""
    """ListContainers' image_ref when it is not ContainerStatus's: cri-dockerd listed
    Docker's image ID, so a container adopted from it keeps showing that (adopt.py)."""
    pid: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    oom_event: bool = False
    """Known OOM-killed without inspect: Docker's ``oom`` event came, or the kernel's log
    named the container's cgroup at its exit. dockerd 20.10 may get the OOM after the
    exit when the kill is quick, and then inspect says OOMKilled false for good."""
    message: str = ""
    """Docker's error, when the container failed to start."""
    finished_known: bool = False
    """True once an inspect after the exit filled the exit details."""
    log_drained: bool = False
    """True once the log copier wrote the exited container's last output."""
    added_at: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def state(self) -> cri.ContainerState:
        if self.docker_state in RUNNING_STATES:
            return cri.CONTAINER_RUNNING
        if self.docker_state in EXITED_STATES:
            return cri.CONTAINER_EXITED
        if self.docker_state == "created":
            return cri.CONTAINER_EXITED if self.message else cri.CONTAINER_CREATED
        return cri.CONTAINER_UNKNOWN

    @property
    def reason(self) -> str:
        if self.state != cri.CONTAINER_EXITED:
            return ""
        if self.oom_killed:
            return "OOMKilled"
        return "Completed" if self.exit_code == 0 and not self.message else "Error"

    def update(self, inspect: ContainerInspect) -> None:
        state = self._take_inspect(inspect)
        if state is None:
            return
        self.pid = state.get("Pid") or 0
        self.started_at = docker_time_ns(state.get("StartedAt"))
        # Docker stamps StartedAt after the process began, so a process that
        # exits at once can seem to finish before it started.
        self.finished_at = docker_time_ns(state.get("FinishedAt"))
        if self.finished_at:
            self.finished_at = max(self.finished_at, self.started_at)
        self.exit_code = state.get("ExitCode") or 0
        self.oom_killed = self.oom_event or bool(state.get("OOMKilled"))
        self.message = state.get("Error") or ""
        self.finished_known = self.state == cri.CONTAINER_EXITED

    def take_kernel_oom(self, oom_log: KernelOomLog) -> None:
        """OOMKilled when the kernel's log has the kill, whatever Docker says yet.

        dockerd's ``oom`` event may come after the ``die`` or not at all (the
        kill came before its shim watched the cgroup), and an inspect then says
        OOMKilled false; kubelet keeps the reason it saw first.
        """
        if (
            self.exit_code == SIGKILL_EXIT
            and not self.oom_killed
            and self.state == cri.CONTAINER_EXITED
            and oom_log.killed_in(self.id)
        ):
            self.oom_event = self.oom_killed = True


class StateFiles:
    """Small JSON files, one per pod and per container, written atomically."""

    def __init__(self, root: Path) -> None:
        self.sandboxes = root / "sandboxes"
        self.containers = root / "containers"

    def _path(self, directory: Path, object_id: str) -> Path:
        return directory / f"{object_id}.json"

    def remove_leftovers(self) -> None:
        """At start-up: the temporary files of writes a kill interrupted."""
        for directory in (self.sandboxes, self.containers):
            atomicfile.remove_leftovers(directory)

    async def save_sandbox(self, sandbox_id: str, network: NetworkState) -> None:
        await atomicfile.write_json_async(
            self._path(self.sandboxes, sandbox_id), {"network": network.to_dict()}
        )

    def load_sandbox(self, sandbox_id: str) -> NetworkState | None:
        saved = atomicfile.read_json(self._path(self.sandboxes, sandbox_id))
        if not isinstance(saved, dict):
            return None
        return NetworkState.from_dict(saved.get("network") or {})

    def delete_sandbox(self, sandbox_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(self.sandboxes, sandbox_id).unlink()

    def sandbox_ids(self) -> list[str]:
        return _ids_in(self.sandboxes)

    async def save_container_resources(
        self, container_id: str, resources: cri.LinuxContainerResources
    ) -> None:
        await atomicfile.write_json_async(
            self._path(self.containers, container_id),
            {"resources": json_format.MessageToDict(resources)},
        )

    def load_container_resources(self, container_id: str) -> cri.LinuxContainerResources | None:
        saved = atomicfile.read_json(self._path(self.containers, container_id))
        if not isinstance(saved, dict) or "resources" not in saved:
            return None
        return json_format.ParseDict(saved["resources"], cri.LinuxContainerResources())

    def delete_container(self, container_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(self.containers, container_id).unlink()

    def container_ids(self) -> list[str]:
        return _ids_in(self.containers)


def _ids_in(directory: Path) -> list[str]:
    try:
        return [p.stem for p in directory.iterdir() if p.suffix == ".json"]
    except FileNotFoundError:
        return []


class Store(RecordTables[SandboxRecord, ContainerRecord]):
    """Pods and containers by full ID, with their ID indexes (records.py)."""

    def __init__(self, files: StateFiles, oom_log: KernelOomLog | None = None) -> None:
        super().__init__()
        self.files = files
        self.oom_log = oom_log
        """The kernel's OOM kills, asked when a container is seen SIGKILLed."""
        self.live = False
        """Whether every change Docker made is here (see the module docstring)."""

    def changed(self, record: SandboxRecord | ContainerRecord) -> None:
        if isinstance(record, ContainerRecord) and self.oom_log is not None:
            record.take_kernel_oom(self.oom_log)
        super().changed(record)

    def apply_listing(self, states: dict[str, str], listed_since: float) -> list[str]:
        """Take the states of a ``docker ps -a`` that began at ``listed_since``.

        Returns the IDs of the objects Docker no longer has (they are
        dropped); objects added after the listing began are kept.
        """
        gone = []
        records: list[SandboxRecord | ContainerRecord] = [
            *self.sandboxes.values(),
            *self.containers.values(),
        ]
        for record in records:
            docker_state = states.get(record.id)
            if docker_state is None:
                if record.added_at < listed_since:
                    self.discard_sandbox(record.id)
                    self.discard_container(record.id)
                    gone.append(record.id)
                    self.gone(record.id, getattr(record, "sandbox_id", record.id))
                continue
            if record.advance(docker_state):
                if isinstance(record, ContainerRecord):
                    record.finished_known = False
                self.changed(record)
        return gone
