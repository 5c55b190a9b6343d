"""Creating a named Docker container so that a retried CRI call finds its first try.

The container name encodes the CRI metadata (see ``naming``), so Docker
refuses a second container for the same pod attempt or container attempt.
When it does, the container that holds the name is one of three things:

- the same attempt, already recorded: the call is a retry, and the holder's
  ID is its answer;
- one of pycrid's that no call knows of (a create interrupted before it was
  recorded): it is removed, and the create is tried once more;
- anything else: the name is in use (ALREADY_EXISTS).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pycrid.adapters.docker import naming
from pycrid.adapters.docker.api import Document
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.store import SandboxRecord
from pycrid.adapters.errors import AlreadyExists, NotFound
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker")


async def create_sandbox(
    ctx: DockerContext, body: Document, name: str, config: cri.PodSandboxConfig
) -> tuple[str, bool]:
    """Create a pause container: (its ID, True when an earlier RunPodSandbox made it).

    Only a pod that is ready answers a retry.
    """
    return await _create(
        ctx,
        body,
        name,
        config,
        _Kind(
            call="RunPodSandbox",
            what="pod sandbox",
            known=lambda docker_id: docker_id in ctx.store.sandboxes,
            reusable=lambda docker_id: _is_ready(ctx.store.sandboxes.get(docker_id)),
        ),
    )


async def create_container(
    ctx: DockerContext, body: Document, name: str, config: cri.ContainerConfig
) -> tuple[str, bool]:
    """Create an app container: (its ID, True when an earlier CreateContainer made it)."""

    def known(docker_id: str) -> bool:
        return docker_id in ctx.store.containers

    return await _create(
        ctx, body, name, config, _Kind("CreateContainer", "container", known, known)
    )


@dataclass(frozen=True)
class _Kind:
    call: str
    """The CRI call, for the log."""
    what: str
    """The object, for the error."""
    known: Callable[[str], bool]
    """Whether a Docker container is recorded in the store."""
    reusable: Callable[[str], bool]
    """Whether a recorded one may answer a retry."""


def _is_ready(record: SandboxRecord | None) -> bool:
    return record is not None and record.ready


async def _create(
    ctx: DockerContext,
    body: Document,
    name: str,
    config: cri.PodSandboxConfig | cri.ContainerConfig,
    kind: _Kind,
) -> tuple[str, bool]:
    try:
        return await ctx.client.create_container(name, body), False
    except AlreadyExists:
        existing = await _existing(ctx, name, config, kind)
        if existing:
            return existing, True
        return await ctx.client.create_container(name, body), False


async def _existing(
    ctx: DockerContext, name: str, config: cri.PodSandboxConfig | cri.ContainerConfig, kind: _Kind
) -> str:
    """The ID of the same attempt that holds ``name``, or "" once the name is free."""
    try:
        inspect = await ctx.client.inspect_container(name)
    except NotFound:
        return ""  # the holder went away meanwhile: the name is free again
    docker_id = inspect["Id"]
    owned = naming.read_labels((inspect.get("Config") or {}).get("Labels"), ctx.instance)
    if owned is not None and not kind.known(docker_id):
        log.info("removing %s, left by an interrupted %s", docker_id[:13], kind.call)
        with contextlib.suppress(NotFound):
            await ctx.client.remove_container(docker_id, force=True, volumes=True)
        return ""
    if (
        owned is not None
        and kind.reusable(docker_id)
        and owned.config.SerializeToString(deterministic=True)
        == config.SerializeToString(deterministic=True)
    ):
        return docker_id
    raise AlreadyExists(f"{kind.what} name {name} is in use by {docker_id[:13]}")
