"""A container's root filesystem: an overlayfs mount over an image's snapshots.

Each container gets its own directory with ``upper`` (its writes), ``work``
(overlayfs' scratch space) and ``rootfs`` (the mount point). The image's
snapshots are the read-only lower layers, topmost first. While the rootfs
exists, a lease in the store keeps those snapshots from being collected even
if the image is removed.

The lower directories are passed as absolute paths to mount(2) directly
(mounts.py). When those do not fit in the one page the kernel accepts for
mount options, the mount program runs in the snapshots directory with the
paths relative to it, as containerd does for images with many layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

from pycrid.adapters.errors import Internal
from pycrid.adapters.node import mounts
from pycrid.adapters.oci.images.store import ContentStore, ImageRecord

MAX_MOUNT_OPTIONS = 4000


async def _run(*argv: str, cwd: Path | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace").strip()


MOUNTINFO_ESCAPES = str.maketrans({"\\": "\\134", " ": "\\040", "\t": "\\011", "\n": "\\012"})
"""How /proc/self/mountinfo writes the characters that would break its fields."""


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point of this mount namespace.

    With a hundred pods mountinfo has hundreds of lines; a substring search
    first keeps this from parsing them all on every pod start and removal.
    """
    target = os.path.realpath(path).translate(MOUNTINFO_ESCAPES)
    with open("/proc/self/mountinfo") as mountinfo:
        text = mountinfo.read()
    if f" {target} " not in text:
        return False
    return any(
        len(fields) > 4 and fields[4] == target
        for fields in (line.split(" ") for line in text.splitlines())
    )


def lease_name(container_id: str) -> str:
    return f"rootfs-{container_id}"


async def prepare_rootfs(
    store: ContentStore, image: ImageRecord, container_dir: Path, container_id: str
) -> Path:
    """Mount a fresh writable root filesystem of ``image``; returns the mount point."""
    await asyncio.to_thread(store.add_lease, lease_name(container_id), image.diff_ids)
    try:
        upper, work, rootfs = (
            container_dir / "upper",
            container_dir / "work",
            container_dir / "rootfs",
        )
        for directory in (upper, work, rootfs):
            directory.mkdir(parents=True, exist_ok=True)
        missing = [d for d in image.diff_ids if not store.has_snapshot(d)]
        if missing:
            raise Internal(f"image {image.id} lacks the snapshots of {', '.join(missing)}")
        layers = [store.snapshot_fs(diff_id) for diff_id in reversed(image.diff_ids)]
        if not layers:
            empty = container_dir / "empty"
            empty.mkdir(exist_ok=True)
            layers = [empty]
        written = f"upperdir={upper},workdir={work}"
        options = f"lowerdir={':'.join(map(str, layers))},{written}"
        if len(options) <= MAX_MOUNT_OPTIONS:
            try:
                await asyncio.to_thread(mounts.mount, "overlay", rootfs, "overlay", options)
            except OSError as e:
                raise Internal(f"cannot mount the rootfs of {container_id}: {e}") from None
        else:
            relative = [str(layer.relative_to(store.snapshots_dir)) for layer in layers]
            options = f"lowerdir={':'.join(relative)},{written}"
            if len(options) > MAX_MOUNT_OPTIONS:
                raise Internal(f"image {image.id} has too many layers for one overlay mount")
            code, output = await _run(
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                options,
                str(rootfs),
                cwd=store.snapshots_dir,
            )
            if code != 0:
                raise Internal(f"cannot mount the rootfs of {container_id}: {output}")
    except BaseException:
        store.remove_lease(lease_name(container_id))
        raise
    return rootfs


async def remove_rootfs(store: ContentStore, container_dir: Path, container_id: str) -> None:
    """Unmount and delete a container's rootfs and its writes; done if already gone."""
    rootfs = container_dir / "rootfs"
    if rootfs.exists() and is_mounted(rootfs):
        try:
            await asyncio.to_thread(mounts.unmount, rootfs)
        except OSError:
            # Busy (a process still holds it): detach now, the kernel frees it later.
            try:
                await asyncio.to_thread(mounts.unmount, rootfs, lazy=True)
            except OSError as e:
                raise Internal(f"cannot unmount the rootfs of {container_id}: {e}") from None
    with contextlib.suppress(FileNotFoundError):
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, container_dir)
    store.remove_lease(lease_name(container_id))
