"""Latency per call and side: median, 95th percentile, and the ratio B/A of the medians."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from pycrid.tools.compare.observe import Observation


@dataclass(frozen=True)
class Timing:
    scenario: str
    call: str
    count: int
    median_a: float
    p95_a: float
    median_b: float
    p95_b: float

    @property
    def ratio(self) -> float:
        return self.median_b / self.median_a if self.median_a else math.inf


def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def timings(scenario: str, a: list[Observation], b: list[Observation]) -> list[Timing]:
    """One row per call that succeeded on both sides."""
    rows = []
    by_label = {o.label: o for o in b}
    for oa in a:
        ob = by_label.get(oa.label)
        if ob is None or oa.code != "OK" or ob.code != "OK" or not oa.seconds or not ob.seconds:
            continue
        rows.append(
            Timing(
                scenario,
                oa.label,
                min(len(oa.seconds), len(ob.seconds)),
                statistics.median(oa.seconds),
                p95(oa.seconds),
                statistics.median(ob.seconds),
                p95(ob.seconds),
            )
        )
    return rows
