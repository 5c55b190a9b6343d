"""runc, called directly for everything but create (which conmon runs).

Each call is one ``runc --root <root> ...`` subprocess, bounded by the CRI
call's deadline (or ``DEFAULT_TIMEOUT`` without one): a runc that hangs is
killed with its whole process group and the call answers DeadlineExceeded.

runc reports its own failures through logrus. With ``--log-format json`` and
no ``--log``, the error arrives on stderr as ``{"level":"error","msg":...}``;
that message is what the caller sees, mapped to the error vocabulary by its
text the way CRI-O does (runc has no error codes): "does not exist" is
NotFound, a container in the wrong state FailedPrecondition, anything else
Internal. ``runc exec`` is different, since its stderr is the process's: it
gets a log file of its own (see ``spawn_exec``).

The exec'd process of a non-detached ``runc exec`` is a direct child of runc
(runc's nsexec clones with CLONE_PARENT), so runc's exit status is the
process's: its code, or 128 + the signal that killed it; 255 with an error in
runc's log means runc itself failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pycrid.adapters import errors
from pycrid.adapters.backendmetrics import timed_backend_call
from pycrid.adapters.deadline import seconds_left, without_deadline
from pycrid.adapters.node.execoutput import MAX_OUTPUT, CappedOutput
from pycrid.adapters.oci.runtime import execsync, fdio
from pycrid.adapters.oci.runtime.execsync import kill_group

log = logging.getLogger("pycrid.oci.runc")

DEFAULT_TIMEOUT = 60.0  # seconds for one runc command when the CRI call has no deadline
RUNC_FAILED = 255  # runc exec's exit status when runc, not the process, failed

# Substrings of runc's messages and what they mean (runc 1.1; crun's in brackets).
_NOT_FOUND = ("does not exist", "container not found")
_WRONG_STATE = (
    "container not running",
    "cannot start a container that has stopped",
    "cannot start an already running container",
    "cannot exec in a stopped container",
    "that is not stopped",
    "container is paused",
    "no such process",  # [crun] signal to a container whose init is gone
)


@dataclass(frozen=True)
class RuncState:
    """What ``runc state`` says: status is created, running, pausing, paused or stopped."""

    id: str
    status: str
    pid: int  # 0 once stopped
    bundle: str
    created: str  # RFC3339 with nanoseconds


class ExecResult(NamedTuple):
    exit_code: int
    stdout: bytes
    stderr: bytes


def runc_error(what: str, message: str) -> errors.CRIError:
    """The error for runc's ``message`` about ``what`` ("runc kill <id>")."""
    text = f"{what}: {message.strip() or 'failed without a message'}"
    lowered = message.lower()
    if any(s in lowered for s in _NOT_FOUND):
        return errors.NotFound(text)
    if any(s in lowered for s in _WRONG_STATE):
        return errors.FailedPrecondition(text)
    return errors.Internal(text)


def last_error(logrus_output: str) -> str:
    """runc's last error from logrus JSON lines; other lines are taken as they are."""
    found = ""
    for line in logrus_output.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            found = line
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
            found = str(entry.get("msg", ""))
    return found


SERVICE_VARIABLES = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_")


def runc_environment() -> dict[str, str]:
    """pycrid's environment without what systemd gave the service itself.

    Under a ``Type=notify`` unit ``NOTIFY_SOCKET`` names pycrid's own socket to
    systemd; runc takes it as a request to relay the container's sd_notify and
    fails (``runc start``: "listen unixgram .../notify/notify.sock") when the
    container was not created that way.
    """
    return {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_VARIABLES)}


def time_limit(default: float | None = DEFAULT_TIMEOUT, what: str = "runc") -> float | None:
    """Seconds a command may take: what is left of the call's deadline, else ``default``."""
    left = seconds_left()
    if left is None:
        return default
    if left <= 0:
        raise errors.DeadlineExceeded(f"no time left for {what}")
    return left if default is None else min(left, default)


