"""Copies each container's output from Docker into its CRI log file.

Docker cannot write CRI-format logs to a path of our choosing, so containers
use Docker's json-file driver (size-bounded) and one copier per container
follows ``GET /containers/{id}/logs?follow=1&timestamps=1`` and writes what it
reads as CRI log lines, with Docker's own timestamps.

Restart safety, without lost or duplicated lines:

- The *position* is the timestamp of the last Docker message copied and how
  many copied messages carry exactly that timestamp (several may). A resumed
  copier asks Docker for messages ``since`` that timestamp (inclusive) and
  skips that many of them.
- A bookmark file holds the position, the encoder's unfinished lines, and
  the identity (device, inode) and size of the log file at that position. It
  is written atomically, at most about once a second while output flows, and
  at every reopen, stop and shutdown.
- Given the same messages, the encoder writes the same bytes. After ``kill -9``
  the log file may already hold lines written after the last bookmark: the
  resumed copier replays from the bookmark and skips writing as many bytes
  as the file grew since, so the file continues exactly where it ended.
- If the file at the log path is not the one in the bookmark (it was rotated
  while pycrid was down) the replayed lines go to the new file: nothing is
  lost, but lines written between the bookmark and the rotation then appear
  in both files.
- Lines that Docker's json-file rotation dropped while pycrid was down are
  lost: keep its max-size larger than what a container prints in that time.

A copier ends by itself when the container has stopped and its output is
drained; the unfinished line of each stream is then written as ``P`` and the
bookmark is marked done, so that a later ``recover`` does nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from contextvars import Context
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrid.adapters import errors
from pycrid.adapters.deadline import seconds_left
from pycrid.adapters.docker.api import AsyncStream, DockerApi
from pycrid.adapters.docker.logmessages import LogMessage, LogStreamParser
from pycrid.adapters.node import atomicfile
from pycrid.adapters.node.crilog import DEFAULT_MAX_LINE, CriLogEncoder, CriLogFile
from pycrid.adapters.node.logfileerror import log_file_error

log = logging.getLogger("pycrid.docker.logs")

BOOKMARK_INTERVAL = 1.0  # seconds between bookmarks while output flows
RETRY_DELAY = 1.0  # seconds before following again after the stream broke
DRAIN_TIMEOUT = 10.0  # how long stop() waits for the output to end
COPIED_WAIT = 2.0  # how long wait_copied() waits for an exited container's last lines
READ_SIZE = 64 * 1024
BOOKMARK_VERSION = 1


@dataclass
class Position:
    """Where a copier is in Docker's log: see the module docstring."""

    timestamp: int = 0
    seen: int = 0

    def advance(self, timestamp: int) -> None:
        if timestamp == self.timestamp:
            self.seen += 1
        elif timestamp > self.timestamp:
            self.timestamp, self.seen = timestamp, 1
        # An earlier timestamp (the clock went back) leaves the position as it
        # is: Docker's `since` filter will not send that message again.

    def since(self) -> str | None:
        """The ``since`` parameter of Docker's logs call, to the nanosecond."""
        if not self.timestamp:
            return None
        seconds, nanoseconds = divmod(self.timestamp, 1_000_000_000)
        return f"{seconds}.{nanoseconds:09d}"


class _StreamEnded(Exception):
    """The container is gone: there is nothing more to read."""


