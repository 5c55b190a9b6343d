"""Pod sandboxes on runc: a pause process under conmon, its namespaces and its network.

RunPodSandbox, in this order, each step on disk before the next: the record
(so that recovery can undo a half-made pod), the pod's files (hostname,
hosts, resolv.conf, a tmpfs for /dev/shm), the pause image's rootfs and its
bundle, ``runc create`` under conmon (runc makes the namespaces), the
network namespace pinned from the pause process and CNI ADD on it, then
``runc start``. A failure at any step undoes what was made and answers the
real error.

StopPodSandbox first writes the pod NOTREADY and "stopping" (so that a crash
part-way leaves it NOTREADY, never READY without a network), then stops the
pod's containers, tears the network down (CNI DEL once, the pin released,
written down) and kills the pause process; RemovePodSandbox then
removes every file, mount and runc state. Both are idempotent and work on
a pod that was only half made.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from pycrid.adapters import criviews, faults
from pycrid.adapters.deadline import without_deadline
from pycrid.adapters.errors import (
    AlreadyExists,
    CRIError,
    Internal,
    InvalidArgument,
    backend_failure,
)
from pycrid.adapters.listfilter import admits, passes_all
from pycrid.adapters.node import atomicfile, cni, mounts, netns
from pycrid.adapters.node.podnetwork import NetworkState
from pycrid.adapters.oci.images.rootfs import is_mounted, prepare_rootfs, remove_rootfs
from pycrid.adapters.oci.runtime import podstate, userns
from pycrid.adapters.oci.runtime.context import OciContext
from pycrid.adapters.oci.runtime.imageconfig import ImageConfig
from pycrid.adapters.oci.runtime.namespaces import check_sysctls
from pycrid.adapters.oci.runtime.spec import PodFacts, sandbox_spec
from pycrid.adapters.oci.runtime.store import SandboxRecord
from pycrid.api.cri import api_pb2 as cri

if TYPE_CHECKING:
    from pycrid.adapters.oci.runtime.containers import OciContainers

log = logging.getLogger("pycrid.oci")

HANDLERS = ("", "runc")
SHM_OPTIONS = "mode=1777,size=65536k,nosuid,nodev,noexec"
PAUSE_STOP_WAIT = 10.0
POLL_INTERVAL = 0.05


async def run_command(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace").strip()


def resolv_conf(dns: cri.DNSConfig) -> str:
    lines = []
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    lines += [f"nameserver {server}" for server in dns.servers]
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def _host_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def _name(config: cri.PodSandboxConfig) -> str:
    """What makes a pod unique to kubelet: its metadata (name, namespace, UID, attempt)."""
    meta = config.metadata
    return f"{meta.name}_{meta.namespace}_{meta.uid}_{meta.attempt}"


class OciSandboxes:
    """RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox."""

    def __init__(self, ctx: OciContext, containers: OciContainers) -> None:
        self.ctx = ctx
        self.containers = containers
        self._listed: criviews.KeptAnswer[cri.ListPodSandboxResponse] = criviews.KeptAnswer()

    # RunPodSandbox.

    async def run_pod_sandbox(self, request: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
        ctx = self.ctx
        config = request.config
        if request.runtime_handler not in HANDLERS:
            raise InvalidArgument(f"runtime handler {request.runtime_handler[:64]!r} is unknown")
        check_sysctls(config)
        host_network = config.linux.security_context.namespace_options.network == cri.NODE
        network_list = None
        if not host_network:
            network_list = cni.load_network(ctx.config.network.cni_conf_dir)
            for plugin in network_list.plugins:
                cni.find_plugin(plugin["type"], ctx.networks.runner.bin_dirs)
        existing = self._same_name(config)
        if existing is not None:
            if existing.config == config and existing.runtime_handler == request.runtime_handler:
                # kubelet's retry of a call whose answer it lost: the same pod.
                return cri.RunPodSandboxResponse(pod_sandbox_id=existing.id)
            raise AlreadyExists(
                f"pod sandbox name {_name(config)[:200]!r} is taken by {existing.id[:13]}"
            )
        image = await self.containers.images.ensure(ctx.config.pause_image)
        record = SandboxRecord(
            id=secrets.token_hex(32),
            config=config,
            runtime_handler=request.runtime_handler,
            created_at=time.time_ns(),
            network=NetworkState(mode="host" if host_network else "cni"),
        )
        await ctx.store.save_sandbox(record)
        faults.reach("oci.run.after-record")
        try:
            await self._bring_up(record, image, network_list)
        except BaseException:
            log.warning("pod sandbox %s failed to start; removing it", record.id[:13])
            with without_deadline():
                await asyncio.shield(self._remove(record))
            raise
        ctx.store.publish_sandbox(record.id)
        ctx.store.changed(record)  # listed now: the feed hears of it
        log.info(
            "pod sandbox %s started for %s/%s",
            record.id[:13],
            config.metadata.namespace,
            config.metadata.name,
        )
        return cri.RunPodSandboxResponse(pod_sandbox_id=record.id)

    def _same_name(self, config: cri.PodSandboxConfig) -> SandboxRecord | None:
        name = _name(config)
        return next((r for r in self.ctx.store.sandboxes.values() if _name(r.config) == name), None)

    async def _bring_up(
        self, record: SandboxRecord, image: Any, network_list: cni.NetworkList | None
    ) -> None:
        ctx = self.ctx
        ids = userns.PodIds.of(record.config.linux.security_context.namespace_options)
        # CNI sets the namespace up while the pause container is made, as with
        # containerd. A pod with a user namespace needs its network namespace
        # made inside that one, so runc makes it and CNI follows.
        early_network = network_list is not None and ids is None
        netns_path = ctx.networks.netns_path(record.id)
        if early_network:
            await asyncio.to_thread(netns.create, netns_path)
        pod = await self._pod_files(record, ids)
        if early_network:
            pod = dataclasses.replace(pod, netns_path=str(netns_path))
        fs_dir = ctx.store.sandbox_dir(record.id) / "fs"
        if ids is None:
            rootfs = await prepare_rootfs(ctx.images.store, image, fs_dir, record.id)
        else:
            staging = userns.staging_dir(ctx.run_dir, record.id)
            rootfs = await userns.mount_rootfs(
                ctx.images.store, image, fs_dir, record.id, staging, ids
            )
        image_config = ImageConfig.from_blob(ctx.images.store.read_blob(image.id))
        generated = sandbox_spec(
            record.config,
            image_config,
            rootfs=str(rootfs),
            pod=pod,
            node=ctx.node,
            image_name=ctx.config.pause_image,
        )
        bundle = ctx.bundle(record.id)
        # The bundle matters only while its processes run: no fsync for it.
        await atomicfile.write_json_async(bundle / "config.json", generated.spec, durable=False)
        runtime = None
        if ids is not None:
            runtime = userns.runtime_for(
                rootfs, ids, bundle, ctx.conmon.runtime_binary, generated.notes
            )
        for note in generated.notes:
            log.info("pod sandbox %s: %s", record.id[:13], note)

        async def make_pause() -> None:
            with backend_failure(f"pod sandbox {record.id[:13]} could not be created"):
                record.pid = await ctx.conmon.create(
                    record.id,
                    bundle,
                    str(bundle / "pause.log"),
                    ctx.exit_dir,
                    ctx.store.sandbox_dir(record.id),
                    name=f"{record.config.metadata.namespace}_{record.config.metadata.name}",
                    runtime=runtime,
                )
            faults.reach("oci.run.after-conmon-create")

        async def save(state: NetworkState) -> None:
            await ctx.store.save_sandbox(record)

        if early_network:
            assert network_list is not None
            # The network list is saved before ADD (set_up); the pid and ADD's result
            # are saved with the ready pod below: a crash before that leaves a pod
            # recovery removes, through runc and the saved list, needing neither.
            await _both(
                make_pause(),
                ctx.networks.set_up(record.id, record.config, network_list, record.network, save),
            )
        else:
            await make_pause()
            await ctx.store.save_sandbox(record)
            if network_list is not None:
                netns.pin(record.pid, netns_path)
                await ctx.networks.set_up(
                    record.id, record.config, network_list, record.network, save
                )
        faults.reach("oci.run.before-runc-start")
        with backend_failure(f"pod sandbox {record.id[:13]} could not be started"):
            await ctx.runc.start(record.id)
        faults.reach("oci.run.after-runc-start")
        record.network.ready = True
        record.ready = True
        await ctx.store.save_sandbox(record)

    async def _pod_files(self, record: SandboxRecord, ids: userns.PodIds | None) -> PodFacts:
        """hostname, hosts, resolv.conf and the /dev/shm tmpfs of a pod; the files
        belong to the pod's root when it has a user namespace."""
        config = record.config
        directory = self.ctx.pod_dir(record.id)
        directory.mkdir(parents=True, exist_ok=True)
        options = config.linux.security_context.namespace_options
        # Without a hostname of its own the pod has the node's, as with containerd.
        hostname = config.hostname or self.ctx.node.hostname
        files = {
            "hostname": (hostname + "\n").encode(),
            "hosts": _host_file("/etc/hosts"),
            "resolv.conf": (
                resolv_conf(config.dns_config).encode()
                if config.HasField("dns_config")
                and (config.dns_config.servers or config.dns_config.searches)
                else _host_file("/etc/resolv.conf")
            ),
        }
        for name, content in files.items():
            (directory / name).write_bytes(content)
            (directory / name).chmod(0o644)
        if ids is not None:
            userns.give_to_root((directory / name for name in files), ids)
        shm = ""
        if options.ipc != cri.NODE:
            shm_path = self.ctx.shm_path(record.id)
            shm_path.mkdir(exist_ok=True)
            if not is_mounted(shm_path):
                try:
                    await asyncio.to_thread(mounts.mount, "shm", shm_path, "tmpfs", SHM_OPTIONS)
                except OSError as e:
                    raise Internal(f"cannot mount the pod's /dev/shm: {e}") from None
            shm = str(shm_path)
        return PodFacts(
            sandbox_id=record.id,
            netns_path="",
            pause_pid=record.pid,
            shm_path=shm,
            hostname_path=str(directory / "hostname"),
            hosts_path=str(directory / "hosts"),
            resolv_conf_path=str(directory / "resolv.conf"),
        )

    # StopPodSandbox.

    async def stop_pod_sandbox(
        self, request: cri.StopPodSandboxRequest
    ) -> cri.StopPodSandboxResponse:
        record = self.ctx.store.sandboxes.get(request.pod_sandbox_id)
        if record is None:
            return cri.StopPodSandboxResponse()  # gone: the CRI makes Stop succeed
        async with record.lock:
            await self._stop(record)
        return cri.StopPodSandboxResponse()

    async def _stop(self, record: SandboxRecord) -> None:
        """The intent on disk first (NOTREADY, stopping), then each step; the
        steps are idempotent, so a StopPodSandbox after a crash finishes them."""
        if record.id not in self.ctx.store.sandboxes:
            return  # removed while this call waited for the pod's lock
        if record.ready or not record.stopping:
            record.ready = False
            record.stopping = True
            await self.ctx.store.save_sandbox(record)
        faults.reach("oci.stoppod.after-intent")
        for container in self.ctx.store.containers_of(record.id):
            await self.containers.stop_one(container.id, 0)
        faults.reach("oci.stoppod.after-containers")
        if not record.network.torn_down:
            await self.ctx.networks.tear_down(record.id, record.config.metadata, record.network)
            await self.ctx.store.save_sandbox(record)
        faults.reach("oci.stoppod.after-network")
        await self._kill_pause(record)

    async def _kill_pause(self, record: SandboxRecord) -> None:
        state = await self.ctx.runc.state(record.id)
        if state is None or state.status == "stopped":
            return
        with contextlib.suppress(CRIError):
            await self.ctx.runc.kill(record.id, signal.SIGKILL, all_processes=True)
        give_up = time.monotonic() + PAUSE_STOP_WAIT
        while time.monotonic() < give_up:
            state = await self.ctx.runc.state(record.id)
            if state is None or state.status == "stopped":
                return
            await asyncio.sleep(POLL_INTERVAL)
        log.warning("pod sandbox %s: the pause process outlived SIGKILL", record.id[:13])

    # RemovePodSandbox.

    async def remove_pod_sandbox(
        self, request: cri.RemovePodSandboxRequest
    ) -> cri.RemovePodSandboxResponse:
        record = self.ctx.store.sandboxes.get(request.pod_sandbox_id)
        if record is None:
            return cri.RemovePodSandboxResponse()  # gone: the CRI makes Remove succeed
        async with record.lock:
            for container in self.ctx.store.containers_of(record.id):
                await self.containers.remove_one(container.id)
            await self._remove(record)
        log.info("pod sandbox %s removed", record.id[:13])
        return cri.RemovePodSandboxResponse()

    async def _remove(self, record: SandboxRecord) -> None:
        """Everything of a pod, made fully or in part; safe to repeat."""
        ctx = self.ctx
        try:
            await ctx.networks.tear_down(record.id, record.config.metadata, record.network)
        except CRIError as e:
            # Removal must always work: the IP may leak, the pod must not.
            log.warning("pod sandbox %s: CNI DEL failed: %s", record.id[:13], e)
        await asyncio.to_thread(netns.unpin, ctx.networks.netns_path(record.id))
        await self._kill_pause(record)
        await ctx.runc.delete(record.id, force=True)
        shm = ctx.shm_path(record.id)
        if shm.exists() and is_mounted(shm):
            try:
                await asyncio.to_thread(mounts.unmount, shm, lazy=True)
            except OSError as e:
                log.warning("pod sandbox %s: cannot unmount /dev/shm: %s", record.id[:13], e)
        userns.clear_staging(userns.staging_dir(ctx.run_dir, record.id))
        await remove_rootfs(ctx.images.store, ctx.store.sandbox_dir(record.id) / "fs", record.id)
        for directory in (ctx.pod_dir(record.id), ctx.bundle(record.id)):
            await asyncio.to_thread(shutil.rmtree, directory, True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ctx.exit_dir / record.id)
        ctx.store.forget_sandbox(record.id)
        await asyncio.to_thread(shutil.rmtree, ctx.store.sandbox_dir(record.id), True)

    # PodSandboxStatus and ListPodSandbox.

    def refresh(self, record: SandboxRecord, exited: frozenset[str] | None = None) -> None:
        """A pod whose pause process exited is not ready any more (podstate.py)."""
        podstate.refresh(self.ctx, record, exited)

    async def pod_sandbox_status(
        self, request: cri.PodSandboxStatusRequest
    ) -> cri.PodSandboxStatusResponse:
        record = self.ctx.store.sandbox(request.pod_sandbox_id)
        self.refresh(record)
        if not request.verbose:
            return criviews.status_answer(
                record,
                lambda: cri.PodSandboxStatusResponse(status=criviews.pod_sandbox_status(record)),
            )
        response = cri.PodSandboxStatusResponse(status=criviews.pod_sandbox_status(record))
        response.info["info"] = json.dumps(await asyncio.to_thread(self._verbose, record))
        return response

    def _verbose(self, record: SandboxRecord) -> dict[str, Any]:
        spec = atomicfile.read_json(self.ctx.bundle(record.id) / "config.json", default=None)
        return {
            "pid": record.pid,
            "image": self.ctx.config.pause_image,
            "runtimeHandler": record.runtime_handler,
            "runtimeSpec": spec,
            "config": json_format.MessageToDict(record.config),
            "network": {
                "mode": record.network.mode,
                "netns": record.network.netns,
                "ips": record.network.ips,
                "cniResult": record.network.result,
            },
        }

    async def list_pod_sandbox(
        self, request: cri.ListPodSandboxRequest
    ) -> cri.ListPodSandboxResponse:
        wanted = request.filter
        everything = passes_all(wanted)
        key = self._listed.key(self.ctx.exits.key())
        if everything and (kept := self._listed.get(key)) is not None:
            return kept
        exited = self.ctx.exited()
        items = []
        for record in list(self.ctx.store.sandboxes.values()):
            if record.id not in self.ctx.store.sandbox_ids:
                continue  # still being made
            self.refresh(record, exited)
            if everything or admits(wanted, record.id, record.state, record.config.labels):
                items.append(criviews.pod_sandbox(record))
        response = cri.ListPodSandboxResponse(items=items)
        return self._listed.keep(key, response) if everything else response


async def _both(first: Awaitable[None], second: Awaitable[None]) -> None:
    """Run both to their end, then raise the first one's failure: the caller's clean-up
    must not start while the other still works on the pod."""
    for outcome in await asyncio.gather(first, second, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome
