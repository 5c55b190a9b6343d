"""The ImageService over Docker: images as dockerd stores them, plus mirrors.

Docker's own registry mirrors cover docker.io only; pycrid pulls any
registry's images from the mirrors in its configuration, then tags them with
the requested name (see imagenames.py for what Docker cannot record).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pycrid.adapters import faults
from pycrid.adapters.config import Config
from pycrid.adapters.docker import inspectviews
from pycrid.adapters.docker.api import DockerApi, ImageConfig, ImageInspect, ImageSummary
from pycrid.adapters.docker.imagenames import ImageNames
from pycrid.adapters.docker.pullprogress import PullProgress, mib
from pycrid.adapters.docker.sampled import Sampled
from pycrid.adapters.errors import (
    CRIError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from pycrid.adapters.node.chainid import chain_id
from pycrid.adapters.node.imageref import Reference, parse_image_user, parse_reference
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker.images")

INSPECT_RETRY_PAUSES = (0.05, 0.2)
"""Seconds to wait before asking dockerd again after a 500 on image inspect."""

NO_TAG = "<none>:<none>"
NO_DIGEST = "<none>@<none>"


def normalized(name: str) -> str:
    """A tag or reference in full form, or the text itself when it does not parse."""
    try:
        return str(parse_reference(name))
    except InvalidArgument:
        return name


def _repository_of(reference: str) -> str:
    """``127.0.0.1:5000/pause`` for ``127.0.0.1:5000/pause@sha256:...``."""
    return reference.split("@", 1)[0]


def _repository_or_none(reference: str) -> str | None:
    """``docker.io/library/busybox`` for ``busybox:1.36``; None for an ID or bad text."""
    try:
        return parse_reference(reference).repository
    except InvalidArgument:
        return None


def docker_auth(auth: cri.AuthConfig) -> dict[str, str] | None:
    """The CRI's credentials in the shape the Docker API takes them."""
    username, password = auth.username, auth.password
    if auth.auth and not username:
        try:
            username, _, password = base64.b64decode(auth.auth).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument("auth is not base64 of user:password") from None
    config = {
        "username": username,
        "password": password,
        "serveraddress": auth.server_address,
        "identitytoken": auth.identity_token,
        "registrytoken": auth.registry_token,
    }
    config = {key: value for key, value in config.items() if value}
    return config or None


DISK_USAGE_INTERVAL = 10.0
"""Seconds between two measures of dockerd's disk usage (ImageFsInfo's figures)."""
DISK_USAGE_MIN_INTERVAL = 2.0
"""After a pull or a removal the next measure comes sooner, but not sooner than this."""


