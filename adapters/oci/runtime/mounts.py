"""The ``mounts`` of a container's OCI spec: the runtime's defaults, the pod's files,
the image's volumes and the CRI's bind mounts, in the order runc must make them.

The defaults are the ones containerd and CRI-O generate (runc's own
``runc spec`` has the same) minus ``/run``; ``/sys`` and its cgroup mount are
read-only unless the container is privileged. The
pod's hostname, hosts and resolv.conf files and its ``/dev/shm`` are bound in
like CRI mounts, and a CRI mount at the same place wins over them, as over a
default (a CRI ``/dev`` replaces every default below ``/dev`` too). Bind
mounts are sorted by depth so that a mount never hides a deeper one.

CRI mounts: host paths must exist and have their symlinks resolved; the
propagation becomes ``rprivate``, ``rslave`` or ``rshared`` (the latter two
also set the rootfs propagation, as containerd does); recursive read-only
(``rro``, runc 1.1 on kernel 5.12+) needs a read-only mount with private
propagation.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from pycrid.adapters.errors import InvalidArgument, Unimplemented
from pycrid.api.cri import api_pb2 as cri

Mount = dict[str, Any]

PROPAGATION = {
    cri.PROPAGATION_PRIVATE: "rprivate",
    cri.PROPAGATION_HOST_TO_CONTAINER: "rslave",
    cri.PROPAGATION_BIDIRECTIONAL: "rshared",
}
ROOTFS_PROPAGATION_RANK = {"": 0, "rslave": 1, "rshared": 2}
NOSUID_NODEV_NOEXEC = ("nosuid", "nodev", "noexec")


def _mount(destination: str, kind: str, source: str, *options: str) -> Mount:
    return {"destination": destination, "type": kind, "source": source, "options": list(options)}


def default_mounts(privileged: bool = False, bind_sys: bool = False) -> list[Mount]:
    """The kernel filesystems every container gets.

    ``bind_sys``: bind the host's /sys read-only instead of mounting sysfs, which
    a user namespace without its own network namespace may not do.
    """
    sys_mode = "rw" if privileged else "ro"
    sysfs = (
        _mount("/sys", "bind", "/sys", "rbind", "rro", "nosuid", "nodev", "noexec")
        if bind_sys
        else _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", sys_mode)
    )
    return [
        _mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            *("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
        ),
        _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        sysfs,
        _mount(
            "/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", sys_mode
        ),
    ]


def bind(
    source: str,
    destination: str,
    readonly: bool = False,
    propagation: str = "rprivate",
    extra: Iterable[str] = (),
) -> Mount:
    """A recursive bind mount, options in containerd's order."""
    access = "ro" if readonly else "rw"
    return _mount(destination, "bind", source, "rbind", propagation, access, *extra)


def shm_mount(source: str, readonly: bool = False) -> Mount:
    """The pod's /dev/shm (a tmpfs the runtime mounted, or the host's with host IPC)."""
    return bind(source, "/dev/shm", readonly, extra=NOSUID_NODEV_NOEXEC)


def cri_mount(
    mount: cri.Mount, recursive_read_only: bool, idmapped_source: str = ""
) -> tuple[Mount, str]:
    """The spec mount for a CRI mount and the rootfs propagation it needs ("" for none).

    ``idmapped_source``: where pycrid mounted an ID-mapped copy of the host
    path (``userns.stage_cri_mounts``), bound instead of it; runc 1.1 cannot
    make one, so a mount with ID mappings needs it.
    """
    if mount.HasField("image") and mount.image.image:
        raise Unimplemented("image volume mounts are not supported by the oci adapter")
    if (mount.uidMappings or mount.gidMappings) and not idmapped_source:
        raise InvalidArgument(
            f"the mount at {mount.container_path[:64]} has ID mappings, which need a pod "
            "with a user namespace"
        )
    destination = mount.container_path
    if not posixpath.isabs(destination):
        raise InvalidArgument(f"mount destination {destination[:64]!r} is not absolute")
    if not mount.host_path:
        raise InvalidArgument(f"the mount at {destination[:64]} has no host_path")
    if not os.path.exists(mount.host_path):
        raise InvalidArgument(f"mount source {mount.host_path[:64]} does not exist")
    propagation = PROPAGATION.get(mount.propagation)
    if propagation is None:
        raise InvalidArgument(f"unknown mount propagation {mount.propagation}")
    options = ["rbind", propagation, _access(mount, recursive_read_only)]
    source = idmapped_source or os.path.realpath(mount.host_path)
    rootfs_propagation = "" if propagation == "rprivate" else propagation
    return _mount(destination, "bind", source, *options), rootfs_propagation


def _access(mount: cri.Mount, recursive_read_only: bool) -> str:
    if not mount.recursive_read_only:
        return "ro" if mount.readonly else "rw"
    where = mount.host_path[:64]
    if not mount.readonly:
        raise InvalidArgument(f"recursive read-only mount conflicts with a RW mount ({where})")
    if mount.propagation != cri.PROPAGATION_PRIVATE:
        name = cri.MountPropagation.Name(mount.propagation)
        raise InvalidArgument(f"recursive read-only mount needs private propagation, got {name}")
    if not recursive_read_only:
        raise InvalidArgument("recursive read-only mounts are not supported on this host")
    return "rro"


def image_volumes(volumes: Iterable[str], cri_mounts: Iterable[cri.Mount]) -> list[str]:
    """The image's VOLUMEs that no CRI mount covers: each needs an empty directory."""
    taken = {posixpath.normpath(m.container_path) for m in cri_mounts}
    return [v for v in volumes if posixpath.normpath(v) not in taken]


def volume_mounts(volumes: Mapping[str, str]) -> list[Mount]:
    """Writable binds of the directories made for image volumes (container path to host dir)."""
    return [bind(source, destination) for destination, source in sorted(volumes.items())]


def assemble(defaults: list[Mount], extras: list[Mount], cri_mounts: list[Mount]) -> list[Mount]:
    """All mounts in the order runc makes them; CRI mounts win over extras, both over defaults."""
    chosen = {_clean(m): m for m in cri_mounts}
    binds = list(cri_mounts) + [m for m in extras if _clean(m) not in chosen]
    binds.sort(key=lambda m: _clean(m).count("/"))  # stable: equal depths keep their order
    taken = {_clean(m) for m in binds}
    kept = [
        m
        for m in defaults
        if _clean(m) not in taken and not ("/dev" in taken and _clean(m).startswith("/dev/"))
    ]
    return kept + binds


def _clean(mount: Mount) -> str:
    return posixpath.normpath(mount["destination"])


def rootfs_propagation(propagations: Iterable[str]) -> str:
    """The strongest propagation the mounts need: rshared over rslave over none."""
    return max(propagations, key=ROOTFS_PROPAGATION_RANK.__getitem__, default="")
