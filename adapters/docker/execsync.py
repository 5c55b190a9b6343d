"""ExecSync over Docker's exec API, with a timeout that really kills.

The command's stdout and stderr arrive multiplexed on the exec's hijacked
connection; a dedicated thread reads it (a command may run for hours, which
must not tie up the Docker client's shared thread pool) and keeps what one
CRI answer may carry of both streams together (``pycrid.adapters.node.execoutput``).

When the timeout (or the deadline of the CRI call) expires, Docker offers no
way to stop an exec, so the process is killed from the host: its host PID
comes from exec inspect, and it and all its descendants are stopped with
SIGSTOP (so that none can fork away), then killed with SIGKILL. The call
answers DEADLINE_EXCEEDED only once the process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextvars import Context
from typing import Any

from pycrid.adapters import errors
from pycrid.adapters.deadline import seconds_left
from pycrid.adapters.docker.api import DockerApi, RawStream
from pycrid.adapters.docker.stdstream import StdStreamDemuxer
from pycrid.adapters.node import proctree
from pycrid.adapters.node.execoutput import MAX_OUTPUT, CappedOutput
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker.exec")

READ_SIZE = 64 * 1024
CLEANUP_TIMEOUT = 10.0  # seconds for killing a timed-out command and seeing it gone
POLL_INTERVAL = 0.02
REAP_WAIT = 1.0  # seconds a killed process may stay a zombie before it counts as gone
EXIT_CODE_WAIT = 10.0  # seconds for Docker to record an exit after the output ended


def _read_all(stream: RawStream, output: CappedOutput) -> None:
    """Blocking: demultiplex the exec's output until the connection ends."""
    demuxer = StdStreamDemuxer()
    while True:
        try:
            data = stream.read(READ_SIZE)
        except OSError:
            return
        if not data:
            return
        for frame in demuxer.feed(data):
            # Docker's own errors (stream 3) are shown with the command's stderr.
            output.add("stdout" if frame.stream == "stdout" else "stderr", frame.data)


def _in_thread(fn: Callable[..., object], *args: Any) -> asyncio.Future[None]:
    """Run ``fn`` in a thread of its own; the future resolves when it returns."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def finish(error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def body() -> None:
        error: BaseException | None = None
        try:
            fn(*args)
        except BaseException as e:
            error = e
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(finish, error)

    threading.Thread(target=body, name="execsync", daemon=True).start()
    return future


def _close(stream: RawStream) -> None:
    with contextlib.suppress(Exception):
        stream.close()


def _time_limit(timeout: float) -> float | None:
    """Seconds the command may run: its timeout, within the call's deadline."""
    limit = timeout if timeout > 0 else None
    left = seconds_left()
    if left is not None:
        if left <= 0:
            raise errors.DeadlineExceeded("no time left to run the command")
        limit = left if limit is None else min(limit, left)
    return limit


async def exec_sync(
    client: DockerApi,
    container_id: str,
    cmd: Sequence[str],
    timeout: float,
    max_output: int = MAX_OUTPUT,
) -> cri.ExecSyncResponse:
    """Run ``cmd`` in the container and collect its output and exit code.

    ``timeout`` is in seconds, 0 for none; the call's deadline bounds it
    either way. When it expires the command is killed and DeadlineExceeded
    raised.
    """
    limit = _time_limit(timeout)
    exec_id = await client.exec_create(container_id, cmd, stdout=True, stderr=True)
    stream = await client.exec_start(exec_id)
    output = CappedOutput(max_output)
    reader = _in_thread(_read_all, stream, output)
    try:
        await asyncio.wait_for(asyncio.shield(reader), limit)
    except (TimeoutError, asyncio.CancelledError) as e:
        # Kill even when the caller gave up, outside the call's deadline.
        cleanup = asyncio.create_task(
            _kill_exec(client, container_id, exec_id, stream, reader), context=Context()
        )
        await asyncio.shield(cleanup)
        if isinstance(e, asyncio.CancelledError):
            raise
        what = f"timeout of {timeout:g}s" if timeout > 0 and limit == timeout else "deadline"
        raise errors.DeadlineExceeded(
            f"command {list(cmd)!r} did not finish within its {what} and was killed"
        ) from None
    finally:
        _close(stream)
    output.log_truncation(container_id)
    return cri.ExecSyncResponse(
        stdout=output.stdout,
        stderr=output.stderr,
        exit_code=await exit_code(client, exec_id),
    )


async def exit_code(client: DockerApi, exec_id: str) -> int:
    """The exit code; Docker may close the stream just before it records it."""
    give_up = time.monotonic() + EXIT_CODE_WAIT
    while True:
        info = await client.exec_inspect(exec_id)
        code = info.get("ExitCode")
        if not info.get("Running") and code is not None:
            return code
        if time.monotonic() > give_up:
            raise errors.Internal(f"docker recorded no exit code for exec {exec_id[:12]}")
        await asyncio.sleep(POLL_INTERVAL)


async def _kill_exec(
    client: DockerApi,
    container_id: str,
    exec_id: str,
    stream: RawStream,
    reader: asyncio.Future[None],
) -> None:
    try:
        await asyncio.wait_for(_kill_and_wait(client, container_id, exec_id), CLEANUP_TIMEOUT)
    except Exception as e:
        log.warning("exec %s in %s: could not kill it: %s", exec_id[:12], container_id[:12], e)
    stream.interrupt()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader, CLEANUP_TIMEOUT)


async def _kill_and_wait(client: DockerApi, container_id: str, exec_id: str) -> None:
    info = await client.exec_inspect(exec_id)
    pid = info.get("Pid") or 0
    if not info.get("Running") or pid <= 0:
        return
    container = await client.inspect_container(container_id)
    init_pid = container.get("State", {}).get("Pid") or 0
    killed = await asyncio.to_thread(proctree.kill_process_tree, pid, init_pid)
    log.info("exec %s in %s timed out: killed pids %s", exec_id[:12], container_id[:12], killed)
    # Wait for them to be reaped, or at least to be zombies: an orphan's new
    # parent (the container's init) may never reap it.
    reap_by = time.monotonic() + REAP_WAIT
    while not all(proctree.gone(p, zombie_too=time.monotonic() > reap_by) for p in killed):
        await asyncio.sleep(POLL_INTERVAL)
