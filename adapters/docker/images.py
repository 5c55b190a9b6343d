"""The ImageService over Docker: images as dockerd stores them."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pycrid.adapters.docker.client import DockerClient
from pycrid.api.cri import api_pb2 as cri
from pycrid.server.errors import InvalidArgument, NotFound
from pycrid.server.imageref import parse_image_user, parse_reference

NO_TAG = "<none>:<none>"
NO_DIGEST = "<none>@<none>"


def normalized(name: str) -> str:
    """A tag or reference in full form, or the text itself when it does not parse."""
    try:
        return str(parse_reference(name))
    except InvalidArgument:
        return name


def to_cri_image(inspect: dict[str, Any], pause_image: str) -> cri.Image:
    """The CRI view of a ``docker image inspect`` result."""
    tags = [t for t in inspect.get("RepoTags") or [] if t != NO_TAG]
    digests = [d for d in inspect.get("RepoDigests") or [] if d != NO_DIGEST]
    uid, username = parse_image_user((inspect.get("Config") or {}).get("User") or "")
    image = cri.Image(
        id=inspect["Id"],
        repo_tags=tags,
        repo_digests=digests,
        size=inspect.get("Size") or 0,
        username=username,
        spec=cri.ImageSpec(image=inspect["Id"]),
        pinned=normalized(pause_image) in {normalized(t) for t in tags},
    )
    if uid is not None:
        image.uid.value = uid
    return image


class DockerImages:
    def __init__(self, client: DockerClient, pause_image: str) -> None:
        self.client = client
        self.pause_image = pause_image
        # Image IDs are content digests, so what inspect says of one never
        # changes except for its names; listing reuses the rest.
        self._configs: dict[str, dict[str, Any]] = {}

    async def inspect(self, reference: str) -> dict[str, Any] | None:
        """``docker image inspect`` by ID, ID prefix, tag or digest; None if absent."""
        try:
            found = await self.client.call("inspect_image", reference)
        except NotFound:
            return None
        self._configs[found["Id"]] = found.get("Config") or {}
        return found

    async def list(self, request: cri.ListImagesRequest) -> cri.ListImagesResponse:
        wanted = request.filter.image.image
        if wanted:
            found = await self.inspect(wanted)
            images = [to_cri_image(found, self.pause_image)] if found else []
            return cri.ListImagesResponse(images=images)
        summaries = await self.client.call("images")
        images = []
        for summary in summaries:
            config = self._configs.get(summary["Id"])
            if config is None:
                found = await self.inspect(summary["Id"])
                if found is None:  # removed while we listed
                    continue
                config = self._configs[summary["Id"]]
            images.append(to_cri_image({**summary, "Config": config}, self.pause_image))
        live = {summary["Id"] for summary in summaries}
        for image_id in set(self._configs) - live:
            del self._configs[image_id]
        return cri.ListImagesResponse(images=images)

    async def status(self, request: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        found = await self.inspect(request.image.image)
        if found is None:
            # The CRI answers a missing image with an empty status, not an error.
            return cri.ImageStatusResponse()
        response = cri.ImageStatusResponse(image=to_cri_image(found, self.pause_image))
        if request.verbose:
            response.info["info"] = json.dumps(found)
        return response

    async def fs_info(self, request: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        info = await self.client.call("info")
        usage = await self.client.call("df")
        mountpoint = os.path.join(info["DockerRootDir"], info.get("Driver") or "")
        inodes_used = 0
        try:
            fs = os.statvfs(mountpoint)
            inodes_used = fs.f_files - fs.f_ffree
        except OSError:
            pass  # dockerd on another host: bytes are still known
        now = time.time_ns()
        images_fs = cri.FilesystemUsage(
            timestamp=now, fs_id=cri.FilesystemIdentifier(mountpoint=mountpoint)
        )
        images_fs.used_bytes.value = usage.get("LayersSize") or 0
        images_fs.inodes_used.value = inodes_used
        containers_fs = cri.FilesystemUsage(
            timestamp=now, fs_id=cri.FilesystemIdentifier(mountpoint=mountpoint)
        )
        containers_fs.used_bytes.value = sum(
            c.get("SizeRw") or 0 for c in usage.get("Containers") or []
        )
        containers_fs.inodes_used.value = inodes_used
        return cri.ImageFsInfoResponse(
            image_filesystems=[images_fs], container_filesystems=[containers_fs]
        )
