"""Field-by-field differences between the two sides' observations of one scenario.

Calls are paired by label. When the status codes differ only the code is
reported (the answers' fields would all differ, and say nothing more); when
both succeeded, every field path present on either side is compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pycrid.tools.compare.normalise import Normaliser
from pycrid.tools.compare.observe import Observation
from pycrid.tools.compare.rules import Rule, reason_for

ABSENT = "<absent>"


@dataclass(frozen=True)
class Difference:
    scenario: str
    call: str
    field: str
    a: Any
    b: Any
    reason: str | None = None
    """Why the difference is expected; None when it is not."""

    @property
    def expected(self) -> bool:
        return self.reason is not None


@dataclass
class SideRun:
    """One scenario's outcome on one side."""

    observations: list[Observation]
    normaliser: Normaliser
    stopped: str = ""
    """Why the scenario stopped early on this side ("" when it ran to its end)."""


def _by_label(observations: list[Observation]) -> dict[str, Observation]:
    out: dict[str, Observation] = {}
    for seen in observations:
        label, n = seen.label, 2
        while label in out:
            label, n = f"{seen.label} #{n}", n + 1
        out[label] = seen
    return out


def compare_scenario(scenario: str, a: SideRun, b: SideRun, rules: list[Rule]) -> list[Difference]:
    found: list[Difference] = []

    def add(call: str, field: str, va: Any, vb: Any) -> None:
        found.append(
            Difference(scenario, call, field, va, vb, reason_for(rules, scenario, call, field))
        )

    seen_a, seen_b = _by_label(a.observations), _by_label(b.observations)
    if bool(a.stopped) != bool(b.stopped):
        # The calls the stopped side never made are counted here, not listed one by one.
        add("(scenario)", "outcome", _outcome(a, seen_b, seen_a), _outcome(b, seen_a, seen_b))
    for label in [*seen_a, *(k for k in seen_b if k not in seen_a)]:
        oa, ob = seen_a.get(label), seen_b.get(label)
        if oa is None or ob is None:
            stopped = a.stopped if oa is None else b.stopped
            if not stopped:
                add(label, "(call)", "made" if oa else "not made", "made" if ob else "not made")
            continue
        if oa.code != ob.code:
            add(label, "code", oa.code, ob.code)
            continue
        fa, fb = a.normaliser.flat(oa.answer), b.normaliser.flat(ob.answer)
        for field in [*fa, *(k for k in fb if k not in fa)]:
            va, vb = fa.get(field, ABSENT), fb.get(field, ABSENT)
            if va != vb:
                add(label, field, va, vb)
    return found


def _outcome(run: SideRun, other: dict[str, Observation], own: dict[str, Observation]) -> str:
    if not run.stopped:
        return "ran to its end"
    missing = sum(1 for label in other if label not in own)
    return f"stopped ({missing} calls not made): {run.stopped}"
