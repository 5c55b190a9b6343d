"""runc called directly, against the real runc: state, kill, delete, update, exec."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.deadline import set_call_deadline
from pycrid.adapters.oci.runtime import execsync
from pycrid.adapters.oci.runtime.execsession import run_exec_session
from pycrid.adapters.oci.runtime.runc import Runc, last_error, runc_error
from pycrid.adapters.streaming import SessionIO

from .test_oci_conmon_kit import (
    CGROUP_PARENT,
    CollectedOutput,
    OciKit,
    Resizes,
    ScriptedInput,
    Started,
    bounded,
    exit_of,
    kit,
    process,
    requires_runtime,
    teardown_module,
    wait_gone,
)

__all__ = ["kit", "teardown_module"]

# A container that runs until it is killed, without a `sleep` of its own.
IDLE = ["cat"]


def pid_namespace(container: Started) -> str:
    return os.readlink(f"/proc/{container.pid}/ns/pid")


def sleeping(namespace: str) -> list[int]:
    """Host PIDs of live `sleep` processes in a PID namespace (another test's do not count)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if cmdline.startswith(b"sleep\0") and os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                found.append(int(entry))
        except OSError:
            continue
    return found


# Error messages, without runc.


def test_runc_messages_map_to_the_error_vocabulary() -> None:
    assert isinstance(runc_error("runc state x", "container does not exist"), errors.NotFound)
    for message in (
        "container not running",
        "cannot start a container that has stopped",
        "cannot exec in a stopped container",
        "cannot delete container x that is not stopped: container is running",
    ):
        assert isinstance(runc_error("runc x", message), errors.FailedPrecondition), message
    error = runc_error("runc create x", "unable to apply caps: operation not permitted")
    assert isinstance(error, errors.Internal)
    assert "runc create x: unable to apply caps" in str(error)


def test_last_error_is_the_last_logrus_error() -> None:
    text = (
        '{"level":"warning","msg":"w","time":"t"}\n'
        '{"level":"error","msg":"first","time":"t"}\n'
        '{"level":"error","msg":"exec failed: boom","time":"t"}\n'
        '{"level":"info","msg":"later","time":"t"}\n'
    )
    assert last_error(text) == "exec failed: boom"
    assert last_error("plain text error\n") == "plain text error"
    assert last_error("") == ""


# Against the real runc.


@requires_runtime
@bounded(30)
async def test_unknown_container(kit: OciKit) -> None:
    missing = "f" * 64
    assert await kit.runc.state(missing) is None
    await kit.runc.delete(missing)
    await kit.runc.delete(missing, force=True)
    with pytest.raises(errors.NotFound, match="does not exist"):
        await kit.runc.kill(missing, 9)
    with pytest.raises(errors.NotFound, match="does not exist"):
        await kit.runc.start(missing)
    with pytest.raises(errors.NotFound):
        await kit.runc.exec_sync(missing, process(["true"]), timeout=5)


@requires_runtime
@bounded(30)
async def test_state_kill_delete(kit: OciKit) -> None:
    started = await kit.create(IDLE, stdin=True)
    state = await kit.runc.state(started.id)
    assert state is not None
    assert (state.status, state.pid, state.id) == ("created", started.pid, started.id)
    await kit.runc.start(started.id)
    state = await kit.runc.state(started.id)
    assert state is not None and state.status == "running"
    with pytest.raises(errors.FailedPrecondition, match="already running"):
        await kit.runc.start(started.id)
    with pytest.raises(errors.FailedPrecondition, match="not stopped"):
        await kit.runc.delete(started.id)
    await kit.runc.kill(started.id, 9)
    assert await exit_of(started) == 137
    state = await kit.runc.state(started.id)
    assert state is not None and (state.status, state.pid) == ("stopped", 0)
    with pytest.raises(errors.FailedPrecondition, match="container not running"):
        await kit.runc.kill(started.id, 15)
    with pytest.raises(errors.FailedPrecondition, match="cannot start a container that has"):
        await kit.runc.start(started.id)
    with pytest.raises(errors.FailedPrecondition, match="stopped container"):
        await kit.runc.exec_sync(started.id, process(["true"]), timeout=5)
    await kit.runc.delete(started.id)
    await kit.runc.delete(started.id)
    assert await kit.runc.state(started.id) is None


@requires_runtime
@bounded(30)
async def test_kill_all_processes(kit: OciKit) -> None:
    started = await kit.run(["sh", "-c", "trap '' TERM; sleep 4321 & wait"])
    namespace = pid_namespace(started)
    await asyncio.sleep(0.2)
    await kit.runc.kill(started.id, 9, all_processes=True)
    assert await exit_of(started) == 137
    assert sleeping(namespace) == []


@requires_runtime
@bounded(30)
async def test_update_sets_the_memory_limit(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    await kit.runc.update(started.id, {"memory": {"limit": 64 << 20, "swap": 64 << 20}})
    limit = Path(f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/{started.id}/memory.limit_in_bytes")
    assert int(limit.read_text()) == 64 << 20


@requires_runtime
@bounded(30)
async def test_a_hanging_runc_is_killed_at_the_deadline(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    fake = tmp_path / "runc"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 4321\n")
    fake.chmod(0o755)
    runc = Runc(str(fake), tmp_path / "root")
    set_call_deadline(0.5)
    began = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded, match="runc state x"):
        await runc.state("x")
    assert time.monotonic() - began < 2
    assert await wait_gone(int(pid_file.read_text()), timeout=1)
    set_call_deadline(None)


# ExecSync.


@requires_runtime
@bounded(30)
async def test_exec_sync_output_and_exit_code(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    result = await kit.runc.exec_sync(
        started.id, process(["sh", "-c", "echo out; echo err >&2; printf x; exit 7"]), timeout=10
    )
    assert result == (7, b"out\nx", b"err\n")
    assert await kit.runc.exec_sync(started.id, process(["true"]), timeout=None) == (0, b"", b"")
    killed = await kit.runc.exec_sync(started.id, process(["sh", "-c", "kill -9 $$"]), None)
    assert killed.exit_code == 137
    assert list(kit.runc.scratch.iterdir()) == []


@requires_runtime
@bounded(30)
async def test_exec_sync_timeout_kills_the_command(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    namespace = pid_namespace(started)
    began = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded, match="timed out"):
        await kit.runc.exec_sync(started.id, process(["sleep", "4321"]), timeout=1)
    assert 1 <= time.monotonic() - began < 3
    inside = await kit.runc.exec_sync(started.id, process(["pidof", "sleep"]), timeout=5)
    assert (inside.exit_code, inside.stdout) == (1, b"")
    assert sleeping(namespace) == []
    assert list(kit.runc.scratch.iterdir()) == []


@requires_runtime
@bounded(30)
async def test_exec_sync_timeout_kills_what_the_command_started(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    namespace = pid_namespace(started)
    command = ["sh", "-c", "sleep 4322 & sleep 4321 & wait"]
    with pytest.raises(errors.DeadlineExceeded, match="timed out"):
        await kit.runc.exec_sync(started.id, process(command), timeout=1)
    # Killed, though the container's init (cat) leaves the orphans unreaped.
    assert sleeping(namespace) == []


@requires_runtime
@bounded(30)
async def test_exec_sync_ends_at_the_call_deadline(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    namespace = pid_namespace(started)
    set_call_deadline(1.0)
    try:
        with pytest.raises(errors.DeadlineExceeded):
            await kit.runc.exec_sync(started.id, process(["sleep", "4321"]), timeout=None)
    finally:
        set_call_deadline(None)
    assert sleeping(namespace) == []


@requires_runtime
@bounded(30)
async def test_exec_sync_cancelled_kills_the_command(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    namespace = pid_namespace(started)
    call = asyncio.create_task(
        kit.runc.exec_sync(started.id, process(["sleep", "4321"]), timeout=None)
    )
    await asyncio.sleep(0.5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert sleeping(namespace) == []


@requires_runtime
@bounded(30)
async def test_exec_sync_output_is_capped(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    command = "head -c 3000 /dev/zero; head -c 3000 /dev/zero >&2; echo done"
    result = await kit.runc.exec_sync(started.id, process(["sh", "-c", command]), 10, 4000)
    # runc copies the two streams apart: which one is cut depends on timing.
    assert result.exit_code == 0
    assert len(result.stdout) + len(result.stderr) == 4000
    assert set(result.stdout.replace(b"done\n", b"")) | set(result.stderr) == {0}
    big = await kit.runc.exec_sync(
        started.id, process(["head", "-c", str(20 << 20), "/dev/zero"]), timeout=20
    )
    assert (big.exit_code, len(big.stdout)) == (0, 16 * 1024 * 1024 - 64 * 1024)


@requires_runtime
@bounded(30)
async def test_exec_sync_background_child_holding_the_output(kit: OciKit) -> None:
    """The exec is over when its process exits; a background child keeps running."""
    started = await kit.run(IDLE, stdin=True)
    namespace = pid_namespace(started)
    command = ["sh", "-c", "sleep 4321 & echo started; exit 3"]
    for timeout in (1, None):
        began = time.monotonic()
        result = await kit.runc.exec_sync(started.id, process(command), timeout=timeout)
        assert (result.exit_code, result.stdout) == (3, b"started\n")
        assert time.monotonic() - began < execsync.DRAIN_AFTER_EXIT + 1.5
    assert len(sleeping(namespace)) == 2
    closed = ["sh", "-c", "sleep 4321 >/dev/null 2>&1 & echo started"]
    result = await kit.runc.exec_sync(started.id, process(closed), timeout=10)
    assert (result.exit_code, result.stdout) == (0, b"started\n")


@requires_runtime
@bounded(30)
async def test_exec_of_a_missing_binary_is_runcs_error(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    with pytest.raises(errors.Internal, match="/no/such") as raised:
        await kit.runc.exec_sync(started.id, process(["/no/such"]), timeout=10)
    assert "no such file or directory" in str(raised.value)


# Streaming exec.


@requires_runtime
@bounded(30)
async def test_exec_session_with_pipes(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    out, err = CollectedOutput(), CollectedOutput()
    io = SessionIO(False, ScriptedInput(b"hello\n", b"world\n"), out, err, None)
    code = await run_exec_session(kit.runc, started.id, process(["cat"]), io)
    assert (code, bytes(out.data)) == (0, b"hello\nworld\n")
    io = SessionIO(False, None, out, err, None)
    command = ["sh", "-c", "echo o; echo e >&2; exit 5"]
    assert await run_exec_session(kit.runc, started.id, process(command), io) == 5
    assert (bytes(out.data[-2:]), bytes(err.data)) == (b"o\n", b"e\n")


@requires_runtime
@bounded(30)
async def test_exec_session_with_a_tty_and_resize(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    out = CollectedOutput()
    stdin = ScriptedInput(b"stty size; exit 4\n", delay=0.5)
    io = SessionIO(True, stdin, out, None, Resizes((100, 40)))
    code = await run_exec_session(kit.runc, started.id, process(["sh"]), io)
    assert code == 4
    assert b"40 100" in out.data


@requires_runtime
@bounded(30)
async def test_exec_session_tty_output_only(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    out = CollectedOutput()
    io = SessionIO(True, None, out, None, None)
    code = await run_exec_session(
        kit.runc, started.id, process(["sh", "-c", "echo hi; exit 2"]), io
    )
    assert code == 2
    # "\r\r\n" when echo wins a race inside runc (see execsession).
    assert bytes(out.data) in (b"hi\r\n", b"hi\r\r\n")


@requires_runtime
@bounded(30)
async def test_exec_session_abandoned_kills_the_process(kit: OciKit) -> None:
    started = await kit.run(IDLE, stdin=True)
    namespace = pid_namespace(started)
    io = SessionIO(False, ScriptedInput(hold=True), CollectedOutput(), None, None)
    session = asyncio.create_task(
        run_exec_session(kit.runc, started.id, process(["sleep", "4321"]), io)
    )
    await asyncio.sleep(0.5)
    assert sleeping(namespace) != []
    session.cancel()
    with pytest.raises(asyncio.CancelledError):
        await session
    assert sleeping(namespace) == []
