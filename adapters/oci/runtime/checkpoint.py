"""CheckpointContainer on the oci runtime: ``runc checkpoint`` with CRIU, into an archive.

The container keeps running (``--leave-running``, as kubelet's forensic
checkpoints want); CRIU's images and the bundle's config.json are packed
into a tar archive at the CRI's ``location``. Without CRIU on the node the
answer is UNIMPLEMENTED, with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from pycrid.adapters.errors import InvalidArgument, Unimplemented
from pycrid.adapters.oci.runtime.containers import OciContainers
from pycrid.api.cri import api_pb2 as cri


def checkpoint_args(container_id: str, image_dir: Path, work_dir: Path) -> list[str]:
    return [
        "checkpoint",
        "--image-path",
        str(image_dir),
        "--work-path",
        str(work_dir),
        "--leave-running",
        "--tcp-established",
        container_id,
    ]


def pack(archive: Path, image_dir: Path, spec: Path) -> None:
    """``checkpoint/`` (CRIU's images) and ``config.dump`` (the runtime spec), atomically."""
    partial = archive.with_name(f".{archive.name}.partial")
    # A new file: whatever was planted at the temporary name (a FIFO, a
    # symlink) is replaced, never opened or followed.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)
    fd = os.open(
        partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    with os.fdopen(fd, "wb") as file, tarfile.open(fileobj=file, mode="w") as tar:
        tar.add(image_dir, arcname="checkpoint")
        if spec.exists():
            tar.add(spec, arcname="config.dump")
    os.replace(partial, archive)


class OciCheckpoints:
    def __init__(self, containers: OciContainers) -> None:
        self.containers = containers

    async def checkpoint_container(
        self, request: cri.CheckpointContainerRequest
    ) -> cri.CheckpointContainerResponse:
        if shutil.which("criu") is None:
            raise Unimplemented("CheckpointContainer needs CRIU, and it is not installed here")
        if not request.location:
            raise InvalidArgument("location (the archive to write) is required")
        archive = Path(request.location)
        if not archive.is_absolute() or not archive.parent.is_dir():
            raise InvalidArgument("location must be an absolute path in an existing directory")
        record = await self.containers.running(request.container_id)
        ctx = self.containers.ctx
        with tempfile.TemporaryDirectory(prefix="checkpoint-", dir=ctx.run_dir) as scratch:
            image_dir, work_dir = Path(scratch, "images"), Path(scratch, "work")
            image_dir.mkdir()
            work_dir.mkdir()
            await ctx.runc.run(
                checkpoint_args(record.id, image_dir, work_dir),
                timeout=float(request.timeout) if request.timeout > 0 else None,
            )
            spec = ctx.bundle(record.id) / "config.json"
            await asyncio.to_thread(pack, archive, image_dir, spec)
        return cri.CheckpointContainerResponse()
