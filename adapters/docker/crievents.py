"""The docker adapter's container events, from its store's state changes.

The store is told of every state a record reaches, whichever way pycrid
learned of it: its own calls, Docker's events (a container that exits by
itself), or a listing after the event stream broke (store.py, events.py).
"""

from __future__ import annotations

from pycrid.adapters.containerevents import ContainerEvents
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.store import ContainerRecord, SandboxRecord
from pycrid.adapters.eventfeed import EventFeed, store_statuses


class DockerEvents:
    def __init__(self, ctx: DockerContext) -> None:
        self.ctx = ctx
        self.hub = ContainerEvents()
        self.feed = EventFeed(self.hub, store_statuses(ctx.store))

    def start(self) -> None:
        """Seed the feed with the recovered objects, then follow the store."""
        store = self.ctx.store
        self.feed.seed_store(store)
        store.on_change = self.note
        store.on_gone = self.feed.deleted

    def note(self, record: SandboxRecord | ContainerRecord) -> None:
        """A record's state, once the object is listed (one still being made is not)."""
        if isinstance(record, SandboxRecord):
            if record.id in self.ctx.store.sandbox_ids:
                self.feed.sandbox(record.id, record.ready)
        elif record.id in self.ctx.store.container_ids:
            started = bool(record.started_at) or record.docker_state != "created"
            self.feed.container(record.id, record.sandbox_id, record.state, started)
