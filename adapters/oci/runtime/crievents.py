"""The oci runtime's container events: its store's writes, and conmon's exit files.

Every state change of a pod or container is written to the runtime store
(store.py), which tells the feed. An exit is the one change nobody calls
about: conmon writes an exit file. When the exit directory changes
(exitwatch.py), the records it names are brought up to date at once, so that
a container that ends by itself is reported STOPPED without waiting for a
status call. Where the directory cannot be followed, it is looked at a few
times a second while someone subscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pycrid.adapters.containerevents import ContainerEvents
from pycrid.adapters.eventfeed import EventFeed, store_statuses
from pycrid.adapters.oci.runtime.containers import OciContainers
from pycrid.adapters.oci.runtime.context import OciContext
from pycrid.adapters.oci.runtime.sandboxes import OciSandboxes
from pycrid.adapters.oci.runtime.store import ContainerRecord, SandboxRecord
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.oci.events")

EXIT_POLL = 0.25
"""Seconds between looks at conmon's exit directory while someone subscribes."""


class OciEvents:
    def __init__(self, ctx: OciContext, sandboxes: OciSandboxes, containers: OciContainers) -> None:
        self.ctx = ctx
        self.sandboxes = sandboxes
        self.containers = containers
        self.hub = ContainerEvents()
        self.feed = EventFeed(self.hub, store_statuses(ctx.store))
        self._task: asyncio.Task[None] | None = None
        self._exits_changed = asyncio.Event()
        ctx.exits.on_change(self._exits_changed.set)

    def start(self) -> None:
        """Seed the feed with the recovered objects, then follow the store and the exits."""
        store = self.ctx.store
        self.feed.seed_store(store)
        store.on_change = self.note
        store.on_gone = self.feed.deleted
        self._task = asyncio.get_running_loop().create_task(self._watch_exits(), name="oci exits")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def note(self, record: SandboxRecord | ContainerRecord) -> None:
        """A record's state, once the object is listed (one still being made is not)."""
        if isinstance(record, SandboxRecord):
            if record.id in self.ctx.store.sandbox_ids:
                self.feed.sandbox(record.id, record.ready)
        elif record.id in self.ctx.store.container_ids:
            self.feed.container(record.id, record.sandbox_id, record.state, bool(record.started_at))

    async def _watch_exits(self) -> None:
        while True:
            if self.ctx.exits.followed:
                await self._exits_changed.wait()
                self._exits_changed.clear()
            else:
                await asyncio.sleep(EXIT_POLL)
                if not self.hub.subscribed:
                    continue
            try:
                await self._look()
            except Exception:
                log.exception("looking for exits failed")

    async def _look(self) -> None:
        exited = self.ctx.exited()
        if not exited:
            return
        store = self.ctx.store
        for record in list(store.containers.values()):
            if record.id in exited and record.state == cri.CONTAINER_RUNNING:
                await self.containers.refresh(record)  # saves: the store tells the feed
        for sandbox in list(store.sandboxes.values()):
            if sandbox.ready and sandbox.id in exited:
                self.sandboxes.refresh(sandbox, exited)
                self.note(sandbox)
