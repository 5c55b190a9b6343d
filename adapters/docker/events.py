"""Docker's event stream, kept applied to the docker adapter's memory.

kubelet lists pods and containers every second; answering from memory is
what makes that cheap, and Docker's events are what keep the memory true.
One long-lived ``GET /events`` (container and image events) is read in a
thread of its own; each event moves a record's state forward (store.py) or
marks the cached image answers stale. After the stream opens, one full
``docker ps -a`` catches up with whatever happened before it; only then is
the store ``live``. When the stream breaks (dockerd restarts, the connection
drops), the store stops being live at once, so calls ask Docker again, and
the watch reconnects with a growing pause.

An event can only make a record's state go forward, never back, so events
crossing inspects or listings in flight are harmless (store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from pycrid.adapters.docker.api import DockerApi, RawStream
from pycrid.adapters.docker.store import ContainerRecord, SandboxRecord, Store
from pycrid.adapters.errors import CRIError

log = logging.getLogger("pycrid.docker.events")

CONTAINER_STATES = {
    "create": "created",
    "start": "running",
    "unpause": "running",
    "pause": "paused",
    "die": "exited",
}
"""The Docker state a container event says the container is now in."""

IMAGE_ACTIONS = ("pull", "tag", "untag", "delete", "import", "load")
FILTERS = {
    "type": ["container", "image"],
    "event": [*CONTAINER_STATES, "oom", "destroy", *IMAGE_ACTIONS],
}

RETRY_FIRST = 0.2
RETRY_MOST = 5.0
"""Seconds between attempts to reopen the stream: doubling from the first to the most."""
READ_SIZE = 64 * 1024


class EventWatch:
    """Follows Docker's events into ``store``; see the module docstring."""

    def __init__(
        self,
        client: DockerApi,
        store: Store,
        *,
        resync: Callable[[], Awaitable[None]],
        images_changed: Callable[[], None],
    ) -> None:
        self.client = client
        self.store = store
        self.resync = resync
        """One full listing of Docker's containers into the store."""
        self.images_changed = images_changed
        self._task: asyncio.Task[None] | None = None
        self._stream: RawStream | None = None
        self._follow_ups: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()
        """Set while the store is live (tests and start-up wait on it)."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="docker events")

    async def close(self) -> None:
        self._set_live(False)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._follow_ups):
            task.cancel()

    def reconnect(self) -> None:
        """Drop the stream as a broken connection would; the watch opens a new one."""
        self._set_live(False)
        if self._stream is not None:
            self._stream.interrupt()

    # The watch.

    def _set_live(self, live: bool) -> None:
        self.store.live = live
        if live:
            self.connected.set()
        else:
            self.connected.clear()
            # Image answers cached while live may have missed a change.
            self.images_changed()

    async def _watch(self) -> None:
        pause = RETRY_FIRST
        while True:
            try:
                await self._follow_once()
                pause = RETRY_FIRST  # a stream that worked: retry at once-ish
            except CRIError as e:
                log.warning("docker event stream: %s; retrying in %.1fs", e, pause)
            except OSError as e:
                log.warning("docker event stream broke: %s; retrying in %.1fs", e, pause)
            except Exception:
                log.exception("following docker's events failed; retrying in %.1fs", pause)
            self._set_live(False)
            await asyncio.sleep(pause)
            pause = min(RETRY_MOST, pause * 2)

    async def _follow_once(self) -> None:
        loop = asyncio.get_running_loop()
        stream = await asyncio.to_thread(self.client.open_events, FILTERS)
        self._stream = stream
        lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        reader = threading.Thread(
            target=_pump, args=(stream, loop, lines), name="docker-events", daemon=True
        )
        reader.start()
        try:
            await self.resync()
            while not lines.empty():  # what happened during the listing
                if not self._take(lines.get_nowait()):
                    return
            self._set_live(True)
            log.debug("following docker's events")
            while self._take(await lines.get()):
                pass
            log.warning("docker event stream ended")
        finally:
            self._set_live(False)
            self._stream = None
            stream.interrupt()
            await asyncio.to_thread(reader.join)
            stream.close()

    def _take(self, line: bytes | None) -> bool:
        """Apply one line of the stream; False at its end."""
        if line is None:
            return False
        try:
            event = json.loads(line)
        except ValueError:
            log.warning("docker sent an event that is not JSON: %r", line[:200])
            return True
        if isinstance(event, dict):
            self.apply(event)
        return True

    # Events.

    def apply(self, event: dict[str, Any]) -> None:
        """One Docker event into the store."""
        kind, action = event.get("Type"), str(event.get("Action") or "")
        if kind == "image":
            self.images_changed()
            return
        if kind != "container":
            return
        actor = event.get("Actor") or {}
        object_id = str(actor.get("ID") or event.get("id") or "")
        record: SandboxRecord | ContainerRecord | None = self.store.sandboxes.get(
            object_id
        ) or self.store.containers.get(object_id)
        if record is None:
            return  # not ours, or not recorded yet (its create call will record it)
        if action == "destroy":
            if record.removing:
                return  # pycrid's own removal, which forgets the record itself
            # Removed behind pycrid's back: the listing path knows how to let
            # go of everything.
            self._follow_up(self.resync())
            return
        if action == "oom" and isinstance(record, ContainerRecord):
            # As containerd does: an OOM kill in the container makes its reason
            # OOMKilled, whether the event comes before its exit or after.
            record.oom_event = record.oom_killed = True
            record.inspected_state = ""  # the exit details to come need an inspect
            self.store.changed(record)
            return
        docker_state = CONTAINER_STATES.get(action)
        if docker_state and record.advance(docker_state):
            if isinstance(record, ContainerRecord):
                record.finished_known = False
                if action == "die":
                    _take_exit(record, event, actor)
            self.store.changed(record)

    def _follow_up(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except CRIError as e:
                log.warning("catching up with docker: %s", e)

        task = asyncio.get_running_loop().create_task(run())
        self._follow_ups.add(task)
        task.add_done_callback(self._follow_ups.discard)


def _take_exit(record: ContainerRecord, event: dict[str, Any], actor: dict[str, Any]) -> None:
    """What a ``die`` event says of the exit, until an inspect says more."""
    code = (actor.get("Attributes") or {}).get("exitCode")
    if code is not None and str(code).lstrip("-").isdigit():
        record.exit_code = int(code)
    finished = event.get("timeNano")
    if isinstance(finished, int) and finished > 0:
        record.finished_at = max(finished, record.started_at)


def _pump(
    stream: RawStream, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[bytes | None]
) -> None:
    """In the reader thread: the stream's lines onto the loop's queue, then None."""
    pending = b""
    try:
        while True:
            chunk = stream.read(READ_SIZE)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if line.strip():
                    loop.call_soon_threadsafe(lines.put_nowait, line)
    except OSError:
        pass
    finally:
        with contextlib.suppress(RuntimeError):  # the loop closed first
            loop.call_soon_threadsafe(lines.put_nowait, None)
