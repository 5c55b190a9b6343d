"""runc and conmon in memory, for unit tests of the oci runtime without root.

``FakeProcesses`` is the node as runc and conmon see it: containers created,
running or exited, each with its PID. ``FakeRunc`` and ``FakeConmon`` are its
two faces (``RuncApi``, ``ConmonApi``). Like the real conmon, the fake one
reports an exit by writing files: the exit code to ``<persist_dir>/exit`` and
a file named after the container in the exit directory, so the code that
reads them is the code under test.

The containers outlive the objects that made them, as real processes outlive
a killed daemon: a test that "restarts" pycrid builds new objects over the
same ``FakeProcesses``. Every call is logged in ``calls``; ``failures`` makes
a call raise, ``before`` runs a hook first (a test snapshots the disk there
to see what a kill -9 at that step leaves).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrid.adapters import errors
from pycrid.adapters.oci.runtime import execsync
from pycrid.adapters.oci.runtime.conmon import EXIT_FILE
from pycrid.adapters.oci.runtime.runc import ExecResult, RuncState


@dataclass
class FakeContainer:
    id: str
    bundle: Path
    exit_dir: Path
    persist_dir: Path
    pid: int
    status: str = "created"
    """created, running or stopped, as ``runc state`` says."""
    exit_code: int | None = None
    ignored: set[int] = field(default_factory=set)
    """Signals the process survives (a container that ignores SIGTERM)."""
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeProcesses:
    """What runc and conmon know; shared by every FakeRunc and FakeConmon of a test."""

    pid: int = field(default_factory=os.getpid)
    """The PID every container gets: the test's own, so that cgroup and proc readers
    find real files. Nothing is ever signalled."""
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    """(call, container ID) in order."""
    failures: dict[tuple[str, str], errors.CRIError] = field(default_factory=dict)
    """(call, container ID) -> the error that call raises."""
    before: dict[str, Callable[[str], None]] = field(default_factory=dict)
    """call -> a hook run with the container ID before the call does anything."""

    def enter(self, call: str, container_id: str) -> None:
        self.calls.append((call, container_id))
        hook = self.before.get(call)
        if hook is not None:
            hook(container_id)
        failure = self.failures.get((call, container_id)) or self.failures.get((call, "*"))
        if failure is not None:
            raise failure

    def get(self, container_id: str) -> FakeContainer:
        container = self.containers.get(container_id)
        if container is None:
            raise errors.NotFound(f"runc: container {container_id} does not exist")
        return container

    def exit(self, container_id: str, code: int) -> None:
        """The container's process ends with ``code``; conmon writes what it saw."""
        container = self.get(container_id)
        if container.status == "stopped":
            return
        container.status = "stopped"
        container.exit_code = code
        container.persist_dir.mkdir(parents=True, exist_ok=True)
        (container.persist_dir / EXIT_FILE).write_text(str(code))
        container.exit_dir.mkdir(parents=True, exist_ok=True)
        (container.exit_dir / container_id).write_text(str(code))

    def ids(self, call: str) -> list[str]:
        """The containers ``call`` was made for, in order."""
        return [container_id for name, container_id in self.calls if name == call]


class FakeRunc:
    """``RuncApi`` over ``FakeProcesses``."""

    def __init__(self, world: FakeProcesses) -> None:
        self.world = world

    async def run(
        self, args: Sequence[str], stdin: bytes | None = None, timeout: float | None = None
    ) -> bytes:
        self.world.enter(f"run {args[0]}", args[-1])
        return b""

    async def state(self, container_id: str, timeout: float | None = None) -> RuncState | None:
        self.world.enter("state", container_id)
        container = self.world.containers.get(container_id)
        if container is None:
            return None
        pid = 0 if container.status == "stopped" else container.pid
        return RuncState(container_id, container.status, pid, str(container.bundle), "")

    async def start(self, container_id: str) -> None:
        self.world.enter("start", container_id)
        container = self.world.get(container_id)
        if container.status != "created":
            raise errors.FailedPrecondition(f"runc: container {container_id} is not created")
        container.status = "running"

    async def kill(self, container_id: str, sig: int, all_processes: bool = False) -> None:
        self.world.enter("kill", container_id)
        container = self.world.get(container_id)
        if container.status == "stopped":
            raise errors.NotFound(f"runc: container {container_id} is not running")
        if sig != signal.SIGKILL and sig in container.ignored:
            return
        self.world.exit(container_id, 128 + int(sig))

    async def delete(self, container_id: str, force: bool = False) -> None:
        self.world.enter("delete", container_id)
        container = self.world.containers.get(container_id)
        if container is None:
            return  # runc no longer knows it: already deleted
        if container.status == "running" and not force:
            raise errors.FailedPrecondition(f"runc: container {container_id} is running")
        del self.world.containers[container_id]

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        self.world.enter("update", container_id)
        self.world.get(container_id).resources = resources

    async def spawn_exec(
        self, container_id: str, process: dict[str, Any], stdio: execsync.Stdio
    ) -> execsync.ExecProcess:
        raise errors.Unimplemented("the fake runc runs no exec sessions")

    async def exec_sync(
        self,
        container_id: str,
        process: dict[str, Any],
        timeout: float | None,
        output_cap: int = 0,
    ) -> ExecResult:
        self.world.enter("exec_sync", container_id)
        if self.world.get(container_id).status != "running":
            raise errors.FailedPrecondition(f"runc: container {container_id} is not running")
        return ExecResult(0, " ".join(process.get("args", [])).encode(), b"")

    def check_exec_failure(self, execution: execsync.ExecProcess, code: int) -> None:
        """Nothing to check: the fake's execs never fail to start."""

    async def kill_exec(self, execution: execsync.ExecProcess) -> None:
        """Nothing runs to be killed."""


class FakeConmon:
    """``ConmonApi`` over ``FakeProcesses``."""

    runtime_binary = "runc"

    def __init__(self, world: FakeProcesses) -> None:
        self.world = world

    async def create(
        self,
        container_id: str,
        bundle: Path,
        log_path: str,
        exit_dir: Path,
        persist_dir: Path,
        tty: bool = False,
        stdin: bool = False,
        stdin_once: bool = False,
        name: str | None = None,
        cgroup: str | None = None,
        runtime: str | None = None,
    ) -> int:
        self.world.enter("create", container_id)
        if not (bundle / "config.json").is_file():
            raise errors.Internal(f"runc create {container_id}: no config.json in {bundle}")
        if container_id in self.world.containers:
            raise errors.AlreadyExists(f"runc create {container_id}: container exists")
        self.world.containers[container_id] = FakeContainer(
            container_id, bundle, exit_dir, persist_dir, self.world.pid
        )
        return self.world.pid

    def running(self, bundle: Path, container_id: str) -> bool:
        container = self.world.containers.get(container_id)
        return container is not None and container.status != "stopped"
