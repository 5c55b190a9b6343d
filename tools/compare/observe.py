"""What a scenario sees on one side: each call's answer, status code and timings.

A scenario runs on each side with a ``Probe``. ``probe.call`` makes one CRI
call, records its answer (or its gRPC status) under a label that is the same
on both sides, and times it; calls that change nothing are repeated
``repeat`` times for the timings. A failed call that later steps need raises
``Abort``: the scenario stops on that side, and what it saw so far is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from pycrid.tools.compare.sides import Side

LABEL = "io.pycrid.compare"
CALL_TIMEOUT = 120.0


@dataclass
class Observation:
    """One call's outcome on one side."""

    label: str
    code: str = "OK"
    detail: str = ""
    answer: Message | dict[str, Any] | None = None
    seconds: list[float] = field(default_factory=list)


class Abort(Exception):
    """A call the rest of the scenario needs failed on this side."""


@dataclass
class Probe:
    """One scenario on one side: its calls, the names of what it created, its pods."""

    side: Side
    run_id: str
    images: dict[str, str]
    repeat: int = 1
    log_root: str = ""
    observations: list[Observation] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    pods: list[str] = field(default_factory=list)

    @property
    def rt(self) -> Any:
        return self.side.runtime

    @property
    def img(self) -> Any:
        return self.side.images

    def name(self, value: str, placeholder: str) -> str:
        """Remember that ``value`` (an ID, say) reads as ``<placeholder>`` when compared."""
        if value:
            self.names[value] = placeholder
        return value

    def call(
        self,
        label: str,
        method: Callable[..., Any],
        request: Message,
        *,
        repeat: bool = False,
        need: bool = False,
        timeout: float = CALL_TIMEOUT,
    ) -> Any:
        """Make the call, record it; returns the answer, or None when it failed."""
        seen = Observation(label)
        self.observations.append(seen)
        answer = None
        for _ in range(self.repeat if repeat else 1):
            began = time.perf_counter()
            try:
                answer = method(request, timeout=timeout)
            except grpc.RpcError as e:
                seen.seconds.append(time.perf_counter() - began)
                seen.code = e.code().name
                seen.detail = e.details() or ""
                if need:
                    raise Abort(f"{label}: {seen.code}: {seen.detail}") from e
                return None
            seen.seconds.append(time.perf_counter() - began)
        seen.answer = answer
        return answer

    def note(self, label: str, answer: dict[str, Any]) -> None:
        """Record something observed without a CRI call (a log file read back, say)."""
        self.observations.append(Observation(label, answer=answer))
