"""Image manifests and indexes: Docker v2 schema 2 and OCI, parsed and checked.

A registry answers a reference with either a manifest (one image: a config
and its layers) or an index / manifest list (one manifest per platform).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pycrid.adapters.oci.images.digest import parse_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_NONDIST_LAYERS = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
LAYER_TYPES = (
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    DOCKER_LAYER_GZIP,
    DOCKER_FOREIGN_LAYER,
    *OCI_NONDIST_LAYERS,
)
# What PullImage asks a registry for, best first.
ACCEPT = (*MANIFEST_TYPES, *INDEX_TYPES)

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024


class ManifestError(Exception):
    """A manifest, index or config that pycrid cannot use."""


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where} is not an object")
    digest = raw.get("digest")
    size = raw.get("size")
    media_type = raw.get("mediaType", "")
    if not isinstance(digest, str):
        raise ManifestError(f"{where} has no digest")
    try:
        parse_digest(digest)
    except ValueError as e:
        raise ManifestError(f"{where}: {e}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where} has no valid size")
    if not isinstance(media_type, str):
        raise ManifestError(f"{where} has an invalid mediaType")
    platform = None
    raw_platform = raw.get("platform")
    if isinstance(raw_platform, dict):
        platform = Platform(
            os=str(raw_platform.get("os", "")),
            architecture=str(raw_platform.get("architecture", "")),
            variant=str(raw_platform.get("variant", "")),
        )
    urls = raw.get("urls") or ()
    annotations = raw.get("annotations") or {}
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=platform,
        urls=tuple(str(u) for u in urls) if isinstance(urls, list) else (),
        annotations=dict(annotations) if isinstance(annotations, dict) else {},
    )


def _media_type(document: dict[str, Any], content_type: str) -> str:
    """The document's own mediaType, else the Content-Type, else a guess by shape."""
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    content_type = content_type.split(";", 1)[0].strip()
    if content_type in (*MANIFEST_TYPES, *INDEX_TYPES):
        return content_type
    # OCI allows mediaType to be absent; the shape tells which it is.
    if "manifests" in document:
        return OCI_INDEX
    if "config" in document and "layers" in document:
        return OCI_MANIFEST
    return content_type


def parse(data: bytes, content_type: str = "") -> Manifest | Index:
    """Parse a manifest or index document as a registry returned it."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest of {len(data)} bytes is larger than allowed")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"manifest is not JSON: {e}") from None
    if not isinstance(document, dict):
        raise ManifestError("manifest is not a JSON object")
    media_type = _media_type(document, content_type)
    if media_type in DOCKER_SCHEMA1 or document.get("schemaVersion") == 1:
        raise ManifestError("Docker schema 1 manifests are not supported; push the image again")
    if document.get("schemaVersion") != 2:
        raise ManifestError(f"unsupported manifest schemaVersion {document.get('schemaVersion')}")
    if media_type in INDEX_TYPES:
        raw_manifests = document.get("manifests")
        if not isinstance(raw_manifests, list):
            raise ManifestError("index has no manifests list")
        return Index(
            media_type=media_type,
            manifests=tuple(
                _descriptor(m, f"index entry {i}") for i, m in enumerate(raw_manifests)
            ),
        )
    if media_type in MANIFEST_TYPES:
        config = _descriptor(document.get("config"), "manifest config")
        raw_layers = document.get("layers")
        if not isinstance(raw_layers, list):
            raise ManifestError("manifest has no layers list")
        layers = tuple(_descriptor(layer, f"layer {i}") for i, layer in enumerate(raw_layers))
        if config.media_type and config.media_type not in CONFIG_TYPES:
            raise ManifestError(f"not a container image (config type {config.media_type})")
        for layer in layers:
            if layer.media_type not in LAYER_TYPES:
                raise ManifestError(f"unsupported layer media type {layer.media_type!r}")
        return Manifest(media_type=media_type, config=config, layers=layers)
    raise ManifestError(f"unsupported manifest media type {media_type!r}")


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config that the image service needs."""

    diff_ids: tuple[str, ...]
    user: str
    platform: Platform
    raw: dict[str, Any]


def parse_config(data: bytes) -> ImageConfig:
    if len(data) > MAX_CONFIG_BYTES:
        raise ManifestError(f"image config of {len(data)} bytes is larger than allowed")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"image config is not JSON: {e}") from None
    if not isinstance(document, dict):
        raise ManifestError("image config is not a JSON object")
    rootfs = document.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise ManifestError("image config has no rootfs.diff_ids")
    for diff_id in diff_ids:
        try:
            parse_digest(diff_id)
        except (ValueError, TypeError):
            raise ManifestError(f"image config has a malformed diff_id {diff_id!r}") from None
    settings = document.get("config") or {}
    user = settings.get("User") or "" if isinstance(settings, dict) else ""
    return ImageConfig(
        diff_ids=tuple(diff_ids),
        user=str(user),
        platform=Platform(
            os=str(document.get("os", "")),
            architecture=str(document.get("architecture", "")),
            variant=str(document.get("variant", "")),
        ),
        raw=document,
    )
