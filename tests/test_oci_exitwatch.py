"""conmon's exit directory, read on every question or followed with inotify."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pycrid.adapters.oci.runtime.exitwatch import ExitWatch


@pytest.fixture
async def watch(tmp_path: Path) -> AsyncIterator[ExitWatch]:
    exits = ExitWatch(tmp_path / "exits")
    yield exits
    exits.close()


async def until(condition: Callable[[], bool], seconds: float = 5) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def test_before_start_every_question_reads_the_directory(watch: ExitWatch) -> None:
    assert watch.ids() == frozenset()  # no directory yet
    watch.directory.mkdir()
    (watch.directory / "a").write_text("0")
    assert not watch.followed
    assert watch.ids() == {"a"}
    assert watch.key() == {"a"}


async def test_followed_it_sees_exits_and_removals_without_reading(watch: ExitWatch) -> None:
    watch.directory.mkdir()
    (watch.directory / "before").write_text("0")
    changes: list[int] = []
    watch.on_change(lambda: changes.append(watch.generation))
    watch.start()
    assert watch.followed
    assert watch.ids() == {"before"}
    (watch.directory / "a").write_text("137")
    await until(lambda: "a" in watch.ids())
    # conmon's way of writing may be a temporary file renamed into place
    (watch.directory / "b.tmp").write_text("1")
    os.rename(watch.directory / "b.tmp", watch.directory / "b")
    await until(lambda: "b" in watch.ids())
    assert "b.tmp" not in watch.ids()
    (watch.directory / "before").unlink()
    await until(lambda: "before" not in watch.ids())
    assert watch.ids() == {"a", "b"}
    assert changes == sorted(changes) and len(changes) >= 3
    assert watch.key() == watch.generation


async def test_the_generation_stands_while_nothing_changes(watch: ExitWatch) -> None:
    watch.start()
    (watch.directory / "a").write_text("0")
    await until(lambda: "a" in watch.ids())
    generation = watch.generation
    await asyncio.sleep(0.05)
    assert watch.generation == generation


async def test_a_directory_removed_and_made_again_is_followed_again(watch: ExitWatch) -> None:
    watch.start()
    (watch.directory / "a").write_text("0")
    await until(lambda: "a" in watch.ids())
    shutil.rmtree(watch.directory)
    await until(lambda: watch.ids() == frozenset())
    assert watch.followed and watch.directory.is_dir()  # made again and watched
    (watch.directory / "b").write_text("0")
    await until(lambda: watch.ids() == {"b"})


async def test_lost_events_are_made_up_by_reading_the_directory(watch: ExitWatch) -> None:
    watch.start()
    watch.close()  # events missed while not followed
    (watch.directory / "a").write_text("0")
    watch._recover()
    assert watch.followed
    assert watch.ids() == {"a"}
