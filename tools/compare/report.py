"""The comparison as a terminal table, Markdown or JSON: differences first, then timings."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pycrid.tools.compare.diff import Difference
from pycrid.tools.compare.timings import Timing

WIDTH = 48


@dataclass
class Result:
    a: str
    b: str
    run_id: str
    scenarios: list[str]
    repeat: int
    differences: list[Difference] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)

    @property
    def unexpected(self) -> list[Difference]:
        return [d for d in self.differences if not d.expected]

    @property
    def exit_status(self) -> int:
        return 1 if self.unexpected else 0


def shown(value: Any, width: int = WIDTH) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= width else text[: width - 1] + "…"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _ordered(result: Result) -> list[Difference]:
    return sorted(result.differences, key=lambda d: d.expected)


def _difference_rows(result: Result) -> list[list[str]]:
    return [
        [
            "expected" if d.expected else "UNEXPECTED",
            d.scenario,
            d.call,
            d.field,
            shown(d.a),
            shown(d.b),
            d.reason or "",
        ]
        for d in _ordered(result)
    ]


def _timing_rows(result: Result) -> list[list[str]]:
    return [
        [
            t.scenario,
            t.call,
            str(t.count),
            ms(t.median_a),
            ms(t.p95_a),
            ms(t.median_b),
            ms(t.p95_b),
            f"{t.ratio:.2f}",
        ]
        for t in result.timings
    ]


DIFF_HEAD = ["", "scenario", "call", "field", "A", "B", "why expected"]
TIME_HEAD = ["scenario", "call", "n", "A median ms", "A p95 ms", "B median ms", "B p95 ms", "B/A"]


def _summary(result: Result) -> str:
    expected = len(result.differences) - len(result.unexpected)
    return (
        f"{len(result.unexpected)} unexpected and {expected} expected differences "
        f"in {len(result.scenarios)} scenarios ({', '.join(result.scenarios)})"
    )


def _grid(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def as_table(result: Result) -> str:
    parts = [f"A = {result.a}", f"B = {result.b}", _summary(result), ""]
    if result.differences:
        parts += ["Differences", _grid(DIFF_HEAD, _difference_rows(result)), ""]
    else:
        parts += ["No differences.", ""]
    parts += [f"Timings (each call {result.repeat} times when it changes nothing)"]
    parts += [_grid(TIME_HEAD, _timing_rows(result)) if result.timings else "(none)"]
    return "\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|") or " "


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |"]
    lines.append("|" + "|".join("---" for _ in head) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def as_markdown(result: Result) -> str:
    lines = [f"A = `{result.a}`, B = `{result.b}`. {_summary(result)}.", "", "### Differences", ""]
    if result.differences:
        rows = [
            [r[0], r[1], r[2], f"`{r[3]}`", f"`{r[4]}`", f"`{r[5]}`", r[6]]
            for r in _difference_rows(result)
        ]
        lines += _md_table(DIFF_HEAD, rows)
    else:
        lines.append("None.")
    lines += [
        "",
        f"### Timings (milliseconds; each call {result.repeat} times when it changes nothing)",
        "",
    ]
    lines += _md_table(TIME_HEAD, _timing_rows(result)) if result.timings else ["None."]
    return "\n".join(lines) + "\n"


def as_json(result: Result) -> str:
    document = {
        "a": result.a,
        "b": result.b,
        "run_id": result.run_id,
        "scenarios": result.scenarios,
        "repeat": result.repeat,
        "unexpected": len(result.unexpected),
        "differences": [{**asdict(d), "expected": d.expected} for d in _ordered(result)],
        "timings": [{**asdict(t), "ratio": t.ratio} for t in result.timings],
    }
    return json.dumps(document, indent=2, default=str) + "\n"


def render(result: Result, form: str) -> str:
    return {"table": as_table, "markdown": as_markdown, "json": as_json}[form](result)
