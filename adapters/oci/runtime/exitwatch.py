"""conmon's exit directory, followed with inotify: whose process has exited.

conmon writes ``<exit dir>/<id>`` when the process it watches ends, and the
file goes when pycrid removes the object. kubelet asks for every pod and
container every few seconds; with the directory followed, "has it exited?"
is a set lookup instead of a file probe per call, and the event feed hears
of an exit when it happens instead of polling for it.

Until ``start`` (and where inotify cannot be had) every question reads the
directory, which is always right, only slower. A queue overflow, or the
directory going away, is answered by reading it again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from inotify_simple import INotify, flags

log = logging.getLogger("pycrid.oci.exits")

ADDED = flags.CLOSE_WRITE | flags.MOVED_TO
GONE = flags.DELETE | flags.MOVED_FROM
LOST = flags.Q_OVERFLOW | flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF
WATCHED = ADDED | GONE | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR


class ExitWatch:
    """The IDs with a file in ``directory``, kept current by inotify once started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.generation = 0
        """Moves whenever the set of exited IDs changes (while followed)."""
        self._ids: frozenset[str] = frozenset()
        self._inotify: INotify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[], None]] = []

    @property
    def followed(self) -> bool:
        return self._inotify is not None

    def ids(self) -> frozenset[str]:
        """The IDs whose process conmon saw exit."""
        return self._ids if self._inotify is not None else self._read()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the loop after the set changed (only while followed)."""
        self._listeners.append(listener)

    def start(self) -> None:
        """Follow the directory from the running loop; reads it once, now."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            inotify = INotify(nonblocking=True)
        except OSError as e:
            log.warning("no inotify (%s): the exit directory is read on every call", e)
            return
        try:
            inotify.add_watch(self.directory, WATCHED)
        except OSError as e:
            inotify.close()
            log.warning("cannot watch %s (%s): it is read on every call", self.directory, e)
            return
        self._inotify = inotify
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(inotify.fileno(), self._take_events)
        self._reset(self._read())

    def close(self) -> None:
        if self._inotify is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()
        self._inotify = None

    def _read(self) -> frozenset[str]:
        try:
            return frozenset(os.listdir(self.directory))
        except FileNotFoundError:
            return frozenset()

    def _take_events(self) -> None:
        inotify = self._inotify
        if inotify is None:
            return
        try:
            events = inotify.read(timeout=0)
        except BlockingIOError:
            return
        ids = set(self._ids)
        lost = False
        for event in events:
            if event.mask & LOST:
                lost = True
            elif event.mask & ADDED:
                ids.add(event.name)
            elif event.mask & GONE:
                ids.discard(event.name)
        if lost:
            self._recover()
            return
        self._reset(frozenset(ids))

    def _recover(self) -> None:
        """Events were lost, or the directory itself went: read it, watch it again."""
        log.info("exit directory: events lost; reading %s again", self.directory)
        self.close()
        self.start()
        self._notify()  # followed or not, listeners look again

    def key(self) -> object:
        """What a kept answer made from the exited IDs is valid for (criviews.KeptAnswer)."""
        return self.generation if self._inotify is not None else self._read()

    def _reset(self, ids: frozenset[str]) -> None:
        if ids == self._ids:
            return
        self._ids = ids
        self.generation += 1
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("an exit listener failed")
