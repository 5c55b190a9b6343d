"""A cgroup of its own for each conmon, with the cgroupfs driver.

conmon is started by pycrid and so first lives in pycrid's cgroup. When pycrid
runs as a systemd service, stopping the service kills every process in that
cgroup, conmons and (through their PDEATHSIG) nothing else: the containers
would lose their monitors. So, like CRI-O (``<parent>/crio-conmon-<id>``),
pycrid moves each conmon into a cgroup of its own before letting it fork
(the start pipe holds it until then), in every hierarchy mounted: each v1
controller, ``name=systemd`` included, and the unified one.

A new v1 cpuset cgroup has empty ``cpuset.cpus``/``cpuset.mems`` and refuses
tasks until they are filled, so they are copied from the parent, level by
level, as runc does.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from pycrid.adapters.node.cgroups import Hierarchy, host_hierarchy

log = logging.getLogger("pycrid.oci.conmon")


def hierarchy_dirs(cgroup: str, hierarchy: Hierarchy | None = None) -> list[Path]:
    """The directory of ``cgroup`` (an absolute cgroup path) in each mounted hierarchy."""
    hierarchy = hierarchy or host_hierarchy()
    points = {m.point for m in hierarchy.v1.values()}
    if hierarchy.v2 is not None:
        points.add(hierarchy.v2.point)
    return [Path(point, cgroup.strip("/")) for point in sorted(points)]


def _make(directory: Path) -> None:
    """Create ``directory`` and missing parents; fill cpuset's files in each new level."""
    if directory.is_dir():
        return
    _make(directory.parent)
    with contextlib.suppress(FileExistsError):
        directory.mkdir()
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = directory / name
        if own.exists() and not own.read_text().strip():
            own.write_text((directory.parent / name).read_text())


def move_to_cgroup(pid: int, cgroup: str) -> list[Path]:
    """Move ``pid`` into ``cgroup`` wherever possible; the directories it is now in.

    A hierarchy where this fails is logged and skipped: conmon then stays in
    pycrid's cgroup there, which is no reason to fail the container.
    """
    moved = []
    for directory in hierarchy_dirs(cgroup):
        try:
            _make(directory)
            (directory / "cgroup.procs").write_text(str(pid))
        except OSError as e:
            log.warning("cannot move conmon %d into %s: %s", pid, directory, e)
            continue
        moved.append(directory)
    return moved


def populated(cgroup: str) -> bool:
    """True while some process is in ``cgroup`` in any hierarchy."""
    for directory in hierarchy_dirs(cgroup):
        try:
            if (directory / "cgroup.procs").read_text().strip():
                return True
        except OSError:
            continue
    return False


def remove_cgroup(cgroup: str) -> None:
    """Remove ``cgroup`` (once its conmon has exited) from every hierarchy."""
    for directory in hierarchy_dirs(cgroup):
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot remove cgroup %s: %s", directory, e)
