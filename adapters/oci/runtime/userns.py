"""What a pod with its own user namespace needs besides its spec, on runc 1.1.

The pod's root is a host UID and GID (what container ID 0 maps to), with no
rights over files that host root owns. containerd and CRI-O hand such pods
ID-mapped mounts made by runc 1.2; with runc 1.1, pycrid makes them itself
(``idmap.py``) and gives runc plain binds:

- Root filesystems: an overlay whose lower layers (the image's snapshots,
  owned by host root) are ID-mapped through the pod's mapping and whose
  upper directory belongs to the pod's root. The image's files appear with
  their owners inside the container (root's as root's) and what the
  container writes is stored under its host IDs.
- CRI mounts: ID-mapped with the mappings the CRI gives them, else with the
  pod's (as containerd 2 does for a pod's volumes); without mappings from the
  CRI, a filesystem that cannot be ID-mapped is bound as it is.
- What pycrid creates for the pod (hostname, hosts, resolv.conf, the
  directories of image volumes) belongs to the pod's root.
- ``runc create`` runs through the ``reach`` wrapper when a directory above
  the rootfs is not searchable for the pod's root.

ID-mapped mounts are staged in ``<run_dir>/oci/idmap/<id>/`` only while
they are needed: until overlayfs has the lower layers, until ``runc create``
has bound the CRI mounts into the container.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from pycrid.adapters.errors import Internal, InvalidArgument
from pycrid.adapters.oci.images.rootfs import MAX_MOUNT_OPTIONS, lease_name
from pycrid.adapters.oci.images.store import ContentStore, ImageRecord
from pycrid.adapters.oci.runtime import idmap, reach
from pycrid.adapters.oci.runtime.idmap import IdMappings
from pycrid.adapters.oci.runtime.namespaces import user_namespace
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.oci")


@dataclass(frozen=True)
class PodIds:
    """The ID mappings of a pod's user namespace (OCI form)."""

    uid_mappings: tuple[dict[str, int], ...]
    gid_mappings: tuple[dict[str, int], ...]

    @classmethod
    def of(cls, options: cri.NamespaceOption) -> PodIds | None:
        """The pod's mappings; None when it uses the node's user namespace."""
        userns = user_namespace(options)
        if userns is None:
            return None
        return cls(tuple(userns["uidMappings"]), tuple(userns["gidMappings"]))

    @property
    def root_uid(self) -> int:
        return _host_id(self.uid_mappings, 0)

    @property
    def root_gid(self) -> int:
        return _host_id(self.gid_mappings, 0)


def _host_id(mappings: IdMappings, container_id: int) -> int:
    for m in mappings:
        if m["containerID"] <= container_id < m["containerID"] + m["size"]:
            return m["hostID"] + container_id - m["containerID"]
    raise InvalidArgument(f"container ID {container_id} is not mapped")


def staging_dir(run_dir: Path, object_id: str) -> Path:
    """Where the ID-mapped mounts of a pod or container are staged."""
    return run_dir / "idmap" / object_id


def clear_staging(staging: Path) -> None:
    """Detach and remove what is staged; a problem is logged, never raised."""
    for problem in idmap.clear_staging(staging):
        log.warning("cannot remove the staged ID-mapped mount %s", problem)


def clear_staging_entry(entry: Path) -> None:
    """Detach and remove one staged mount point; a problem is logged, never raised."""
    problem = idmap.clear_entry(entry)
    if problem:
        log.warning("cannot remove the staged ID-mapped mount %s", problem)


def give_to_root(paths: Iterable[str | Path], ids: PodIds) -> None:
    """Make the pod's root the owner of files pycrid made for the pod."""
    for path in paths:
        os.chown(path, ids.root_uid, ids.root_gid, follow_symlinks=False)


async def mount_rootfs(
    store: ContentStore,
    image: ImageRecord,
    container_dir: Path,
    object_id: str,
    staging: Path,
    ids: PodIds,
) -> Path:
    """Like ``rootfs.prepare_rootfs``, for a pod with a user namespace: the image's
    layers ID-mapped, the upper directory the pod root's. Returns the mount point;
    ``rootfs.remove_rootfs`` undoes it."""
    store.add_lease(lease_name(object_id), image.diff_ids)
    try:
        missing = [d for d in image.diff_ids if not store.has_snapshot(d)]
        if missing:
            raise Internal(f"image {image.id} lacks the snapshots of {', '.join(missing)}")
        upper, work, rootfs = (container_dir / n for n in ("upper", "work", "rootfs"))
        for directory in (upper, work, rootfs):
            directory.mkdir(parents=True, exist_ok=True)
        give_to_root([upper], ids)
        layers = [store.snapshot_fs(d) for d in reversed(image.diff_ids)]
        if not layers:
            empty = container_dir / "empty"
            empty.mkdir(exist_ok=True)
            layers = [empty]
        staging.mkdir(parents=True, exist_ok=True)
        try:
            async with idmap.user_namespace(ids.uid_mappings, ids.gid_mappings) as userns_fd:
                lowers = []
                for number, layer in enumerate(layers):
                    target = staging / f"l{number}"
                    target.mkdir()
                    try:
                        idmap.mount_idmapped(layer, target, userns_fd, recursive=False)
                    except OSError as e:
                        raise Internal(f"cannot ID-map the layer {layer}: {e}") from None
                    lowers.append(target.name)
            # Relative lower directories (mount runs in the staging directory) keep
            # the options short, as rootfs.prepare_rootfs does.
            options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
            if len(options) > MAX_MOUNT_OPTIONS:
                raise Internal(f"image {image.id} has too many layers for one overlay mount")
            code, output = await _run(
                "mount", "-t", "overlay", "overlay", "-o", options, str(rootfs), cwd=staging
            )
            if code != 0:
                raise Internal(f"cannot mount the rootfs of {object_id}: {output}")
        finally:
            # overlayfs holds private copies of its layers: the staged ones can go.
            clear_staging(staging)
    except BaseException:
        store.remove_lease(lease_name(object_id))
        raise
    return rootfs


