"""The ImageService of the oci adapter, over its own content store."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pycrid.adapters import errors
from pycrid.adapters.config import Config
from pycrid.adapters.deadline import seconds_left
from pycrid.adapters.node.chainid import chain_id
from pycrid.adapters.node.imageref import Reference, is_image_id, parse_image_user, parse_reference
from pycrid.adapters.oci.images import auth
from pycrid.adapters.oci.images.pull import Puller
from pycrid.adapters.oci.images.registry import RegistryClient
from pycrid.adapters.oci.images.store import ContentStore, ImageRecord
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.oci.images")

_HEX_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{1,64})$")
FS_USAGE_CACHE_SECONDS = 5.0


def find_image(records: list[ImageRecord], text: str) -> ImageRecord | None:
    """The image ``text`` names: an ID, a tag, a digest reference or a unique ID prefix.

    None when nothing matches; InvalidArgument when a prefix matches several.
    """
    if is_image_id(text):
        wanted = text if text.startswith("sha256:") else f"sha256:{text}"
        return next((r for r in records if r.id == wanted), None)
    try:
        ref: Reference | None = parse_reference(text)
    except errors.InvalidArgument:
        ref = None
    if ref is not None:
        if ref.digest:
            name = f"{ref.repository}@{ref.digest}"
            found = next((r for r in records if name in r.repo_digests), None)
        else:
            name = f"{ref.repository}:{ref.tag}"
            found = next((r for r in records if name in r.repo_tags), None)
        if found is not None:
            return found
    match = _HEX_PREFIX.match(text)
    if match is None:
        return None
    prefix = "sha256:" + match.group(1)
    candidates = [r for r in records if r.id.startswith(prefix)]
    if len(candidates) > 1:
        raise errors.InvalidArgument(f"image ID prefix {text!r} is ambiguous")
    return candidates[0] if candidates else None


def to_cri_image(record: ImageRecord, pinned_names: set[str]) -> cri.Image:
    uid, username = parse_image_user(record.user)
    image = cri.Image(
        id=record.id,
        repo_tags=record.repo_tags,
        repo_digests=record.repo_digests,
        size=record.size,
        username=username,
        spec=cri.ImageSpec(image=record.id),
        pinned=bool(pinned_names & set(record.repo_tags)),
    )
    if uid is not None:
        image.uid.value = uid
    return image


class OciImages:
    """PullImage, ListImages, ImageStatus, RemoveImage and ImageFsInfo."""

    def __init__(
        self,
        config: Config,
        root: Path,
        progress_timeout: float = 60.0,
        max_concurrent_downloads: int = 3,
        in_use: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.config = config
        self.in_use = in_use
        """The IDs of the images that live containers and pods run on."""
        self.store = ContentStore(root)
        self.client = RegistryClient(progress_timeout=progress_timeout)
        # Unpacking and fsync-heavy commits; two threads match the machines' two cores.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="oci-store"
        )
        self.puller = Puller(
            config, self.store, self.client, self.executor, max_concurrent_downloads
        )
        self._pulls: dict[tuple[str, auth.Credentials], asyncio.Task[ImageRecord]] = {}
        self._waiters: dict[tuple[str, auth.Credentials], int] = {}
        self._fs_usage: tuple[float, int, int] | None = None
        try:
            self._pinned = {str(parse_reference(config.pause_image))}
        except errors.InvalidArgument:
            self._pinned = set()

    async def start(self) -> None:
        await self._run(self.store.open)

    async def close(self) -> None:
        for task in self._pulls.values():
            task.cancel()
        await self.client.close()
        self.puller.unpackers.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    # Pull.

    @staticmethod
    def _credentials_for(request: cri.PullImageRequest) -> Any:
        """Credentials per registry host: the request's, else a Docker config.json's."""

        def credentials(host: str) -> auth.Credentials:
            from_request = auth.from_auth_config(request.auth, host)
            if from_request:
                return from_request
            return auth.from_docker_config(host)

        return credentials

    async def pull_image(self, request: cri.PullImageRequest) -> cri.PullImageResponse:
        ref = parse_reference(request.image.image)
        credentials_for = self._credentials_for(request)
        # Identical pulls with identical credentials share one download.
        key = (str(ref), auth.from_auth_config(request.auth, ref.domain))
        task = self._pulls.get(key)
        if task is None or task.cancelling():
            task = asyncio.create_task(self.puller.pull(ref, credentials_for))
            self._pulls[key] = task
            self._waiters[key] = 0
            task.add_done_callback(lambda _: self._forget(key, task))
        else:
            log.debug("pull of %s joins the one in progress", ref)
        self._waiters[key] += 1
        try:
            record = await asyncio.wait_for(asyncio.shield(task), self._time_left())
        except TimeoutError:
            raise errors.DeadlineExceeded(f"pulling {ref}: the call's deadline passed") from None
        finally:
            if key in self._waiters:
                self._waiters[key] -= 1
                if self._waiters[key] <= 0 and not task.done():
                    # Nobody waits for it any more (every caller gave up): stop downloading.
                    task.cancel()
        self._fs_usage = None
        return cri.PullImageResponse(image_ref=record.id)

    def _forget(self, key: tuple[str, auth.Credentials], task: asyncio.Task[ImageRecord]) -> None:
        if self._pulls.get(key) is task:
            del self._pulls[key]
            self._waiters.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.debug("pull %s failed: %s", key[0], task.exception())

    @staticmethod
    def _time_left() -> float | None:
        left = seconds_left()
        return None if left is None else max(left, 0.0)

    # Queries.

    async def list_images(self, request: cri.ListImagesRequest) -> cri.ListImagesResponse:
        records = self.store.records()
        wanted = request.filter.image.image if request.HasField("filter") else ""
        if wanted:
            found = find_image(records, wanted)
            records = [found] if found is not None else []
        records.sort(key=lambda r: r.pulled_at)
        return cri.ListImagesResponse(images=[to_cri_image(r, self._pinned) for r in records])

    async def image_status(self, request: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        record = find_image(self.store.records(), request.image.image)
        if record is None:
            # The CRI answers a missing image with an empty status, not an error.
            return cri.ImageStatusResponse()
        response = cri.ImageStatusResponse(image=to_cri_image(record, self._pinned))
        if request.verbose:
            response.info["info"] = json.dumps(await self._run(self._verbose_info, record))
        return response

    def _verbose_info(self, record: ImageRecord) -> dict[str, Any]:
        try:
            image_spec = json.loads(self.store.read_blob(record.id))
        except (OSError, ValueError):
            image_spec = {}
        return {
            "imageSpec": image_spec,
            "chainID": chain_id(record.diff_ids),
            "manifests": record.manifests,
            "platform": record.platform,
            "pulledAt": record.pulled_at,
            "layers": [
                {
                    "digest": layer.digest,
                    "mediaType": layer.media_type,
                    "size": layer.size,
                    "diffID": layer.diff_id,
                    "unpackedSize": layer.unpacked_size,
                    "snapshot": str(self.store.snapshot_fs(layer.diff_id)),
                }
                for layer in record.layers
            ],
        }

    # Removal.

    async def remove_image(self, request: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        record = find_image(self.store.records(), request.image.image)
        if record is not None and record.id in set(self.in_use()):
            # As Docker refuses it: a pod or container that still runs on it would
            # have to pull it again to restart.
            raise errors.FailedPrecondition(
                f"image {record.id} is in use by a container or pod that is not stopped"
            )
        # Removing an image that is not there succeeds: the CRI makes RemoveImage idempotent.
        if record is not None and self.store.remove(record.id):
            freed = await self._run(self.store.collect_garbage)
            log.info("removed image %s (%s), freed %d bytes", record.id, record.repo_tags, freed)
            self._fs_usage = None
        return cri.RemoveImageResponse()

    # Usage.

    async def image_fs_info(self, request: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        now = time.monotonic()
        if self._fs_usage is None or now - self._fs_usage[0] > FS_USAGE_CACHE_SECONDS:
            used, inodes = await self._run(self.store.usage)
            self._fs_usage = (now, used, inodes)
        _, used, inodes = self._fs_usage
        usage = cri.FilesystemUsage(
            timestamp=time.time_ns(),
            fs_id=cri.FilesystemIdentifier(mountpoint=str(self.store.root)),
        )
        usage.used_bytes.value = used
        usage.inodes_used.value = inodes
        return cri.ImageFsInfoResponse(image_filesystems=[usage])
