"""What a Docker pull has done so far, told in the log at a bounded rate.

dockerd streams one JSON document per step of a pull (per layer: waiting,
downloading with bytes so far, extracting, complete). An operator watching
a slow pull wants one line every few seconds with the layers done and the
bytes moved, not hundreds of lines, and one line at the end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("pycrid.docker.images")

REPORT_EVERY = 5.0
"""Seconds between two progress lines of one pull."""

DONE = ("Pull complete", "Already exists")


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


class PullProgress:
    """Takes a pull's progress documents (from the pull's thread) and logs now and then."""

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.clock = clock
        self.started = clock()
        self._last_report = self.started
        self._lock = threading.Lock()
        self.layers: dict[str, tuple[int, int]] = {}
        """Bytes downloaded and total, by layer ID."""
        self.done: set[str] = set()

    def take(self, event: Mapping[str, object]) -> None:
        layer = str(event.get("id") or "")
        status = str(event.get("status") or "")
        detail = event.get("progressDetail")
        with self._lock:
            if layer and status == "Downloading" and isinstance(detail, Mapping):
                current, total = detail.get("current"), detail.get("total")
                if isinstance(current, int) and isinstance(total, int):
                    self.layers[layer] = (current, total)
            elif layer and status in DONE:
                self.done.add(layer)
            elif layer and status == "Download complete" and layer in self.layers:
                total = self.layers[layer][1]
                self.layers[layer] = (total, total)
            now = self.clock()
            if now - self._last_report < REPORT_EVERY:
                return
            self._last_report = now
            line = self.summary()
        log.info("pulling %s: %s", self.what, line)

    def summary(self) -> str:
        known = set(self.layers) | self.done
        moved = sum(current for current, _ in self.layers.values())
        total = sum(size for _, size in self.layers.values())
        text = f"{len(self.done)} of {len(known)} layers done"
        if total:
            text += f", {mib(moved)} of {mib(total)} downloaded"
        return text

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started
