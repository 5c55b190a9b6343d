"""Killing a process and everything it started, without letting any escape."""

from __future__ import annotations

import contextlib
import os
import signal


def gone(pid: int, zombie_too: bool) -> bool:
    """True once ``pid`` has been reaped (or, with ``zombie_too``, has exited)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return True
    return zombie_too and stat[stat.rfind(b")") + 2 :].startswith((b"Z", b"X"))


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (any of its threads may have forked them)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    children: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            return _children_by_scan(pid)  # kernel without CONFIG_PROC_CHILDREN
    return children


def _children_by_scan(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            children.append(int(entry))
    return children


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def kill_process_tree(pid: int, same_namespace_as: int = 0) -> list[int]:
    """SIGKILL ``pid`` and all its descendants; returns the PIDs signalled.

    Each process is stopped before its children are listed, so none can fork
    a new one that escapes. With ``same_namespace_as``, ``pid`` is left alone
    unless it is in that process's PID namespace (it may have exited, and its
    number been reused, since it was looked up).
    """
    if same_namespace_as:
        expected = _pid_namespace(same_namespace_as)
        if expected is None or _pid_namespace(pid) != expected:
            return []
    stopped: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in stopped:
            continue
        try:
            os.kill(current, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        stopped.append(current)
        todo += _children(current)
    for current in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(current, signal.SIGKILL)
    return stopped
