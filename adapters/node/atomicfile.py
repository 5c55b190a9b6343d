"""Crash-safe small files: write a temporary file, fsync, rename."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".partial"
"""Ends the name of a file being written; one left by a crash is removed by ``remove_leftovers``."""


def write_bytes(path: Path, data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file.

    ``durable``: on disk before this returns (two fsyncs). Files that only
    matter while the processes they describe run (an OCI bundle) need not be.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_leftovers(directory: Path) -> int:
    """Remove the temporary files that writes killed half-way left in ``directory``.

    Only when no write can be under way (at start-up). Returns how many there were.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(TEMPORARY_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed


def write_json(path: Path, value: Any, *, durable: bool = True) -> None:
    # No indent: json's C encoder only serves compact output, and records are
    # written several times per pod start.
    write_bytes(path, json.dumps(value, sort_keys=True).encode(), durable=durable)


async def write_json_async(path: Path, value: Any, *, durable: bool = True) -> None:
    """``write_json`` in a worker thread: two fsyncs must not stall the event loop."""
    await asyncio.to_thread(functools.partial(write_json, path, value, durable=durable))


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON value in ``path``, or ``default`` when the file does not exist."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default