async def _run(*argv: str, cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace").strip()


def _oci_mappings(mappings: Sequence[cri.IDMapping]) -> tuple[dict[str, int], ...]:
    return tuple(
        {"containerID": m.container_id, "hostID": m.host_id, "size": m.length} for m in mappings
    )


async def stage_cri_mounts(
    mounts: Sequence[cri.Mount], ids: PodIds | None, staging: Path, notes: list[str]
) -> dict[int, str]:
    """ID-mapped copies of the CRI mounts that need one: index in ``mounts`` -> staged path.

    Mounts with mappings need a pod with a user namespace (InvalidArgument
    otherwise, as with runc 1.2); in such a pod, every host-path mount is
    ID-mapped. Mounts whose host path is missing are left to the spec's
    checks. On failure nothing stays staged.
    """
    staged: dict[int, str] = {}
    opened: dict[tuple[str, str], int] = {}
    try:
        async with AsyncExitStack() as namespaces:
            for number, mount in enumerate(mounts):
                mappings = _mappings_of(mount, ids)
                if mappings is None:
                    continue
                key = (idmap.map_text(mappings[0]), idmap.map_text(mappings[1]))
                if key not in opened:
                    opened[key] = await namespaces.enter_async_context(
                        idmap.user_namespace(*mappings)
                    )
                target = staging / f"m{number}"
                if _stage_one(mount, target, opened[key], notes):
                    staged[number] = str(target)
    except BaseException:
        clear_staging(staging)
        raise
    return staged


def _mappings_of(mount: cri.Mount, ids: PodIds | None) -> tuple[IdMappings, IdMappings] | None:
    """The (UID, GID) mappings of a CRI mount's ID-mapped copy; None for none."""
    explicit = bool(mount.uidMappings or mount.gidMappings)
    where = mount.container_path[:64]
    if ids is None:
        if explicit:
            raise InvalidArgument(
                f"the mount at {where} has ID mappings, which need a pod with a user namespace"
            )
        return None
    if not mount.host_path or not os.path.exists(mount.host_path):
        return None
    if not explicit:
        return ids.uid_mappings, ids.gid_mappings
    if not (mount.uidMappings and mount.gidMappings):
        raise InvalidArgument(f"the mount at {where} needs both UID and GID mappings")
    return _oci_mappings(mount.uidMappings), _oci_mappings(mount.gidMappings)


def _stage_one(mount: cri.Mount, target: Path, userns_fd: int, notes: list[str]) -> bool:
    """Mount the ID-mapped copy on ``target``; False when it was left unmapped."""
    source = os.path.realpath(mount.host_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    idmap.make_mount_point(target, source)
    try:
        idmap.mount_idmapped(source, target, userns_fd, recursive=True)
    except OSError as e:
        clear_staging_entry(target)
        if mount.uidMappings or mount.gidMappings or e.errno != errno.EINVAL:
            raise InvalidArgument(
                f"cannot make an ID-mapped mount of {mount.host_path[:64]}: {e.strerror}"
            ) from None
        notes.append(
            f"{mount.host_path[:64]} is on a filesystem that cannot be ID-mapped: "
            "bound without a mapping"
        )
        return False
    return True


def runtime_for(
    rootfs: str | Path, ids: PodIds, bundle: Path, runtime: str, notes: list[str]
) -> str | None:
    """The runtime conmon must run for an object of the pod: the ``reach`` wrapper
    when runc's init could not reach ``rootfs``, else None (runc itself)."""
    cover = reach.unsearchable_parents(rootfs, ids.root_uid, ids.root_gid)
    if not cover:
        return None
    notes.append(
        f"{', '.join(cover)} not searchable for the pod's root (host UID {ids.root_uid}): "
        "runc create runs in a mount namespace where they are"
    )
    return str(reach.write_wrapper(bundle, runtime, cover))