class _Copier:
    """Copies one container's output; all its state lives on the event loop."""

    def __init__(
        self,
        client: DockerApi,
        container_id: str,
        log_path: Path,
        tty: bool,
        bookmark_path: Path,
        max_line: int,
        log_root: str | None = None,
    ) -> None:
        self.client = client
        self.container_id = container_id
        self.log_path = log_path
        self.log_root = log_root
        """The pod's log directory: the file is opened below it, never through a symlink."""
        self.tty = tty
        self.bookmark_path = bookmark_path
        self.encoder = CriLogEncoder(max_line)
        self.position = Position()
        self.file: CriLogFile | None = None
        self.offset = 0  # size the log file has at `position`
        self.skip = 0  # replayed bytes that the file already holds
        self.replay = 0  # messages at position.timestamp to skip on the next stream
        self.done = False
        self.closing = False
        self.flush_on_close = False
        self.task: asyncio.Task[None] | None = None
        self._dirty = False
        self._last_bookmark = 0.0
        self._bookmark_lock = asyncio.Lock()
        self._writing: asyncio.Future[None] | None = None
        self._stream: AsyncStream | None = None

    # Setting up, from a bookmark or from scratch.

    async def prepare(self) -> None:
        saved = await asyncio.to_thread(atomicfile.read_json, self.bookmark_path, None)
        if saved is not None and saved.get("version") == BOOKMARK_VERSION:
            self._restore(saved)
        if self.done:
            return
        try:
            self.file = CriLogFile(self.log_path, root=self.log_root)
            identity, size = self.file.identity(), self.file.size()
        except OSError as e:
            if self.log_root:
                raise log_file_error(
                    self.log_root, os.path.relpath(self.log_path, self.log_root), e
                ) from e
            raise errors.Internal(f"cannot open log file {self.log_path}: {e}") from e
        if saved is not None and tuple(saved["file"]["identity"]) == identity:
            self.offset = saved["file"]["offset"]
            self.skip = max(0, size - self.offset)
        else:
            self.offset = size
            self.skip = 0
        if saved is not None:
            log.info(
                "resuming the log of %s after %s; %d bytes of it already in %s",
                self.container_id[:12],
                self.position.since() or "the start",
                self.skip,
                self.log_path,
            )
        await self.bookmark()

    def _restore(self, saved: dict[str, Any]) -> None:
        self.done = bool(saved.get("done"))
        self.position = Position(**saved["position"])
        self.encoder.restore(
            {
                stream: (timestamp, base64.b64decode(data))
                for stream, (timestamp, data) in saved.get("pending", {}).items()
            }
        )

    def _snapshot(self) -> dict[str, Any]:
        identity = list(self.file.identity()) if self.file and not self.file.closed else [0, 0]
        return {
            "version": BOOKMARK_VERSION,
            "container_id": self.container_id,
            "log_path": str(self.log_path),
            "tty": self.tty,
            "position": {"timestamp": self.position.timestamp, "seen": self.position.seen},
            "pending": {
                stream: [timestamp, base64.b64encode(data).decode()]
                for stream, (timestamp, data) in self.encoder.pending().items()
            },
            "file": {"identity": identity, "offset": self.offset},
            "done": self.done,
        }

    async def bookmark(self) -> None:
        async with self._bookmark_lock:
            if self._writing is not None:
                # A write whose waiter was cancelled may still run: let it land first.
                await asyncio.wait({self._writing})
            snapshot = self._snapshot()
            self._dirty = False
            self._last_bookmark = time.monotonic()
            self._writing = asyncio.ensure_future(
                asyncio.to_thread(atomicfile.write_json, self.bookmark_path, snapshot)
            )
            await self._writing

    # Copying.

    async def run(self) -> None:
        try:
            while not self.closing:
                try:
                    if await self._copy_until_stopped():
                        self._finish()
                    return
                except errors.CRIError as e:
                    if self.closing:
                        return
                    log.warning("log copier for %s: %s", self.container_id[:12], e)
                    await asyncio.sleep(RETRY_DELAY)
        except Exception:
            log.exception("log copier for %s failed", self.container_id[:12])
        finally:
            await self._shutdown()

    async def _copy_until_stopped(self) -> bool:
        """Copy until the container has stopped; True when its output is complete."""
        try:
            while True:
                await self._copy(follow=True)
                if self.closing:
                    return False
                state = await self._state()
                if state == "created":
                    return False  # not started yet: start() will be called again
                if state == "stopped":
                    break
                await asyncio.sleep(RETRY_DELAY)  # still running: the stream broke off
            # Catch anything that the follow stream ended before.
            await self._copy(follow=False)
        except _StreamEnded:
            pass  # the container is gone, and its output with it
        return not self.closing

    async def _copy(self, follow: bool) -> None:
        """Copy one log stream of Docker's to its end."""
        stream = await self._open(follow)
        parser = LogStreamParser(self.tty)
        self.replay = self.position.seen
        try:
            while not self.closing:
                # A quiet container costs nothing: only a bookmark still
                # owed needs a timer (kubelet's nodes run hundreds of these).
                try:
                    if self._dirty:
                        data = await asyncio.wait_for(stream.read(), BOOKMARK_INTERVAL)
                    else:
                        data = await stream.read()
                except TimeoutError:
                    data = None  # quiet for a while: time for the bookmark owed
                except OSError as e:
                    if self.closing:
                        return
                    raise errors.Unavailable(f"docker's log stream broke off: {e}") from None
                if data == b"":
                    if not self.closing:
                        self._consume(parser.close())
                    break
                if data:
                    await self._feed(parser, data)
                if self._dirty and time.monotonic() - self._last_bookmark >= BOOKMARK_INTERVAL:
                    await self.bookmark()
        finally:
            self._stream = None
            stream.abort()
            await stream.close()

    async def _feed(self, parser: LogStreamParser, data: bytes) -> None:
        for start in range(0, len(data), READ_SIZE):
            if start:
                await asyncio.sleep(0)  # let other calls run between slices
            self._consume(parser.feed(data[start : start + READ_SIZE]))

    async def _open(self, follow: bool) -> AsyncStream:
        """Start Docker's log stream from the position."""
        try:
            stream = await self.client.stream_logs(
                self.container_id, follow=follow, since=self.position.since()
            )
        except errors.NotFound:
            raise _StreamEnded() from None
        self._stream = stream
        if self.closing:
            stream.abort()
        return stream

    def _consume(self, messages: list[LogMessage]) -> None:
        out = bytearray()
        for message in messages:
            if self.replay and message.timestamp == self.position.timestamp:
                self.replay -= 1  # copied before the stream was opened again
                continue
            self.replay = 0
            out += self.encoder.feed(message.timestamp, message.stream, message.data)
            self.position.advance(message.timestamp)
            self._dirty = True
        self._write(bytes(out))

    def _write(self, data: bytes) -> None:
        if not data or self.file is None:
            return
        self.offset += len(data)
        if self.skip:
            already = min(self.skip, len(data))
            self.skip -= already
            data = data[already:]
        if data:
            self.file.write(data)

    def _finish(self) -> None:
        """The container's output is complete: write unfinished lines as P."""
        self._write(self.encoder.close())
        self.done = True
        self._dirty = True

    async def _state(self) -> str:
        """running, created, stopped; _StreamEnded when the container is gone."""
        try:
            info = await self.client.inspect_container(self.container_id)
        except errors.NotFound:
            raise _StreamEnded() from None
        state = info.get("State", {})
        if state.get("Running") or state.get("Restarting"):
            return "running"
        if state.get("Status") == "created":
            return "created"
        return "stopped"

    def _interrupt(self) -> None:
        """End the log stream being read, so that the copier stops waiting on it."""
        if self._stream is not None:
            self._stream.abort()

    async def _shutdown(self) -> None:
        if self.flush_on_close and not self.done:
            self._finish()
        if self.file is not None:
            await self.bookmark()
            self.file.close()

    # Requests from outside.

    async def reopen(self) -> None:
        if self.file is None or self.file.closed or self.done:
            raise errors.FailedPrecondition("container is not running")
        try:
            self.file.reopen()
        except OSError as e:
            raise errors.Internal(f"cannot reopen log file {self.log_path}: {e}") from e
        self.offset = self.file.size()
        self.skip = 0
        await self.bookmark()

    async def stop(self, flush: bool, timeout: float | None) -> None:
        """End the copier: at once (``timeout`` 0) or once the output ends."""
        if self.task is None:
            return
        if timeout:
            await asyncio.wait({self.task}, timeout=timeout)
        if not self.task.done():
            self.closing = True
            self.flush_on_close = flush
            self._interrupt()
            self.task.cancel()
        await asyncio.wait({self.task})  # never raises what ended the task


