"""GetContainerEvents: the hub's fan-out, a slow subscriber dropped, the feed's order."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pycrid.adapters.containerevents import ContainerEvents
from pycrid.adapters.errors import Unavailable
from pycrid.adapters.eventfeed import CREATED, DELETED, STARTED, STOPPED, EventFeed
from pycrid.api.cri import api_pb2 as cri


def event(container_id: str, kind: int = CREATED) -> cri.ContainerEventResponse:
    return cri.ContainerEventResponse(container_id=container_id, container_event_type=kind)


async def take(events: object, count: int) -> list[cri.ContainerEventResponse]:
    taken = []
    async with asyncio.timeout(2):
        async for item in events:  # type: ignore[attr-defined]
            taken.append(item)
            if len(taken) == count:
                break
    return taken


async def test_every_subscriber_gets_every_event_in_order() -> None:
    hub = ContainerEvents()
    first, second = hub.subscribe(), hub.subscribe()
    for name in ("a", "b", "c"):
        hub.publish(event(name))
    assert [e.container_id for e in await take(first, 3)] == ["a", "b", "c"]
    assert [e.container_id for e in await take(second, 3)] == ["a", "b", "c"]


async def test_a_subscriber_that_falls_behind_is_dropped_and_others_carry_on() -> None:
    hub = ContainerEvents(buffer=2)
    slow, fast = hub.subscribe(), hub.subscribe()
    stream = aiter(fast)
    for name in ("a", "b", "c"):
        hub.publish(event(name))
        assert (await anext(stream)).container_id == name
    assert slow.dropped and not fast.dropped
    received = []
    with pytest.raises(Unavailable):
        async for item in slow:
            received.append(item.container_id)
    assert received == ["a", "b"]  # what fitted, then the end
    hub.publish(event("d"))
    assert (await anext(stream)).container_id == "d"


async def test_a_closed_stream_unsubscribes() -> None:
    hub = ContainerEvents()
    stream = hub.get_container_events(cri.GetEventsRequest())
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    assert hub.subscribed
    hub.publish(event("a"))
    assert (await waiting).container_id == "a"
    await stream.aclose()
    assert not hub.subscribed


def recording_feed() -> tuple[EventFeed, list[tuple[str, int, int]]]:
    """A feed whose pod is READY with one status per container; events as (id, type, pod)."""
    hub = ContainerEvents()
    subscription = hub.subscribe()
    sent: list[tuple[str, int, int]] = []
    pods = {"pod": cri.PodSandboxStatus(id="pod", state=cri.SANDBOX_READY)}

    def statuses(sandbox_id: str) -> tuple[cri.PodSandboxStatus | None, list[cri.ContainerStatus]]:
        return pods.get(sandbox_id), [cri.ContainerStatus(id="c1")]

    def drain() -> None:
        while not subscription._queue.empty():
            item = subscription._queue.get_nowait()
            assert item is not None
            assert item.created_at > 0
            sent.append(
                (item.container_id, item.container_event_type, item.pod_sandbox_status.state)
            )

    feed = EventFeed(hub, statuses)
    feed.drain = drain  # type: ignore[attr-defined]
    feed.pods = pods  # type: ignore[attr-defined]
    return feed, sent


def test_the_feed_sends_each_step_once_and_fills_in_missed_ones() -> None:
    feed, sent = recording_feed()
    feed.sandbox("pod", ready=True)
    feed.container("c1", "pod", cri.CONTAINER_CREATED, started=False)
    feed.container("c1", "pod", cri.CONTAINER_CREATED, started=False)  # heard twice
    feed.container("c2", "pod", cri.CONTAINER_EXITED, started=True)  # first heard exited
    feed.container("c1", "pod", cri.CONTAINER_RUNNING, started=True)
    feed.container("c1", "pod", cri.CONTAINER_CREATED, started=True)  # never backwards
    feed.deleted("c1", "pod")
    feed.deleted("c1", "pod")
    feed.drain()  # type: ignore[attr-defined]
    ready = cri.SANDBOX_READY
    assert sent == [
        ("pod", CREATED, ready),
        ("pod", STARTED, ready),
        ("c1", CREATED, ready),
        ("c2", CREATED, ready),
        ("c2", STARTED, ready),
        ("c2", STOPPED, ready),
        ("c1", STARTED, ready),
        ("c1", STOPPED, ready),  # removed while running: stopped first
        ("c1", DELETED, ready),
    ]


def test_a_container_that_never_started_is_not_reported_started() -> None:
    feed, sent = recording_feed()
    feed.container("c1", "pod", cri.CONTAINER_CREATED, started=False)
    feed.container("c1", "pod", cri.CONTAINER_EXITED, started=False)
    feed.drain()  # type: ignore[attr-defined]
    assert [kind for _, kind, _ in sent] == [CREATED, STOPPED]


def test_a_removed_pod_is_reported_with_its_last_status_not_ready() -> None:
    feed, sent = recording_feed()
    feed.sandbox("pod", ready=True)
    feed.sandbox("pod", ready=False)
    del feed.pods["pod"]  # type: ignore[attr-defined]
    feed.deleted("pod", "pod")
    feed.drain()  # type: ignore[attr-defined]
    assert sent[-2:] == [
        ("pod", STOPPED, cri.SANDBOX_READY),
        ("pod", DELETED, cri.SANDBOX_NOTREADY),
    ]


def test_seeded_objects_send_nothing_until_they_move() -> None:
    feed, sent = recording_feed()
    feed.seed("c1", STARTED)
    feed.container("c1", "pod", cri.CONTAINER_RUNNING, started=True)
    feed.sandbox("other", ready=False)  # never seen ready: nothing to say
    feed.container("c1", "pod", cri.CONTAINER_EXITED, started=True)
    feed.drain()  # type: ignore[attr-defined]
    assert [(object_id, kind) for object_id, kind, _ in sent] == [("c1", STOPPED)]


def test_starts_and_exits_are_logged_at_info_with_how_it_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = ContainerEvents()  # nobody subscribed: the log is written all the same

    def statuses(sandbox_id: str) -> tuple[cri.PodSandboxStatus | None, list[cri.ContainerStatus]]:
        ended = cri.ContainerStatus(id="c1", exit_code=137, reason="OOMKilled")
        return cri.PodSandboxStatus(id=sandbox_id), [ended]

    feed = EventFeed(hub, statuses)
    caplog.set_level(logging.INFO, "pycrid.containers")
    feed.container("c1", "pod", cri.CONTAINER_CREATED, started=False)
    feed.container("c1", "pod", cri.CONTAINER_RUNNING, started=True)
    feed.container("c1", "pod", cri.CONTAINER_EXITED, started=True)
    assert [r.getMessage() for r in caplog.records] == [
        "container c1 started in pod sandbox pod",
        "container c1 exited: code 137, OOMKilled",
    ]