class DockerImages:
    """The ImageService on dockerd.

    While Docker's events are followed (``live``, events.py), dockerd's
    answers to inspect and list are kept until an image event or a change
    made here says they may have changed (``changed``). An answer that was
    in flight across such a change is not kept.
    """

    def __init__(
        self,
        client: DockerApi,
        config: Config,
        state_dir: Path,
        live: Callable[[], bool] = lambda: False,
    ) -> None:
        self.client = client
        self.config = config
        self.live = live
        self.names = ImageNames(state_dir / "image-names.json")
        self._generation = 0
        self._inspected: dict[str, ImageInspect | None] = {}
        self._listed: list[ImageSummary] | None = None
        # Image IDs are content digests, so what inspect says of one never
        # changes except for its names; listing reuses the rest.
        self._configs: dict[str, ImageConfig] = {}
        # dockerd's image delete is not atomic: an inspect or a second delete
        # that meets one half done gets a 500 ("layer does not exist").
        # Removals here go one at a time, and inspect asks again.
        self._removing = asyncio.Lock()
        self.disk_usage = Sampled(
            self._measure_disk_usage,
            interval=DISK_USAGE_INTERVAL,
            min_interval=DISK_USAGE_MIN_INTERVAL,
        )
        self._fs_info: tuple[DiskUsage, cri.ImageFsInfoResponse] | None = None

    # Looking images up.

    def changed(self) -> None:
        """Forget what dockerd said of its images: something changed them."""
        self.disk_usage.mark_stale()
        self._generation += 1
        self._inspected.clear()
        self._listed = None

    async def inspect(self, reference: str) -> ImageInspect | None:
        """``docker image inspect`` by ID, ID prefix, tag, digest or alias; None if absent."""
        target = self.names.image_for_alias(normalized(reference)) or reference
        if self.live() and target in self._inspected:
            return self._inspected[target]
        generation = self._generation
        found: ImageInspect | None
        try:
            found = await self._inspect_image(target)
        except NotFound:
            found = None
        except FailedPrecondition:
            found = None  # an ambiguous ID prefix names no image
        if found is not None:
            self._configs[found["Id"]] = found.get("Config") or {}
        if generation == self._generation and self.live():
            self._inspected[target] = found
        return found

    async def _list_images(self) -> list[ImageSummary]:
        if self.live() and self._listed is not None:
            return self._listed
        generation = self._generation
        listed = await self.client.list_images()
        if generation == self._generation and self.live():
            self._listed = listed
        return listed

    async def _inspect_image(self, target: str) -> ImageInspect:
        for pause in INSPECT_RETRY_PAUSES:
            try:
                return await self.client.inspect_image(target)
            except Internal:
                # Most likely an image met halfway through a removal (by
                # another client of dockerd); once that is over, dockerd
                # answers 404, or the image if it stayed.
                await asyncio.sleep(pause)
        return await self.client.inspect_image(target)

    async def ensure(self, reference: str, auth: cri.AuthConfig | None = None) -> ImageInspect:
        """The image named ``reference``, pulled first when dockerd lacks it."""
        found = await self.inspect(reference)
        if found is None:
            await self.pull_image(
                cri.PullImageRequest(image=cri.ImageSpec(image=reference), auth=auth)
            )
            found = await self.inspect(reference)
            if found is None:
                raise NotFound(f"image {reference!r} vanished right after its pull")
        return found

    def image_ref(self, inspect: ImageInspect, requested: str = "") -> str:
        """The digested reference ContainerStatus reports: a repo digest, else the ID.

        The digest is the one of the repository ``requested`` names when the
        image has one: dockerd may also hold the image under a mirror's name
        (pulled from it directly), which must not leak into the pod's imageID.
        """
        digests = list(self.to_cri(inspect).repo_digests)
        wanted = _repository_or_none(requested)
        for digest in digests:
            if wanted and _repository_or_none(digest) == wanted:
                return digest
        return digests[0] if digests else inspect["Id"]

    def to_cri(self, inspect: ImageInspect) -> cri.Image:
        """The CRI view of a ``docker image inspect`` result."""
        image_id = inspect["Id"]
        tags = [
            t
            for t in inspect.get("RepoTags") or []
            if t != NO_TAG and not self.names.is_hidden(t, image_id)
        ]
        digests = [
            d
            for d in inspect.get("RepoDigests") or []
            if d != NO_DIGEST and not self.names.is_hidden(d, image_id)
        ]
        digests += [a for a in self.names.aliases_of(image_id) if a not in digests]
        uid, username = parse_image_user((inspect.get("Config") or {}).get("User") or "")
        image = cri.Image(
            id=image_id,
            repo_tags=tags,
            repo_digests=digests,
            size=inspect.get("Size") or 0,
            username=username,
            spec=cri.ImageSpec(image=image_id),
            pinned=normalized(self.config.pause_image) in {normalized(t) for t in tags},
        )
        if uid is not None:
            image.uid.value = uid
        return image

    # The ImageService calls.

    async def list_images(self, request: cri.ListImagesRequest) -> cri.ListImagesResponse:
        wanted = request.filter.image.image
        if wanted:
            found = await self.inspect(wanted)
            return cri.ListImagesResponse(images=[self.to_cri(found)] if found else [])
        summaries = await self._list_images()
        images = []
        for summary in summaries:
            config = self._configs.get(summary["Id"])
            if config is None:
                found = await self.inspect(summary["Id"])
                if found is None:  # removed while we listed
                    continue
                config = self._configs[summary["Id"]]
            images.append(self.to_cri(_as_inspect(summary, config)))
        live = {summary["Id"] for summary in summaries}
        for image_id in set(self._configs) - live:
            del self._configs[image_id]
        await self.names.forget_missing(live)
        return cri.ListImagesResponse(images=images)

    async def image_status(self, request: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        found = await self.inspect(request.image.image)
        if found is None:
            # The CRI answers a missing image with an empty status, not an error.
            return cri.ImageStatusResponse()
        response = cri.ImageStatusResponse(image=self.to_cri(found))
        if request.verbose:
            spec = inspectviews.image_spec(found)
            info = {
                "imageSpec": spec,
                "chainID": chain_id(spec["rootfs"]["diff_ids"]),
                **found,  # Docker's own inspect, as before
            }
            response.info["info"] = json.dumps(info)
        return response

    async def pull_image(self, request: cri.PullImageRequest) -> cri.PullImageResponse:
        requested = parse_reference(request.image.image)
        auth = docker_auth(request.auth) if request.HasField("auth") else None
        failures: list[tuple[Reference, CRIError]] = []
        for source, credentials in self._sources(requested, auth):
            try:
                existed = await self.inspect(str(source)) is not None
                log.info("pulling %s", source)
                progress = PullProgress(str(source))
                try:
                    await self.client.pull_image(
                        source.repository,
                        source.digest or source.tag,
                        credentials,
                        idle_timeout=self.config.docker.pull_progress_timeout,
                        progress=progress.take,
                    )
                finally:
                    self.changed()
            except (NotFound, Unavailable, FailedPrecondition) as e:
                log.info("pulling %s failed after %.1fs: %s", source, progress.elapsed, e)
                failures.append((source, e))
                continue
            faults.reach("docker.pull.after-pull")
            found = await self._name_as_requested(source, requested, existed)
            log.info(
                "pulled %s%s: %s, %s in %.1fs",
                source,
                "" if source == requested else f" as {requested}",
                found["Id"][:19],
                mib(found.get("Size") or 0),
                progress.elapsed,
            )
            # The image ID, as containerd answers: critest and kubelet expect
            # PullImage's image_ref to equal Image.id and ContainerStatus.image_id.
            return cri.PullImageResponse(image_ref=found["Id"])
        raise _pull_error(requested, failures)

    def _sources(
        self, requested: Reference, auth: dict[str, str] | None
    ) -> list[tuple[Reference, dict[str, str] | None]]:
        """Where to pull from, in order: the mirrors, then the registry itself.

        Credentials belong to the registry they were given for; mirrors get none.
        """
        sources: list[tuple[Reference, dict[str, str] | None]] = []
        for mirror in self.config.registry(requested.domain).mirrors:
            host = urlsplit(mirror).netloc
            if host and host != requested.domain:
                sources.append((requested.with_domain(host), None))
        if self.config.registry(requested.domain).upstream or not sources:
            sources.append((requested, auth))
        return sources

    async def _name_as_requested(
        self, source: Reference, requested: Reference, existed: bool
    ) -> ImageInspect:
        """Tag what came from a mirror with the requested name; hide the mirror's."""
        found = await self.inspect(str(source))
        if found is None:
            raise NotFound(f"{source} is missing right after its pull")
        if source == requested:
            return found
        image_id = found["Id"]
        hidden: list[str] = []
        if requested.tag and not requested.digest:
            tags = {normalized(tag) for tag in found.get("RepoTags") or []}
            if str(requested) not in tags:  # a pull of what is here already: tagged before
                try:
                    await self.client.tag_image(image_id, requested.repository, requested.tag)
                finally:
                    self.changed()
            if not existed:
                hidden.append(_docker_name(str(source)))
        mirror_digests = [
            d for d in found.get("RepoDigests") or [] if _repository_of(d) == source.repository
        ]
        aliases = [f"{requested.repository}@{d.split('@', 1)[1]}" for d in mirror_digests]
        if not existed:
            hidden += mirror_digests
        await self.names.record(image_id, aliases, hidden)
        if hidden and requested.tag and not requested.digest:
            # Untagging drops the mirror's tag only: the requested tag keeps the image.
            try:
                await self.client.remove_image(_docker_name(str(source)), prune=False)
            finally:
                self.changed()
        return found  # its ID and size are what the caller needs, and they did not change

    async def remove_image(self, request: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        async with self._removing:
            found = await self.inspect(request.image.image)
            if found is None:
                return cri.RemoveImageResponse()  # already gone: RemoveImage is idempotent
            image_id = found["Id"]
            # Every name of the image goes, in every repository (the CRI says so).
            try:
                await self.client.remove_image(image_id, force=True)
            except CRIError as e:
                # Another client of dockerd may have removed it meanwhile.
                self.changed()
                if await self.inspect(image_id) is not None:
                    raise FailedPrecondition(f"cannot remove image {image_id}: {e}") from None
            finally:
                self.changed()
        await self.names.forget(image_id)
        self._configs.pop(image_id, None)
        return cri.RemoveImageResponse()

    async def image_fs_info(self, request: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        usage = await self.disk_usage.get()
        kept = self._fs_info
        if kept is not None and kept[0] is usage:
            return kept[1]  # one answer per sample: kubelet asks far more often than it moves
        response = cri.ImageFsInfoResponse(
            image_filesystems=[usage.filesystem(usage.layers_bytes)],
            container_filesystems=[usage.filesystem(usage.writable_bytes)],
        )
        self._fs_info = (usage, response)
        return response

    async def _measure_disk_usage(self) -> DiskUsage:
        """dockerd's root file system and what its layers take: ``/system/df`` sizes every
        container, so this runs in the background (``disk_usage``), not per call."""
        info = await self.client.info()
        usage = await self.client.df()
        mountpoint = os.path.join(info.get("DockerRootDir") or "", info.get("Driver") or "")
        inodes_used = 0
        try:
            fs = await asyncio.to_thread(os.statvfs, mountpoint)
            inodes_used = fs.f_files - fs.f_ffree
        except OSError:
            pass  # dockerd on another host: bytes are still known
        return DiskUsage(
            taken_at=time.time_ns(),
            mountpoint=mountpoint,
            layers_bytes=usage.get("LayersSize") or 0,
            writable_bytes=sum(c.get("SizeRw") or 0 for c in usage.get("Containers") or []),
            inodes_used=inodes_used,
        )


@dataclass(frozen=True)
class DiskUsage:
    """One measure of dockerd's disk: its layers, and its containers' writable layers."""

    taken_at: int
    mountpoint: str
    layers_bytes: int
    writable_bytes: int
    inodes_used: int

    def filesystem(self, used_bytes: int) -> cri.FilesystemUsage:
        usage = cri.FilesystemUsage(
            timestamp=self.taken_at, fs_id=cri.FilesystemIdentifier(mountpoint=self.mountpoint)
        )
        usage.used_bytes.value = used_bytes
        usage.inodes_used.value = self.inodes_used
        return usage


def _docker_name(reference: str) -> str:
    """Docker's short form of a reference (``docker.io/library/x`` is ``x``)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if reference.startswith(prefix):
            return reference[len(prefix) :]
    return reference


def _as_inspect(summary: ImageSummary, config: ImageConfig) -> ImageInspect:
    """What ``to_cri`` needs of an image: its listing, and the config inspect gave."""
    return ImageInspect(
        Id=summary["Id"],
        RepoTags=summary.get("RepoTags"),
        RepoDigests=summary.get("RepoDigests"),
        Size=summary.get("Size") or 0,
        Config=config,
    )


def _pull_error(requested: Reference, failures: list[tuple[Reference, CRIError]]) -> CRIError:
    """One error for the sources that all failed, of the kind that says most.

    Access refused by the last source (the registry itself) wins, then a
    source that lacks the image; otherwise no source could be reached.
    """
    detail = "; ".join(f"{source.domain}: {error}" for source, error in failures)
    if len(failures) > 1:
        detail = f"cannot pull {requested}: {detail}"
    if isinstance(failures[-1][1], FailedPrecondition):
        return FailedPrecondition(detail)
    if any(isinstance(error, NotFound) for _, error in failures):
        return NotFound(detail)
    return Unavailable(detail)
