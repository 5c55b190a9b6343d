"""Request checks that every adapter would otherwise repeat."""

from __future__ import annotations

from pycrid.adapters.errors import InvalidArgument
from pycrid.api.cri import api_pb2 as cri


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgument(message)


def sandbox_config(config: cri.PodSandboxConfig) -> None:
    meta = config.metadata
    require(config.HasField("metadata"), "sandbox config must have metadata")
    require(bool(meta.name), "sandbox metadata.name must not be empty")
    require(bool(meta.namespace), "sandbox metadata.namespace must not be empty")
    require(bool(meta.uid), "sandbox metadata.uid must not be empty")


def container_config(config: cri.ContainerConfig) -> None:
    require(config.HasField("metadata"), "container config must have metadata")
    require(bool(config.metadata.name), "container metadata.name must not be empty")
    require(bool(config.image.image), "container config must name an image")
    for mount in config.mounts:
        require(bool(mount.container_path), "every mount needs a container_path")


def image_spec(spec: cri.ImageSpec, what: str = "image") -> None:
    require(bool(spec.image.strip()), f"{what} must not be empty")
