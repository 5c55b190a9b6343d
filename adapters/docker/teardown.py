"""Undoing a pod or container: what pods, containers and recovery all need.

Below sandboxes.py and containers.py, so that each can use it without
importing the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil

from pycrid.adapters.docker import adoptedpods
from pycrid.adapters.docker.api import ContainerInspect
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.store import ContainerRecord, SandboxRecord
from pycrid.adapters.errors import CRIError, NotFound
from pycrid.adapters.node import netns
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker")


async def remove_docker_container(
    ctx: DockerContext, record: SandboxRecord | ContainerRecord
) -> None:
    """Force-remove a pod's or a container's Docker container; one already gone is fine.

    While it runs, Docker's destroy event is known to be pycrid's own (events.py).
    """
    record.removing = True
    try:
        with contextlib.suppress(NotFound):
            await ctx.client.remove_container(record.id, force=True, volumes=True)
    except BaseException:
        record.removing = False
        raise


def docker_ips(inspect: ContainerInspect) -> list[str]:
    """The pod's addresses on Docker's own networks, IPv4 first."""
    networks = inspect.get("NetworkSettings", {}).get("Networks") or {}
    ips: list[str] = []
    for network in networks.values():
        for ip in (network.get("IPAddress"), network.get("GlobalIPv6Address")):
            if ip and ip not in ips:
                ips.append(ip)
    return ips


async def release_leftover(ctx: DockerContext, sandbox_id: str) -> None:
    """Undo the network and files of a pod whose pause container is gone.

    Used when Docker lost the container behind pycrid's back: CNI DEL with the
    saved configuration and result (so the IP is released), then the
    namespace pin, the pod's files and its state file go.
    """
    network = ctx.store.files.load_sandbox(sandbox_id)
    if network is not None:
        try:
            # The pod's metadata went with its container: DEL without K8S_POD_* args.
            await ctx.networks.tear_down(sandbox_id, cri.PodSandboxMetadata(), network)
        except CRIError as e:
            log.warning("pod sandbox %s: CNI DEL of a leftover failed: %s", sandbox_id[:13], e)
    await asyncio.to_thread(netns.unpin, ctx.networks.netns_path(sandbox_id))
    adoptedpods.forget_sandbox(ctx, sandbox_id)
    shutil.rmtree(ctx.pod_dir(sandbox_id), ignore_errors=True)
    ctx.store.files.delete_sandbox(sandbox_id)
    if ctx.store.discard_sandbox(sandbox_id) is not None:
        ctx.store.gone(sandbox_id, sandbox_id)
