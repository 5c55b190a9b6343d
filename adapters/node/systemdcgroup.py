"""Cgroup parents under systemd's cgroup driver: slice names and the paths they stand for.

With the systemd driver, kubelet gives a pod's ``cgroup_parent`` as the full
path of its slice (``/kubepods.slice/kubepods-burstable.slice/
kubepods-burstable-pod<uid>.slice``). systemd and runc name a slice by its
unit name only (``kubepods-burstable-pod<uid>.slice``): each ``-`` in the
name is a level of the tree, so the name alone says where the slice lies.
A container then lives in a transient scope, ``<prefix>-<id>.scope``, in
that slice.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from pycrid.adapters.errors import InvalidArgument

SYSTEMD_RUN_DIR = Path("/run/systemd/system")
"""Exists when the host booted with systemd (sd_booted(3))."""
ROOT_SLICE = "-.slice"


def booted_with_systemd(run_dir: Path = SYSTEMD_RUN_DIR) -> bool:
    return run_dir.is_dir()


def cgroup_manager(configured: str) -> str:
    """The oci adapter's cgroup manager: the configured one, else systemd on a systemd host."""
    return configured or ("systemd" if booted_with_systemd() else "cgroupfs")


def slice_name(cgroup_parent: str, default: str) -> str:
    """The slice a CRI ``cgroup_parent`` names: its last component, a ``.slice`` unit.

    ``default`` is taken when the parent is empty. A parent whose last
    component is not a slice cannot be given to systemd.
    """
    parent = cgroup_parent.strip() or default
    name = posixpath.basename(parent.rstrip("/"))
    if not name.endswith(".slice") or name == ".slice":
        raise InvalidArgument(
            f"cgroup_parent {cgroup_parent[:96]!r} is not a systemd slice "
            "(the systemd cgroup driver needs a parent ending in .slice)"
        )
    if "/" in name or (name.startswith("-") and name != ROOT_SLICE) or "--" in name:
        raise InvalidArgument(f"cgroup_parent {cgroup_parent[:96]!r} is not a valid slice name")
    return name


def slice_path(name: str) -> str:
    """The cgroup path of a slice: ``a-b-c.slice`` is ``/a.slice/a-b.slice/a-b-c.slice``.

    This is systemd's (and runc's ``ExpandSlice``) reading of the name.
    """
    if name == ROOT_SLICE:
        return "/"
    stem = name.removesuffix(".slice")
    parts = stem.split("-")
    levels = ["-".join(parts[: i + 1]) + ".slice" for i in range(len(parts))]
    return "/" + "/".join(levels)


def scope_name(prefix: str, container_id: str) -> str:
    """The transient scope runc makes for a container: ``<prefix>-<id>.scope``."""
    return f"{prefix}-{container_id}.scope"


def runc_cgroups_path(cgroup_parent: str, default: str, prefix: str, container_id: str) -> str:
    """``cgroupsPath`` for runc's systemd driver: ``<slice>:<prefix>:<id>``."""
    return f"{slice_name(cgroup_parent, default)}:{prefix}:{container_id}"


def scope_path(cgroup_parent: str, default: str, prefix: str, container_id: str) -> str:
    """Where that scope lies in the cgroup tree."""
    return posixpath.join(
        slice_path(slice_name(cgroup_parent, default)), scope_name(prefix, container_id)
    )
