"""Start-up recovery: rebuild the docker adapter's memory from Docker.

Assumptions: every pod and container pycrid made is a Docker container with
this instance's labels (naming.py), which hold its whole CRI config; a pod's
network state is in its state file, written before each step of
RunPodSandbox. Containers kept running while pycrid was down and keep
running now; their log copiers resume from their bookmarks.

Each object is recovered on its own, with a time limit: one that cannot be
read is logged and skipped, never fatal. Leftovers are cleaned up: a pod
state file whose container is gone gets its CNI DEL and netns pin released;
a container state file whose container is gone is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pycrid.adapters.base import StartupError
from pycrid.adapters.deadline import set_call_deadline
from pycrid.adapters.docker import adopt, adoptedpods, naming
from pycrid.adapters.docker.api import ImageInspect
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.store import ContainerRecord, SandboxRecord
from pycrid.adapters.docker.teardown import release_leftover
from pycrid.adapters.errors import CRIError, NotFound
from pycrid.adapters.node import netns
from pycrid.adapters.node.podnetwork import NetworkState
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker")

ITEM_TIMEOUT = 30.0
BACKSTOP = 1.0
PARALLEL = 8


async def recover(ctx: DockerContext) -> None:
    if adoptedpods.enabled(ctx) and adoptedpods.LISTED not in ctx.also_listed:
        ctx.also_listed.append(adoptedpods.LISTED)  # the relist keeps the adopted ones
    ctx.store.files.remove_leftovers()
    ctx.log_copiers.remove_leftovers()
    try:
        listed = await ctx.client.list_containers(naming.instance_filter(ctx.instance))
    except CRIError as e:
        raise StartupError(f"cannot list the pods and containers in docker: {e}") from None
    limit = asyncio.Semaphore(PARALLEL)
    images: dict[str, ImageInspect | None] = {}

    async def one(container_id: str) -> None:
        async with limit:
            # Each item runs in a task of its own: the deadline bounds its Docker
            # calls, which then fail with their own message; the outer limit is
            # only a backstop for work that is not a Docker call.
            set_call_deadline(ITEM_TIMEOUT)
            try:
                await asyncio.wait_for(
                    _recover_one(ctx, container_id, images), ITEM_TIMEOUT + BACKSTOP
                )
            except (CRIError, TimeoutError, ValueError, KeyError) as e:
                log.warning("could not recover %s: %s", container_id[:13], e or "timed out")

    await asyncio.gather(*(one(summary["Id"]) for summary in listed))
    if adoptedpods.enabled(ctx):
        set_call_deadline(ITEM_TIMEOUT * 4)
        await adopt.adopt(ctx)
    ctx.store.publish_all()
    await _clean_leftovers(ctx)
    for record in list(ctx.store.containers.values()):
        if record.log_path and record.state != cri.CONTAINER_CREATED:
            try:
                sandbox = ctx.store.sandboxes.get(record.sandbox_id)
                await ctx.log_copiers.recover(
                    record.id,
                    record.log_path,
                    record.config.tty,
                    sandbox.config.log_directory or None if sandbox else None,
                )
            except CRIError as e:
                log.warning("container %s: log copy not resumed: %s", record.id[:13], e)
    log.info(
        "recovered %d pod sandboxes and %d containers",
        len(ctx.store.sandboxes),
        len(ctx.store.containers),
    )


async def _recover_one(
    ctx: DockerContext, container_id: str, images: dict[str, ImageInspect | None]
) -> None:
    try:
        inspect = await ctx.client.inspect_container(container_id)
    except NotFound:
        return  # removed while we listed
    owned = naming.read_labels((inspect.get("Config") or {}).get("Labels"), ctx.instance)
    if owned is None:
        log.warning("container %s has unreadable pycrid labels; ignored", container_id[:13])
        return
    created_at = naming.docker_time_ns(inspect.get("Created"))
    if owned.kind == naming.SANDBOX:
        assert isinstance(owned.config, cri.PodSandboxConfig)
        network = ctx.store.files.load_sandbox(container_id)
        if network is None:
            # Created but never saved: the pod never got a network.
            network = NetworkState(mode="unknown", torn_down=True)
        record = SandboxRecord(
            id=container_id,
            config=owned.config,
            runtime_handler=owned.runtime_handler,
            created_at=created_at,
            network=network,
        )
        record.update(inspect)
        ctx.store.add_sandbox(record, published=False)
        return
    assert isinstance(owned.config, cri.ContainerConfig)
    image_id = inspect.get("Image") or ""
    if image_id not in images:
        images[image_id] = await ctx.images.inspect(image_id) if image_id else None
    image = images[image_id]
    resources = ctx.store.files.load_container_resources(container_id)
    container = ContainerRecord(
        id=container_id,
        sandbox_id=owned.sandbox_id,
        config=owned.config,
        log_path=owned.log_path,
        created_at=created_at,
        image_id=image_id,
        image_ref=(ctx.images.image_ref(image, owned.config.image.image) if image else image_id),
        resources=resources if resources is not None else owned.config.linux.resources,
    )
    container.update(inspect)
    ctx.store.add_container(container, published=False)


async def _clean_leftovers(ctx: DockerContext) -> None:
    """Networks and files of pods and containers that Docker no longer has."""
    for sandbox_id in ctx.store.files.sandbox_ids():
        if sandbox_id in ctx.store.sandboxes:
            continue
        if adoptedpods.was_adopted(ctx, sandbox_id) and await _still_in_docker(ctx, sandbox_id):
            # An adopted pod while adoption is off: its network is in use.
            log.warning("pod sandbox %s is not recovered but runs; left alone", sandbox_id[:13])
            continue
        await release_leftover(ctx, sandbox_id)
    for container_id in ctx.store.files.container_ids():
        if container_id not in ctx.store.containers:
            ctx.store.files.delete_container(container_id)
    for container_id in ctx.log_copiers.bookmarked():
        if container_id not in ctx.store.containers:
            ctx.log_copiers.forget(container_id)
    with contextlib.suppress(FileNotFoundError):
        for pin in ctx.networks.netns_dir.iterdir():
            if pin.name not in ctx.store.sandboxes:
                netns.unpin(pin)


async def _still_in_docker(ctx: DockerContext, container_id: str) -> bool:
    """Whether Docker has the container; True when it cannot say (nothing is torn down)."""
    set_call_deadline(ITEM_TIMEOUT)
    try:
        await ctx.client.inspect_container(container_id)
    except NotFound:
        return False
    except CRIError:
        return True
    return True
