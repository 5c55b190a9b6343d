"""The parts of an exec that outlive the runc command line: output, timeout, kill.

ExecSync's answer is one gRPC message, and kubelet refuses messages over
16 MiB: stdout and stderr together are kept to ``MAX_OUTPUT`` (16 MiB less
64 KiB for the rest of the message); beyond that the bytes are read and
dropped, so the command never blocks on a full pipe, and the cut is logged.

The exec is over when its process exits, not when every holder of its
output pipes has closed them (``sh -c 'sleep 40 & echo started'`` answers at
once, as with Docker and CRI-O). A non-detached ``runc exec`` copies the
process's output through pipes of its own and exits only once they have
ended, so ExecSync runs ``runc exec --detach`` under a small reaper
(``REAPER``): a child subreaper, which the exec'd process is handed to when
runc exits, and whose exit status is that process's. The output is then read
for ``DRAIN_AFTER_EXIT`` more, what background children keep open is left to
them.

A timed-out command is killed from the host: its PID comes from runc's pid
file; it and all its descendants are stopped with SIGSTOP (so none can fork
away) and killed with SIGKILL (``proctree.kill_process_tree``), after a check
that the PID still is runc's child in the container's PID namespace (runc
reaps it as soon as it exits, and the number may be reused). So is every
process of its session (runc makes it a session leader), which takes the
background children that the container's init inherited. runc then reaps it
and exits; one that does not is killed with its own group. The exec counts
as over only once all of them are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pycrid.adapters.node import proctree
from pycrid.adapters.node.execoutput import CappedOutput
from pycrid.adapters.oci.runtime import fdio

log = logging.getLogger("pycrid.oci.exec")

DRAIN_AFTER_EXIT = 2.0  # seconds for the output to end once the process has exited
KILL_WAIT = 10.0  # seconds for a killed exec to be gone
RUNC_EXIT_WAIT = 2.0  # seconds for runc to reap a killed exec and exit by itself
REAP_WAIT = 1.0  # seconds a killed process may stay a zombie before it counts as gone
POLL_INTERVAL = 0.02


REAPER = """
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
pid_file, argv = sys.argv[1], sys.argv[2:]
runc = os.fork()
if runc == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
code = os.waitstatus_to_exitcode(os.waitpid(runc, 0)[1])
if code != 0:
    sys.exit(255)
with open(pid_file) as f:
    pid = int(f.read().strip())
while True:
    try:
        found, status = os.waitpid(-1, 0)
    except ChildProcessError:
        sys.exit(255)
    if found == pid:
        code = os.waitstatus_to_exitcode(status)
        sys.exit(128 - code if code < 0 else code)
"""
"""Runs ``runc exec --detach`` (its argv) and exits with the exec'd process's status.

As a child subreaper it inherits that process once runc exits; 255 when runc
failed, as a non-detached runc exec answers then.
"""


@dataclass(frozen=True)
class Stdio:
    """The exec's standard streams: descriptors for the child, or subprocess.DEVNULL."""

    tty: bool
    stdin: int
    stdout: int
    stderr: int


class ExecProcess:
    """A running ``runc exec`` and its scratch directory (process.json, pid, log)."""

    def __init__(self, proc: asyncio.subprocess.Process, work: Path, container_id: str) -> None:
        self.proc = proc
        self.work = work
        self.container_id = container_id

    def exec_pid(self) -> int | None:
        """The host PID of the exec'd process, once runc has started it."""
        try:
            return int((self.work / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def runc_log(self) -> str:
        try:
            return (self.work / "runc.log").read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


async def _drain(fd: int, name: str, output: CappedOutput) -> None:
    while data := await fdio.read(fd):
        output.add(name, data)


@dataclass
class PipedExec:
    """Our ends of an exec's stdout and stderr pipes."""

    stdout: int
    stderr: int

    def close(self) -> None:
        fdio.close(self.stdout, self.stderr)


def pipes() -> tuple[Stdio, PipedExec]:
    """Pipes for a command without input: the child's Stdio and our ends."""
    out_r, out_w = fdio.pipe()
    err_r, err_w = fdio.pipe()
    return Stdio(False, subprocess.DEVNULL, out_w, err_w), PipedExec(out_r, err_r)


async def collect(execution: ExecProcess, ours: PipedExec, output: CappedOutput) -> int:
    """Read the exec's output into ``output`` until it ends; runc's exit status."""
    readers = [
        asyncio.create_task(_drain(ours.stdout, "stdout", output)),
        asyncio.create_task(_drain(ours.stderr, "stderr", output)),
    ]
    try:
        code = await execution.proc.wait()
        _, pending = await asyncio.wait(readers, timeout=DRAIN_AFTER_EXIT)
        if pending:
            log.warning(
                "exec in %s: output still open %gs after runc exited",
                execution.container_id[:12],
                DRAIN_AFTER_EXIT,
            )
        for reader in readers:
            failure = reader.exception() if reader.done() else None
            if failure is not None:
                raise failure
        return code
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


async def kill_exec(execution: ExecProcess, init_pid: int) -> list[int]:
    """Kill the exec'd process, its descendants and its session; return once all are gone.

    runc is left to reap its child and exit (a killed runc would leave the
    child a zombie under the container's init, which may never reap it); a
    runc still waiting for output after ``RUNC_EXIT_WAIT`` is killed too.
    """
    killed: list[int] = []
    pid = execution.exec_pid()
    if pid and execution.proc.returncode is None:
        killed = await asyncio.to_thread(_kill_session, pid, execution.proc.pid, init_pid)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(execution.proc.wait()), RUNC_EXIT_WAIT)
    await kill_group(execution.proc)
    reap_by = time.monotonic() + REAP_WAIT
    give_up = time.monotonic() + KILL_WAIT
    while not all(proctree.gone(p, zombie_too=time.monotonic() > reap_by) for p in killed):
        if time.monotonic() > give_up:
            log.warning("exec in %s: killed pids %s linger", execution.container_id[:12], killed)
            break
        await asyncio.sleep(POLL_INTERVAL)
    log.info("exec in %s killed: pids %s", execution.container_id[:12], killed)
    return killed


def _stat_fields(pid: int | str) -> list[bytes]:
    """/proc/<pid>/stat from the state on: state, ppid, pgrp, session, ..."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return []
    return stat[stat.rfind(b")") + 2 :].split()


def _parent(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def _session_members(session: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if len(fields) > 3 and int(fields[3]) == session:
                members.append(int(entry))
    return members


def _kill_session(pid: int, runc_pid: int, init_pid: int) -> list[int]:
    """Kill the exec'd process ``pid`` and every process of its session, with descendants.

    runc makes the exec'd process a session leader; the background children
    that the container's init inherited stay in its session. The session's
    ID cannot be reused while any of them lives, and the leader is trusted
    only while it is runc's child; once it is gone, its number names no
    other session unless reused by a new session leader, which would be alive.
    """
    fields = _stat_fields(pid)
    parent = int(fields[1]) if len(fields) > 1 else 0
    # runc's child, or the reaper's (REAPER: itself the parent of runc).
    leader = bool(parent) and (parent == runc_pid or _parent(parent) == runc_pid)
    if not leader and fields:
        return []  # the number now belongs to some other process
    targets = [pid] if leader else []
    targets += [p for p in _session_members(pid) if p != pid]
    killed: list[int] = []
    for target in targets:
        killed += proctree.kill_process_tree(target, same_namespace_as=init_pid)
    return killed


async def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL ``proc``'s process group (it leads one) and reap ``proc``.

    Only while ``proc`` is unreaped is its PID, and so its group's ID, sure
    not to have been reused.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_WAIT)
