"""Names that pycrid gives images beyond what dockerd records itself.

Pulling ``registry.k8s.io/pause:3.10`` through the mirror ``127.0.0.1:5000``
leaves dockerd with ``127.0.0.1:5000/pause:3.10`` and its repo digest. pycrid
tags the image with the requested name (a real Docker tag), and records here:

- *aliases*: digest references under the requested repository
  (``registry.k8s.io/pause@sha256:...``), which Docker cannot store;
- *hidden*: the mirror's names that pycrid itself created, so that callers see
  exactly the names they asked for.

The record is a small JSON file, rewritten atomically on every change, in a
worker thread (its fsyncs must not stall the event loop). Writes happen one
at a time and each writes the names as they are when it begins, so the file
always ends up with the latest names, even when a caller gives up waiting.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pycrid.adapters.node import atomicfile


class ImageNames:
    def __init__(self, path: Path) -> None:
        self._path = path
        saved = atomicfile.read_json(path, default={})
        self._aliases: dict[str, str] = saved.get("aliases", {})
        self._hidden: dict[str, str] = saved.get("hidden", {})
        self._saving = asyncio.Lock()
        self._writing: asyncio.Future[None] | None = None

    async def _save(self) -> None:
        async with self._saving:
            if self._writing is not None:
                # A write whose caller was cancelled may still run: let it land first.
                await asyncio.wait({self._writing})
            snapshot = {"aliases": dict(self._aliases), "hidden": dict(self._hidden)}
            self._writing = asyncio.ensure_future(atomicfile.write_json_async(self._path, snapshot))
            await asyncio.shield(self._writing)

    def image_for_alias(self, reference: str) -> str | None:
        """The image ID recorded for a digest alias, if any."""
        return self._aliases.get(reference)

    def aliases_of(self, image_id: str) -> list[str]:
        return sorted(ref for ref, owner in self._aliases.items() if owner == image_id)

    def is_hidden(self, reference: str, image_id: str) -> bool:
        return self._hidden.get(reference) == image_id

    async def record(self, image_id: str, aliases: list[str], hidden: list[str]) -> None:
        changed = False
        for ref in aliases:
            if self._aliases.get(ref) != image_id:
                self._aliases[ref] = image_id
                changed = True
        for ref in hidden:
            if self._hidden.get(ref) != image_id:
                self._hidden[ref] = image_id
                changed = True
        if changed:
            await self._save()

    async def forget(self, image_id: str) -> None:
        """Drop every name of an image that is gone."""
        before = len(self._aliases) + len(self._hidden)
        self._aliases = {r: i for r, i in self._aliases.items() if i != image_id}
        self._hidden = {r: i for r, i in self._hidden.items() if i != image_id}
        if len(self._aliases) + len(self._hidden) != before:
            await self._save()

    async def forget_missing(self, live_ids: set[str]) -> None:
        """Drop names of images removed behind pycrid's back."""
        before = len(self._aliases) + len(self._hidden)
        self._aliases = {r: i for r, i in self._aliases.items() if i in live_ids}
        self._hidden = {r: i for r, i in self._hidden.items() if i in live_ids}
        if len(self._aliases) + len(self._hidden) != before:
            await self._save()
