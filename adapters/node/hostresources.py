"""What the node can give a container: its CPUs, memory nodes, huge page sizes, sysctls.

runc writes resource limits straight into cgroup and ``/proc/sys`` files, and
the kernel refuses what the node cannot honour (a CPU it does not have, a
huge page size it does not know, a quota past its limit) with a bare
"write ...: invalid argument". These readers let requests be checked first,
with an answer that names the field. Each reads a few small sysfs files when
asked, so a CPU brought online later counts.
"""

from __future__ import annotations

import re
from pathlib import Path

SYS = Path("/sys")
PROC_SYS = Path("/proc/sys")

MIN_MEMORY = 6 * 1024 * 1024
"""The smallest memory limit accepted (Docker's minimum): below it, runc's own
process cannot even start in the cgroup."""
MAX_CPU_QUOTA = 2**44 - 1
"""The kernel's largest CFS quota, in microseconds (``max_cfs_runtime``, about 203 days)."""

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_PAGE_SIZE = re.compile(r"^(\d+)([KMGTP])B$")
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
MAX_LIST = 1 << 16
"""More CPUs or nodes than any list a kernel accepts: stops "0-999999999" early."""


class ListError(ValueError):
    """A CPU or node list that is not one."""


def parse_list(text: str) -> set[int]:
    """The numbers of a kernel list such as ``0-3,7``; "" is the empty set."""
    numbers: set[int] = set()
    if not text.strip():
        return numbers
    for part in text.strip().split(","):
        match = _RANGE.match(part)
        if match is None:
            raise ListError(f"{part!r} is not a number or a range")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ListError(f"range {part!r} goes backwards")
        if high >= MAX_LIST:
            raise ListError(f"{high} is beyond any machine")
        numbers.update(range(low, high + 1))
    return numbers


def _read_list(path: Path, default: set[int]) -> set[int]:
    try:
        return parse_list(path.read_text())
    except (OSError, ListError):
        return default


def online_cpus() -> set[int]:
    return _read_list(SYS / "devices/system/cpu/online", set())


def online_memory_nodes() -> set[int]:
    """The memory nodes; a kernel without NUMA has node 0 alone."""
    return _read_list(SYS / "devices/system/node/online", {0})


def page_size_bytes(size: str) -> int | None:
    """``2MB`` -> 2097152, as kubelet writes huge page sizes; None when malformed."""
    match = _PAGE_SIZE.match(size)
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def huge_page_sizes() -> dict[int, str]:
    """The node's huge page sizes, in bytes, each with its kubelet name (``2MB``)."""
    sizes: dict[int, str] = {}
    try:
        entries = list((SYS / "kernel/mm/hugepages").iterdir())
    except OSError:
        return sizes
    for entry in entries:
        match = re.fullmatch(r"hugepages-(\d+)kB", entry.name)
        if match is None:
            continue
        kib = int(match.group(1))
        size = kib * 1024
        for unit in "PTGMK":
            if size % _UNITS[unit] == 0:
                sizes[size] = f"{size // _UNITS[unit]}{unit}B"
                break
    return sizes


# Sysctls named per interface or per neighbour table: a pod's namespace has
# its own interfaces, so the host's set says nothing about them.
PER_INTERFACE = re.compile(r"^net\.ipv[46]\.(conf|neigh)\.")


def sysctl_exists(name: str) -> bool:
    """Whether the node knows the sysctl (dotted name); per-interface ones count as known."""
    if PER_INTERFACE.match(name):
        return True
    return (PROC_SYS / name.replace(".", "/")).is_file()