class Runc:
    """runc with a state root of pycrid's own."""

    def __init__(
        self, binary: str, root: Path, scratch: Path | None = None, systemd_cgroup: bool = False
    ) -> None:
        self.binary = binary
        self.systemd_cgroup = systemd_cgroup
        """``--systemd-cgroup``: cgroupsPath is ``slice:prefix:name`` and runc asks
        systemd for the scope (create), its properties (update) and its removal."""
        self.root = Path(root)
        # process.json, pid and log files of execs; never inside the root,
        # where runc expects only container state directories.
        self.scratch = Path(scratch) if scratch else self.root.with_name(self.root.name + "-exec")

    def _argv(self, args: Sequence[str], log_file: Path | None = None) -> list[str]:
        argv = [self.binary, "--root", str(self.root), "--log-format", "json"]
        if self.systemd_cgroup:
            argv.append("--systemd-cgroup")
        if log_file is not None:
            argv += ["--log", str(log_file)]
        return argv + list(args)

    async def run(
        self, args: Sequence[str], stdin: bytes | None = None, timeout: float | None = None
    ) -> bytes:
        """Run ``runc <args>`` and return its stdout; raise runc's error if it fails."""
        with timed_backend_call("runc", args[0]):
            return await self._run(args, stdin, timeout)

    async def _run(self, args: Sequence[str], stdin: bytes | None, timeout: float | None) -> bytes:
        what = f"runc {args[0]} {args[-1]}" if len(args) > 1 else f"runc {args[0]}"
        limit = time_limit(DEFAULT_TIMEOUT if timeout is None else timeout, what)
        argv = self._argv(args)
        log.debug("running %s", argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=runc_environment(),
                start_new_session=True,
            )
        except OSError as e:
            raise errors.Internal(f"cannot run {self.binary}: {e}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
        except TimeoutError:
            await kill_group(proc)
            raise errors.DeadlineExceeded(
                f"{what} did not finish within {limit:.1f}s and was killed"
            ) from None
        except BaseException:
            await asyncio.shield(kill_group(proc))
            raise
        if proc.returncode != 0:
            message = last_error(err.decode(errors="replace"))
            raise runc_error(what, message or f"exit status {proc.returncode}")
        return out

    async def state(self, container_id: str, timeout: float | None = None) -> RuncState | None:
        """The container's state, or None when runc does not know it."""
        try:
            out = await self.run(["state", container_id], timeout=timeout)
        except errors.NotFound:
            return None
        try:
            raw = json.loads(out)
            return RuncState(
                id=raw["id"],
                status=raw["status"],
                pid=int(raw.get("pid") or 0),
                bundle=raw.get("bundle", ""),
                created=raw.get("created", ""),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise errors.Internal(f"runc state {container_id}: unreadable answer: {e}") from None

    async def start(self, container_id: str) -> None:
        """Start a created container (runc lets its init exec the process)."""
        await self.run(["start", container_id])

    async def kill(self, container_id: str, sig: int, all_processes: bool = False) -> None:
        """Send ``sig`` to the container's init, or with ``all_processes`` to its cgroup."""
        args = ["kill", *(["--all"] if all_processes else []), container_id, str(int(sig))]
        await self.run(args)

    async def delete(self, container_id: str, force: bool = False) -> None:
        """Delete the container; one runc no longer knows is already deleted."""
        with contextlib.suppress(errors.NotFound):
            await self.run(["delete", *(["--force"] if force else []), container_id])

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Apply OCI LinuxResources to a created or running container."""
        body = json.dumps(resources).encode()
        await self.run(["update", "--resources", "-", container_id], stdin=body)

    async def spawn_exec(
        self,
        container_id: str,
        process: dict[str, Any],
        stdio: execsync.Stdio,
        reaped: bool = False,
    ) -> execsync.ExecProcess:
        """Start ``runc exec`` of ``process`` (an OCI Process) wired to ``stdio``.

        runc is the leader of a process group of its own; the exec'd process
        is its child. With ``reaped``, ``runc exec --detach`` runs under
        ``execsync.REAPER`` instead, which leads the group, and whose exit is
        the process's. The caller must ``close()`` the returned object.
        """
        try:
            self.scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
            work = Path(tempfile.mkdtemp(prefix=f"{container_id[:12]}-", dir=self.scratch))
        except OSError as e:
            raise errors.Internal(f"cannot prepare an exec in {self.scratch}: {e}") from None
        try:
            process_file = work / "process.json"
            process_file.write_text(json.dumps({**process, "terminal": stdio.tty}))
            args = ["exec", "--process", str(process_file), "--pid-file", str(work / "pid")]
            if stdio.tty:
                args.append("--tty")
            if reaped:
                args.append("--detach")
            argv = self._argv([*args, container_id], log_file=work / "runc.log")
            if reaped:
                argv = [sys.executable, "-I", "-S", "-c", execsync.REAPER, str(work / "pid"), *argv]
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=stdio.stdin,
                stdout=stdio.stdout,
                stderr=stdio.stderr,
                env=runc_environment(),
                start_new_session=True,
            )
        except OSError as e:
            shutil.rmtree(work, ignore_errors=True)
            raise errors.Internal(f"cannot run {self.binary} exec: {e}") from None
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return execsync.ExecProcess(proc, work, container_id)

    async def exec_sync(
        self,
        container_id: str,
        process: dict[str, Any],
        timeout: float | None,
        output_cap: int = MAX_OUTPUT,
    ) -> ExecResult:
        """Run ``process`` in the container; its exit code and (capped) output.

        ``timeout`` (seconds, None or 0 for none) and the call's deadline both
        bound the command; when one expires, the command and everything it
        started are killed and, once they are gone, DeadlineExceeded raised.
        """
        limit = _exec_limit(timeout)
        stdio, ours = execsync.pipes()
        try:
            execution = await self.spawn_exec(container_id, process, stdio, reaped=True)
        finally:
            fdio.close(stdio.stdout, stdio.stderr)
        try:
            output = CappedOutput(output_cap)
            code = await self._collect_within(execution, ours, output, limit)
            self.check_exec_failure(execution, code)
            output.log_truncation(container_id)
            return ExecResult(code, output.stdout, output.stderr)
        finally:
            ours.close()
            execution.close()

    async def _collect_within(
        self,
        execution: execsync.ExecProcess,
        ours: execsync.PipedExec,
        output: CappedOutput,
        limit: float | None,
    ) -> int:
        collecting = asyncio.ensure_future(execsync.collect(execution, ours, output))
        try:
            # The limit is the process's; what it left open is drained for a bounded time.
            await asyncio.wait_for(asyncio.shield(execution.proc.wait()), limit)
            return await collecting
        except (TimeoutError, asyncio.CancelledError) as e:
            # Kill even when the caller gave up, and past the call's deadline.
            with without_deadline():
                await asyncio.shield(self.kill_exec(execution))
            collecting.cancel()
            await asyncio.gather(collecting, return_exceptions=True)
            if isinstance(e, asyncio.CancelledError):
                raise
            raise errors.DeadlineExceeded(
                f"command timed out after {limit:g}s and was killed"
            ) from None

    def check_exec_failure(self, execution: execsync.ExecProcess, code: int) -> None:
        """Raise runc's own error when runc, not the process, failed."""
        if code != RUNC_FAILED:
            return
        message = last_error(execution.runc_log())
        if message:
            raise runc_error(f"runc exec {execution.container_id}", message)

    async def kill_exec(self, execution: execsync.ExecProcess) -> None:
        """Kill an exec and all it started; return once they are gone."""
        init_pid = 0
        with contextlib.suppress(errors.CRIError):
            state = await self.state(execution.container_id, timeout=execsync.KILL_WAIT)
            init_pid = state.pid if state else 0
        await execsync.kill_exec(execution, init_pid)


def _exec_limit(timeout: float | None) -> float | None:
    limit = timeout if timeout and timeout > 0 else None
    return time_limit(limit, "the command")
