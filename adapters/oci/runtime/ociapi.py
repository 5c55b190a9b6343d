"""The two programs the oci runtime drives, as the rest of it sees them.

``RuncApi`` names exactly the runc calls the pod, container, stats, exec and
recovery code make, ``ConmonApi`` the conmon ones. runc.py and conmon.py carry
them out on the real programs; fake.py keeps containers in memory for unit
tests, the way docker/fake.py stands in for dockerd. What conmon reports
through files (the exit file in the persist directory, the exit directory)
stays files: the fake writes them as conmon would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pycrid.adapters.oci.runtime import execsync
from pycrid.adapters.oci.runtime.runc import ExecResult, RuncState


class RuncApi(Protocol):
    async def run(
        self, args: Sequence[str], stdin: bytes | None = None, timeout: float | None = None
    ) -> bytes: ...

    async def state(self, container_id: str, timeout: float | None = None) -> RuncState | None: ...

    async def start(self, container_id: str) -> None: ...

    async def kill(self, container_id: str, sig: int, all_processes: bool = False) -> None: ...

    async def delete(self, container_id: str, force: bool = False) -> None: ...

    async def update(self, container_id: str, resources: dict[str, Any]) -> None: ...

    async def spawn_exec(
        self, container_id: str, process: dict[str, Any], stdio: execsync.Stdio
    ) -> execsync.ExecProcess: ...

    async def exec_sync(
        self,
        container_id: str,
        process: dict[str, Any],
        timeout: float | None,
        output_cap: int = ...,
    ) -> ExecResult: ...

    def check_exec_failure(self, execution: execsync.ExecProcess, code: int) -> None: ...

    async def kill_exec(self, execution: execsync.ExecProcess) -> None: ...


class ConmonApi(Protocol):
    runtime_binary: str
    """The runc that conmon runs (a user-namespace wrapper stands in for it)."""

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
    ) -> int: ...

    def running(self, bundle: Path, container_id: str) -> bool:
        """Whether the container's conmon still runs (it outlives the process only briefly)."""
        ...
