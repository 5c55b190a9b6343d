"""The daemon learns of its children's exits through pidfds, and puts the old watcher back."""

from __future__ import annotations

import asyncio
import sys

import pytest

from pycrid.server.daemon import children_watched_with_pidfds


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 chooses pidfds itself")
async def test_children_are_reaped_through_pidfds_and_the_old_watcher_comes_back() -> None:
    before = asyncio.get_child_watcher()
    with children_watched_with_pidfds():
        assert isinstance(asyncio.get_child_watcher(), asyncio.PidfdChildWatcher)
        process = await asyncio.create_subprocess_exec("sh", "-c", "exit 3")
        assert await asyncio.wait_for(process.wait(), 10) == 3
    assert asyncio.get_child_watcher() is before
    process = await asyncio.create_subprocess_exec("true")
    assert await asyncio.wait_for(process.wait(), 10) == 0
