"""One check's outcome, as ``pycrid doctor`` prints it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """``ok`` False with ``required`` False is a warning: printed, not a failure."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def label(self) -> str:
        if self.ok:
            return "pass"
        return "FAIL" if self.required else "warn"


def passed(name: str, detail: str) -> Result:
    return Result(name, True, detail)


def failed(name: str, detail: str, fix: str, required: bool = True) -> Result:
    return Result(name, False, detail, fix, required)
