"""Whether anything in a few directories changed since it was last asked, from inotify.

Status is asked every few seconds and answers whether pod networking can work,
which depends on the CNI config directory and the plugin directories. Asking
the kernel "any events?" costs one system call; looking at the directories
(a stat of each, a listing, a stat of each entry) costs ten or more.

A directory that does not exist cannot be watched: it is looked for on each
question instead, and its appearance counts as a change. A directory that is
a symbolic link is refused (the link could be pointed elsewhere unseen), and
so is a machine without inotify: the caller then looks at the directories
itself.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

from inotify_simple import INotify, flags

CHANGES = (
    flags.CREATE
    | flags.DELETE
    | flags.MODIFY
    | flags.CLOSE_WRITE
    | flags.ATTRIB
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.DELETE_SELF
    | flags.MOVE_SELF
    | flags.ONLYDIR
)
LOST = flags.Q_OVERFLOW | flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF


class DirectoryWatch:
    """Changes to the entries of ``directories`` (not of their subdirectories)."""

    def __init__(self, directories: Iterable[str]) -> None:
        """Raises OSError when inotify cannot be had or a directory is a symbolic link."""
        self._inotify = INotify(nonblocking=True)
        self._missing: list[str] = []
        self.broken = False
        """A watch went away (its directory removed or moved) or events were lost."""
        try:
            for directory in directories:
                if os.path.islink(directory):
                    raise OSError(errno.ELOOP, "is a symbolic link", directory)
                try:
                    self._inotify.add_watch(directory, CHANGES)
                except FileNotFoundError:
                    self._missing.append(directory)
        except BaseException:
            self._inotify.close()
            raise

    def changed(self) -> bool:
        """True when something may have changed since the last call (or since creation)."""
        if self.broken:
            return True
        try:
            events = self._inotify.read(timeout=0)
        except BlockingIOError:
            events = []
        # os.access answers False without raising: a missing path costs no exception.
        appeared = any(os.access(d, os.F_OK) for d in self._missing)
        if appeared or any(event.mask & LOST for event in events):
            self.broken = True  # a new watch is needed, on what is there now
        return appeared or bool(events)

    def close(self) -> None:
        self._inotify.close()
        self.broken = True
