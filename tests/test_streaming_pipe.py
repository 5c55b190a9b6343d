"""The bounded pipes behind stream input, and port-forward's stream pairing."""

from __future__ import annotations

import asyncio

import pytest

from pycrid.server.streaming.pipe import Pipe
from pycrid.server.streaming.portforward import PairError, PairTracker


async def test_pipe_delivers_in_order_then_ends() -> None:
    pipe = Pipe()
    await pipe.put(b"a")
    await pipe.put(b"")  # empty input is not an end
    await pipe.put(b"b")
    pipe.close()
    await pipe.put(b"late")  # after close: dropped
    assert [await pipe.read() for _ in range(4)] == [b"a", b"b", b"", b""]


async def test_pipe_holds_the_writer_back_when_full() -> None:
    pipe = Pipe(limit=4)
    await pipe.put(b"12")
    writer = asyncio.ensure_future(pipe.put(b"3456"))
    await asyncio.sleep(0)
    assert not writer.done()  # over the limit: waits for the reader to catch up
    assert await pipe.read() == b"12"
    assert await pipe.read() == b"3456"
    await asyncio.wait_for(writer, 5)


async def test_discarding_frees_a_blocked_writer() -> None:
    pipe = Pipe(limit=1)
    writer = asyncio.ensure_future(pipe.put(b"xy"))
    await asyncio.sleep(0)
    pipe.discard()
    await asyncio.wait_for(writer, 5)
    await pipe.put(b"more")
    assert await pipe.read() == b""


class FakeStream:
    def __init__(self, stream_id: int) -> None:
        self.id = stream_id


def test_pairs_complete_by_request_id_in_any_order() -> None:
    tracker = PairTracker()
    a_error, b_data, a_data, b_error = (FakeStream(i) for i in (1, 3, 5, 7))
    pair_a, created = tracker.add("a", "error", a_error)  # type: ignore[arg-type]
    assert created and not pair_a.complete
    pair_b, created = tracker.add("b", "data", b_data)  # type: ignore[arg-type]
    assert created and not pair_b.complete
    pair, created = tracker.add("a", "data", a_data)  # type: ignore[arg-type]
    assert pair is pair_a and not created and pair.complete
    assert pair.streams == {"error": a_error, "data": a_data}
    assert tracker.pop("a") is None  # complete pairs leave the tracker
    with pytest.raises(PairError):
        tracker.add("b", "data", b_error)  # type: ignore[arg-type]
    assert tracker.pop("b") is pair_b
