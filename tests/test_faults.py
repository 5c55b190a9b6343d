"""Fault points: a no-op unless armed, then a SIGKILL exactly there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pycrid.adapters import faults

SCRIPT = (
    "from pycrid.adapters import faults\n"
    "faults.reach('a.first')\n"
    "print('passed first', flush=True)\n"
    "faults.reach('a.second')\n"
    "print('passed second', flush=True)\n"
)


def run(armed: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    if armed is not None:
        env[faults.ENV] = armed
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )


def test_unarmed_points_do_nothing() -> None:
    done = run(None)
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["passed first", "passed second"]


def test_an_armed_point_kills_the_process_there() -> None:
    done = run("a.second")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.splitlines() == ["passed first"]


def test_several_points_may_be_armed() -> None:
    done = run(" other , a.first")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout == ""


def test_this_process_has_none_armed() -> None:
    assert faults.armed() == frozenset()
