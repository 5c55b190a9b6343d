"""Asking the node and the backends who they are, without starting an adapter.

``pycrid version`` and ``pycrid doctor`` use these probes; each call is bounded
by a short timeout so that a hung backend makes them slow by seconds, not forever.
"""

from __future__ import annotations

import shutil
import subprocess

PROBE_TIMEOUT = 3.0


class ProbeError(Exception):
    """The backend could not be asked; the message says why."""


def program_version(name: str, timeout: float = PROBE_TIMEOUT) -> str:
    """The first line of ``name --version``."""
    path = shutil.which(name)
    if path is None:
        raise ProbeError(f"{name} is not on PATH")
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ProbeError(f"{path} --version: {e}") from None
    lines = (done.stdout or done.stderr).strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ProbeError(f"{path} --version exited {done.returncode}")
    return lines[0].strip()


def short(error: BaseException) -> str:
    """An error's first line, bounded: what a probe's answer quotes."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]
