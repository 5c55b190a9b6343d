"""Status and ImageFsInfo answer from dockerd's last answers, refreshed in the background."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pycrid.adapters.config import Config
from pycrid.adapters.docker.runtimeinfo import DockerRuntimeInfo
from pycrid.adapters.docker.sampled import Sampled
from pycrid.adapters.errors import Unavailable
from pycrid.api.cri import api_pb2 as cri

from .dockerkit import Kit, make_kit


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    kit = make_kit(tmp_path)
    yield kit
    await kit.close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_first_caller_waits_and_later_ones_get_the_kept_value() -> None:
    clock, fetched = Clock(), []

    async def fetch() -> int:
        fetched.append(clock.now)
        return len(fetched)

    sampled = Sampled(fetch, interval=10, min_interval=2, clock=clock)
    assert await sampled.get() == 1
    clock.now += 9
    assert await sampled.get() == 1
    await settle()
    assert len(fetched) == 1  # not older than the interval: not asked again
    clock.now += 1
    assert await sampled.get() == 1  # the old value, while the new one is taken
    await settle()
    assert await sampled.get() == 2
    await sampled.close()


async def test_a_change_refreshes_soon_but_not_at_once() -> None:
    clock, fetched = Clock(), []

    async def fetch() -> int:
        fetched.append(clock.now)
        return len(fetched)

    sampled = Sampled(fetch, interval=10, min_interval=2, clock=clock)
    await sampled.get()
    sampled.mark_stale()
    clock.now += 1
    await sampled.get()
    await settle()
    assert len(fetched) == 1
    clock.now += 1
    await sampled.get()
    await settle()
    assert len(fetched) == 2
    await sampled.close()


async def test_a_failed_refresh_keeps_the_old_value_and_a_forgotten_one_is_waited_for() -> None:
    clock, answers = Clock(), [1]

    async def fetch() -> int:
        if not answers:
            raise Unavailable("dockerd is gone")
        return answers.pop(0)

    sampled = Sampled(fetch, interval=10, clock=clock)
    assert await sampled.get() == 1
    clock.now += 10
    assert await sampled.get() == 1
    await settle()
    assert await sampled.get() == 1  # the refresh failed: the value stays
    sampled.forget()
    answers.append(2)
    assert await sampled.get() == 2
    await sampled.close()


async def test_image_fs_info_does_not_size_every_container_on_each_call(kit: Kit) -> None:
    await kit.run_pod()
    first = await kit.images.image_fs_info(cri.ImageFsInfoRequest())
    for _ in range(5):
        again = await kit.images.image_fs_info(cri.ImageFsInfoRequest())
    await settle()
    assert len(kit.docker.called("df")) == 1
    assert again == first
    kept = await _steady_fs_info(kit)  # one answer per sample, not one built per call
    kit.images.changed()  # a pull or a removal
    kit.images.disk_usage.min_interval = 0
    await kit.images.image_fs_info(cri.ImageFsInfoRequest())
    await settle()
    assert len(kit.docker.called("df")) == 2
    for _ in range(200):  # the new sample lands once its worker thread is done
        renewed = await kit.images.image_fs_info(cri.ImageFsInfoRequest())
        if renewed is not kept:
            break
        await asyncio.sleep(0.01)
    assert renewed is not kept


async def _steady_fs_info(kit: Kit) -> cri.ImageFsInfoResponse:
    """The answer once two calls in a row give the same object (a sample is taken partly
    in a worker thread, so a refresh may still land between two calls)."""
    previous = None
    for _ in range(200):
        answer = await kit.images.image_fs_info(cri.ImageFsInfoRequest())
        if answer is previous:
            return answer
        previous = answer
        await asyncio.sleep(0.01)
    raise AssertionError("ImageFsInfo built a new answer on every call")


async def test_status_pings_only_without_the_event_stream_and_asks_docker_info_once(
    kit: Kit, tmp_path: Path
) -> None:
    live = [False]
    info = DockerRuntimeInfo(Config(), kit.docker, tmp_path, live=lambda: live[0])
    for _ in range(5):
        response = await info.status(cri.StatusRequest(verbose=True))
    live[0] = True  # the event stream is connected: dockerd answers
    for _ in range(5):
        response = await info.status(cri.StatusRequest(verbose=True))
    await settle()
    assert [c.status for c in response.status.conditions][:1] == [True]
    assert len(kit.docker.called("ping")) == 5
    assert len(kit.docker.called("info")) == 1
    assert "dockerVersion" in response.info
    await info.docker_info.close()


async def test_a_plain_status_answer_is_kept_while_nothing_it_says_changed(
    kit: Kit, tmp_path: Path
) -> None:
    live = [True]
    info = DockerRuntimeInfo(Config(), kit.docker, tmp_path, live=lambda: live[0])
    first = await info.status(cri.StatusRequest())
    assert await info.status(cri.StatusRequest()) is first
    assert "config" not in first.info
    assert "config" in (await info.status(cri.StatusRequest(verbose=True))).info
    live[0] = False
    kit.docker.fail("ping", Unavailable("down"))
    down = await info.status(cri.StatusRequest())
    assert down is not first
    assert [c.status for c in down.status.conditions] == [False, False]
    await info.docker_info.close()
