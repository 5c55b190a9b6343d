"""Identical concurrent calls carried out once; late results kept for the retry."""

from __future__ import annotations

import asyncio

import pytest

from pycrid.adapters.deadline import seconds_left, set_call_deadline
from pycrid.server.singleflight import SingleFlight


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_identical_calls_share_one_run() -> None:
    flights = SingleFlight()
    runs = 0
    release = asyncio.Event()

    async def work() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return f"pod-{runs}"

    callers = [asyncio.ensure_future(flights.run(b"k", work)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*callers) == ["pod-1"] * 10
    assert runs == 1 and len(flights) == 0
    # Delivered results are not kept: the next identical call runs again.
    assert await flights.run(b"k", work) == "pod-2"


async def test_different_keys_run_separately() -> None:
    flights = SingleFlight()

    async def work(value: str) -> str:
        await asyncio.sleep(0.01)
        return value

    results = await asyncio.gather(
        flights.run(b"a", lambda: work("a")), flights.run(b"b", lambda: work("b"))
    )
    assert results == ["a", "b"]


async def test_everyone_waiting_gets_the_error() -> None:
    flights = SingleFlight()
    runs = 0

    async def work() -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        raise ValueError("no room")

    outcomes = await asyncio.gather(
        *(flights.run(b"k", work) for _ in range(3)), return_exceptions=True
    )
    assert runs == 1 and all(isinstance(o, ValueError) for o in outcomes)
    with pytest.raises(ValueError):
        await flights.run(b"k", work)  # errors are not kept
    assert runs == 2


async def test_work_outlives_its_callers_and_the_retry_gets_its_result() -> None:
    clock = Clock()
    flights = SingleFlight(keep_for=300, clock=clock)
    runs = 0
    release = asyncio.Event()

    async def work() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return "pod-1"

    caller = asyncio.ensure_future(flights.run(b"k", work))
    await asyncio.sleep(0)
    caller.cancel()  # the client's deadline passed
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    await asyncio.sleep(0.01)
    assert await flights.run(b"k", work) == "pod-1"  # kubelet's retry
    assert runs == 1
    # Kept once: a later identical request is new work.
    release.clear()
    later = asyncio.ensure_future(flights.run(b"k", work))
    await asyncio.sleep(0)
    release.set()
    assert await later == "pod-1" and runs == 2


async def test_kept_results_expire() -> None:
    clock = Clock()
    flights = SingleFlight(keep_for=300, clock=clock)
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        return runs

    caller = asyncio.ensure_future(flights.run(b"k", work))
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.sleep(0.05)
    clock.now += 301
    assert await flights.run(b"k", work) == 2


async def test_the_work_runs_under_its_own_deadline() -> None:
    flights = SingleFlight(work_deadline=240)
    set_call_deadline(0.5)  # the first caller's
    seen: list[float | None] = []

    async def work() -> None:
        seen.append(seconds_left())

    await flights.run(b"k", work)
    assert seen[0] is not None and seen[0] > 200
    left = seconds_left()
    assert left is not None and left < 1  # the caller's own deadline is untouched
