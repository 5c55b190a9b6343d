"""GetContainerEvents: one hub, any number of subscribers.

Adapters publish lifecycle events here from their own state changes; every
subscriber gets each event through a bounded queue of its own. Publishing
never waits: a subscriber whose queue is full has fallen behind, and it is
dropped (its stream ends with an error) rather than slowing the runtime.
kubelet's Evented PLEG relists when its stream breaks, so a dropped
subscriber loses nothing it cannot recover.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from pycrid.adapters.errors import Unavailable
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.events")

BUFFER = 1000
"""Events one subscriber may have waiting before it is dropped."""


class Subscription:
    """One subscriber's queue; iterate it for events until it is closed or dropped."""

    def __init__(self, hub: ContainerEvents, size: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[cri.ContainerEventResponse | None] = asyncio.Queue(size + 1)
        self._size = size
        self.dropped = False

    def offer(self, event: cri.ContainerEventResponse) -> bool:
        """Queue ``event`` without waiting; False (and the end of the stream) when full."""
        if self._queue.qsize() >= self._size:
            self.dropped = True
            self._queue.put_nowait(None)  # the one slot kept for the end
            return False
        self._queue.put_nowait(event)
        return True

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[cri.ContainerEventResponse]:
        return self._events()

    async def _events(self) -> AsyncIterator[cri.ContainerEventResponse]:
        try:
            while True:
                event = await self._queue.get()
                if event is None:
                    raise Unavailable("container event subscriber fell behind and was dropped")
                yield event
        finally:
            self.close()


class ContainerEvents:
    """The hub; also the adapters' ``events`` concern."""

    def __init__(self, buffer: int = BUFFER) -> None:
        self.buffer = buffer
        self._subscribers: list[Subscription] = []

    @property
    def subscribed(self) -> bool:
        """Whether anyone listens (publishers may skip building events otherwise)."""
        return bool(self._subscribers)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self, self.buffer)
        self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def publish(self, event: cri.ContainerEventResponse) -> None:
        for subscription in list(self._subscribers):
            if not subscription.offer(event):
                self.unsubscribe(subscription)
                log.warning("a container event subscriber fell behind; dropped it")

    async def get_container_events(
        self, request: cri.GetEventsRequest
    ) -> AsyncIterator[cri.ContainerEventResponse]:
        subscription = self.subscribe()
        try:
            async for event in subscription:
                yield event
        finally:
            subscription.close()  # the client went away