class LogCopiers:
    """One log copier per running container; see the module docstring.

    ``state_dir`` is the docker adapter's state directory; bookmarks live in
    its ``logs`` folder.
    """

    def __init__(
        self,
        client: DockerApi,
        state_dir: str | os.PathLike[str],
        max_line: int = DEFAULT_MAX_LINE,
    ) -> None:
        self.client = client
        self.bookmark_dir = Path(state_dir) / "logs"
        self.max_line = max_line
        self._copiers: dict[str, _Copier] = {}
        self._starting: dict[str, asyncio.Future[None]] = {}

    def bookmark_path(self, container_id: str) -> Path:
        return self.bookmark_dir / f"{container_id}.json"

    def forget(self, container_id: str) -> None:
        """Drop the bookmark of a container Docker no longer has (no copier runs)."""
        with contextlib.suppress(FileNotFoundError):
            self.bookmark_path(container_id).unlink()

    def remove_leftovers(self) -> None:
        """At start-up: the temporary files of bookmark writes a kill interrupted."""
        atomicfile.remove_leftovers(self.bookmark_dir)

    def bookmarked(self) -> list[str]:
        """The containers that have a log bookmark."""
        try:
            return [p.stem for p in self.bookmark_dir.iterdir() if p.suffix == ".json"]
        except FileNotFoundError:
            return []

    def is_copying(self, container_id: str) -> bool:
        copier = self._copiers.get(container_id)
        return copier is not None and copier.task is not None and not copier.task.done()

    async def start(
        self,
        container_id: str,
        log_path: str | os.PathLike[str],
        tty: bool,
        log_root: str | None = None,
    ) -> None:
        """Begin copying a started container's output to ``log_path`` (below ``log_root``).

        Idempotent. Call it once Docker has started the container: a
        bookmark is on disk when it returns, so a restarted pycrid resumes
        the copy with ``recover``.
        """
        if self.is_copying(container_id):
            return
        pending = self._starting.get(container_id)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._starting[container_id] = future
        try:
            copier = _Copier(
                self.client,
                container_id,
                Path(log_path),
                tty,
                self.bookmark_path(container_id),
                self.max_line,
                log_root,
            )
            await copier.prepare()
            if not copier.done:
                # A fresh context: the copier must not inherit the deadline of
                # the CRI call that started it.
                copier.task = asyncio.create_task(
                    copier.run(), name=f"log copier {container_id[:12]}", context=Context()
                )
                self._copiers[container_id] = copier
            future.set_result(None)
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved here; waiters see it through shield
            raise
        finally:
            del self._starting[container_id]

    async def seed(
        self,
        container_id: str,
        log_path: str | os.PathLike[str],
        tty: bool,
        position: Position,
        encoder: CriLogEncoder,
    ) -> None:
        """Bookmark a copy that the file at ``log_path`` holds up to ``position``.

        For a log file written by other means (a container taken over from
        another runtime): ``start`` or ``recover`` then goes on from there.
        """
        copier = _Copier(
            self.client,
            container_id,
            Path(log_path),
            tty,
            self.bookmark_path(container_id),
            self.max_line,
        )
        copier.position = position
        copier.encoder = encoder
        try:
            copier.file = CriLogFile(log_path)
            copier.offset = copier.file.size()
        except OSError as e:
            raise errors.Internal(f"cannot open log file {log_path}: {e}") from e
        try:
            await copier.bookmark()
        finally:
            copier.file.close()

    async def recover(
        self,
        container_id: str,
        log_path: str | os.PathLike[str],
        tty: bool,
        log_root: str | None = None,
    ) -> None:
        """At daemon start: resume copying from the bookmark, if any.

        A container whose output was already copied to its end is left alone,
        so call it for running and exited containers alike.
        """
        await self.start(container_id, log_path, tty, log_root)

    async def stop(
        self, container_id: str, remove: bool = False, timeout: float = DRAIN_TIMEOUT
    ) -> None:
        """After the container exited: wait for its output to end, then close.

        Waits up to ``timeout`` seconds for the rest of the output, then stops
        copying anyway; unfinished lines are written as ``P``. With ``remove``
        (the container is being removed) the bookmark is deleted too.
        """
        copier = self._copiers.get(container_id)
        if copier is not None:
            # Concurrent stops all wait for the copier's last bookmark, so a
            # removal's unlink below always comes after it.
            await copier.stop(flush=True, timeout=timeout)
            if self._copiers.get(container_id) is copier:
                del self._copiers[container_id]
        if remove:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.unlink, self.bookmark_path(container_id))

    async def wait_copied(self, container_id: str, timeout: float = COPIED_WAIT) -> None:
        """Wait (up to ``timeout`` seconds) until an exited container's log is complete.

        Docker reports the exit a moment before the copier has read the last
        lines; clients read the log file as soon as ContainerStatus says
        EXITED (critest does), so that answer waits for this.
        """
        copier = self._copiers.get(container_id)
        if copier is not None and copier.task is not None and not copier.task.done():
            left = seconds_left()
            if left is not None:
                timeout = max(0.0, min(timeout, left - 0.1))
            await asyncio.wait({copier.task}, timeout=timeout)

    async def reopen(self, container_id: str) -> None:
        """ReopenContainerLog: a new file at the log path; the old one stops growing."""
        copier = self._copiers.get(container_id)
        if copier is None:
            raise errors.FailedPrecondition("the container's log is not being copied")
        if not self.is_copying(container_id):
            raise errors.FailedPrecondition("container is not running")
        await copier.reopen()

    async def close(self) -> None:
        """Daemon shutdown: stop every copier, keeping bookmarks for ``recover``."""
        copiers, self._copiers = list(self._copiers.values()), {}
        await asyncio.gather(
            *(copier.stop(flush=False, timeout=0) for copier in copiers), return_exceptions=True
        )
