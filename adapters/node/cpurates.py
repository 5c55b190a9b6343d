"""CPU rates (the CRI's usage_nano_cores) from successive cumulative CPU times."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MIN_RATE_WINDOW_NS = 1_000_000_000
"""Samples closer than this to the previous one keep the previous CPU rate."""


@dataclass
class _CpuPoint:
    timestamp: int
    usage: int
    rate: int | None = None


class CpuRates:
    """usage_nano_cores: the CPU time used since the previous sample, per second."""

    def __init__(self, min_window_ns: int = MIN_RATE_WINDOW_NS) -> None:
        self.min_window_ns = min_window_ns
        self._points: dict[str, _CpuPoint] = {}

    def rate(self, key: str, timestamp: int, usage: int) -> int | None:
        point = self._points.get(key)
        if point is None or usage < point.usage or timestamp <= point.timestamp:
            # First sample, or the figures started over (a container left the sum).
            self._points[key] = _CpuPoint(timestamp, usage)
            return None
        window = timestamp - point.timestamp
        if window < self.min_window_ns:
            return point.rate
        rate = (usage - point.usage) * 1_000_000_000 // window
        self._points[key] = _CpuPoint(timestamp, usage, rate)
        return rate

    def keep_only(self, keys: Iterable[str]) -> None:
        keys = set(keys)
        for key in [k for k in self._points if k not in keys]:
            del self._points[key]
