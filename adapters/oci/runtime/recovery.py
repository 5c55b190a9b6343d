"""Start-up recovery of the oci runtime: records read back, half-made objects undone.

Assumptions: every pod and container pycrid made has a record written
before anything else of it existed (``store.py``), so a directory or runc
state without a record is an orphan of a crash and goes. conmon outlives
pycrid, so containers that ran before keep running and their logs keep
flowing; exits that happened meanwhile are in conmon's exit files and are
picked up by ``OciContainers.refresh``.

Half-made objects are recognised from their records: a pod that is not
ready, not being stopped, and whose network was never torn down did not
finish RunPodSandbox; a container without a process did not finish
CreateContainer. A container whose start was asked for but not recorded is
settled with runc (``OciContainers.settle_start``); a pod whose stop began
stays NOTREADY and the next StopPodSandbox finishes its teardown. Both are
removed the way a failed call removes them. Each object is recovered on its
own, with a time limit; one that fails is logged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable
from pathlib import Path

from pycrid.adapters.errors import CRIError
from pycrid.adapters.node import netns
from pycrid.adapters.oci.images.rootfs import is_mounted, remove_rootfs
from pycrid.adapters.oci.runtime import conmon, userns
from pycrid.adapters.oci.runtime.containers import OciContainers
from pycrid.adapters.oci.runtime.context import OciContext
from pycrid.adapters.oci.runtime.sandboxes import OciSandboxes, run_command
from pycrid.adapters.oci.runtime.store import ContainerRecord

log = logging.getLogger("pycrid.oci")

ITEM_TIMEOUT = 30.0


async def recover(ctx: OciContext, sandboxes: OciSandboxes, containers: OciContainers) -> None:
    for problem in await asyncio.to_thread(ctx.store.load):
        log.warning("unreadable record ignored: %s", problem)

    async def one(what: str, work: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(work, ITEM_TIMEOUT)
        except (CRIError, TimeoutError, OSError) as e:
            log.warning("could not recover %s: %s", what, e)

    for record in list(ctx.store.sandboxes.values()):
        if record.ready and conmon.exit_code(ctx.store.sandbox_dir(record.id)) is not None:
            # The pause exited while pycrid was away, and the exit directory (under
            # the run directory) may be gone with a reboot: the record says so now.
            record.ready = False
        if not record.ready and not record.stopping and not record.network.torn_down:
            log.info("pod sandbox %s was left half made; removing it", record.id[:13])
            for container in ctx.store.containers_of(record.id):
                await one(container.id[:13], containers._remove(container))
            await one(record.id[:13], sandboxes._remove(record))
    for container in list(ctx.store.containers.values()):
        if container.sandbox_id not in ctx.store.sandboxes or not container.pid:
            log.info("container %s was left half made; removing it", container.id[:13])
            await one(container.id[:13], containers._remove(container))
        else:
            await one(container.id[:13], _settle(containers, container))
    ctx.store.publish_all()
    await _remove_orphans(ctx)
    log.info(
        "recovered %d pod sandboxes and %d containers",
        len(ctx.store.sandboxes),
        len(ctx.store.containers),
    )


async def _settle(containers: OciContainers, container: ContainerRecord) -> None:
    """A start the record has not seen decided from runc; an exit read from conmon's file."""
    await containers.settle_start(container)
    await containers.refresh(container)


async def _remove_orphans(ctx: OciContext) -> None:
    """Whatever a crash left without a record: runc state, bundles, pins, files."""
    known = set(ctx.store.sandboxes) | set(ctx.store.containers)
    for staging in _entries(ctx.run_dir / "idmap"):
        # ID-mapped mounts are staged only during a call: all are left over.
        await asyncio.to_thread(userns.clear_staging, staging)
    for directory in _entries(ctx.run_dir / "bundles"):
        if directory.name not in known:
            await ctx.runc.delete(directory.name, force=True)
            await asyncio.to_thread(shutil.rmtree, directory, True)
    for pin in _entries(ctx.networks.netns_dir):
        if pin.name not in ctx.store.sandboxes:
            await asyncio.to_thread(netns.unpin, pin)
    for directory in _entries(ctx.run_dir / "pods"):
        if directory.name not in ctx.store.sandboxes:
            shm = directory / "shm"
            if shm.exists() and is_mounted(shm):
                await run_command("umount", "--lazy", str(shm))
            await asyncio.to_thread(shutil.rmtree, directory, True)
    for kind, table in (("sandboxes", ctx.store.sandboxes), ("containers", ctx.store.containers)):
        for directory in _entries(ctx.store.root / kind):
            if directory.name not in table:
                await remove_rootfs(ctx.images.store, directory / "fs", directory.name)
                await asyncio.to_thread(shutil.rmtree, directory, True)


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except FileNotFoundError:
        return []
