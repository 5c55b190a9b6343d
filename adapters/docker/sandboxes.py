"""Pod sandboxes as pause containers, with their network.

RunPodSandbox creates and starts the pause container, then gives it a network:
in "cni" mode the pause container has Docker's "none" network and pycrid runs
the CNI plugins on its namespace (pinned under the run directory first, so
that DEL works after the pause process is gone); in "docker" mode it is on
Docker's default bridge with the pod's ports published; host-network pods
use the host's. Whatever was set up is saved to the state files before the next step, so
that a crash at any point leaves enough on disk to tear it down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from typing import Any

from google.protobuf import json_format

from pycrid.adapters import criviews, faults
from pycrid.adapters.deadline import without_deadline
from pycrid.adapters.docker import adoptedpods, inspectviews, naming, spec
from pycrid.adapters.docker.containers import DockerContainers
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.namedcreate import create_sandbox
from pycrid.adapters.docker.store import SandboxRecord
from pycrid.adapters.docker.teardown import docker_ips, release_leftover, remove_docker_container
from pycrid.adapters.errors import CRIError, InvalidArgument, NotFound
from pycrid.adapters.listfilter import admits, passes_all
from pycrid.adapters.node import cni, netns
from pycrid.adapters.node.podnetwork import NetworkState
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker")

PAUSE_STOP_TIMEOUT = 10
DOCKER_NETWORK_MODES = {"cni": "none", "docker": "bridge", "host": "host"}


def network_mode(config: cri.PodSandboxConfig, configured: str) -> str:
    """ "host" for host-network pods, else the configured "cni" or "docker"."""
    if config.linux.security_context.namespace_options.network == cri.NODE:
        return "host"
    return configured


class DockerSandboxes:
    def __init__(self, ctx: DockerContext, containers: DockerContainers) -> None:
        self.ctx = ctx
        self.containers = containers
        """To stop and remove a pod's containers."""
        self._listed: criviews.KeptAnswer[cri.ListPodSandboxResponse] = criviews.KeptAnswer()

    # RunPodSandbox.

    async def run_pod_sandbox(self, request: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
        ctx = self.ctx
        config = request.config
        mode = network_mode(config, ctx.config.network.mode)
        network_list = None
        if mode == "cni":
            network_list = cni.load_network(ctx.config.network.cni_conf_dir)
            for plugin in network_list.plugins:
                cni.find_plugin(plugin["type"], ctx.networks.runner.bin_dirs)
        runtime = await self._docker_runtime(request.runtime_handler)
        image_id = await self._pause_image()
        name = naming.sandbox_name(config.metadata, ctx.instance)
        plan = spec.SandboxPlan(
            image=image_id,
            name=name,
            labels=naming.sandbox_labels(config, ctx.instance, request.runtime_handler),
            network_mode=DOCKER_NETWORK_MODES[mode],
            runtime=runtime,
            publish_ports=mode == "docker",
            host=ctx.host,
            systemd_cgroups=ctx.systemd_cgroups,
        )
        body = spec.sandbox_create_body(config, plan)
        sandbox_id, retried = await create_sandbox(ctx, body, name, config)
        if retried:
            return cri.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)
        faults.reach("docker.run.after-create")
        record = SandboxRecord(
            id=sandbox_id,
            config=config,
            runtime_handler=request.runtime_handler,
            created_at=0,
            network=NetworkState(mode=mode),
        )
        try:
            await self._bring_up(record, network_list)
        except BaseException:
            log.warning("pod sandbox %s failed to start; removing it", record.id[:13])
            with without_deadline():
                await asyncio.shield(self._discard(record))
            raise
        ctx.store.publish_sandbox(record.id)
        ctx.store.changed(record)
        log.info(
            "pod sandbox %s started for %s/%s",
            record.id[:13],
            config.metadata.namespace,
            config.metadata.name,
        )
        return cri.RunPodSandboxResponse(pod_sandbox_id=record.id)

    async def _bring_up(self, record: SandboxRecord, network_list: cni.NetworkList | None) -> None:
        ctx = self.ctx
        await ctx.store.files.save_sandbox(record.id, record.network)
        ctx.store.add_sandbox(record, published=False)
        if spec.wants_own_resolv_conf(record.config):
            path = ctx.resolv_conf_path(record.id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(spec.resolv_conf(record.config.dns_config))
            path.chmod(0o644)
        await ctx.client.start_container(record.id)
        faults.reach("docker.run.after-start")
        inspect = await ctx.client.inspect_container(record.id)
        record.update(inspect)
        record.created_at = naming.docker_time_ns(inspect.get("Created"))
        network = record.network
        if network.mode == "cni":
            assert network_list is not None
            netns.pin(record.pid, ctx.networks.netns_path(record.id))

            async def save(state: NetworkState) -> None:
                await ctx.store.files.save_sandbox(record.id, state)

            await ctx.networks.set_up(record.id, record.config, network_list, network, save)
        elif network.mode == "docker":
            network.ips = docker_ips(inspect)
        network.ready = True
        await ctx.store.files.save_sandbox(record.id, network)

    async def _docker_runtime(self, handler: str) -> str:
        """The Docker runtime for a CRI runtime handler ("" is Docker's default)."""
        if not handler:
            return ""
        info = await self.ctx.client.info()
        if handler not in (info.get("Runtimes") or {}):
            raise InvalidArgument(f"runtime handler {handler!r} is not a runtime of this Docker")
        return handler

    async def _pause_image(self) -> str:
        """The pause image's ID, pulled (through the mirrors) when missing."""
        found = await self.ctx.images.ensure(self.ctx.config.pause_image)
        return found["Id"]

    async def _discard(self, record: SandboxRecord) -> None:
        """Remove everything a failed RunPodSandbox made, keeping the first error quiet."""
        try:
            await self._teardown_network(record)
        except CRIError as e:
            log.warning("pod sandbox %s: network teardown failed: %s", record.id[:13], e)
        try:
            await self.ctx.client.remove_container(record.id, force=True, volumes=True)
        except NotFound:
            pass
        except CRIError as e:
            log.warning("pod sandbox %s: removal failed: %s", record.id[:13], e)
        self._forget(record.id)

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
        """The intent on disk first (the network not ready: the pod is NOTREADY),
        then each step; they are idempotent, so a StopPodSandbox after a crash
        finishes them."""
        if record.id not in self.ctx.store.sandboxes:
            return  # removed while this call waited for the pod's lock
        if record.network.ready:
            record.network.ready = False
            await self.ctx.store.files.save_sandbox(record.id, record.network)
            self.ctx.store.changed(record)
        faults.reach("docker.stoppod.after-intent")
        for container in self.ctx.store.containers_of(record.id):
            await self.containers.stop_one(container.id, 0)
        faults.reach("docker.stoppod.after-containers")
        await self._teardown_network(record)
        faults.reach("docker.stoppod.after-network")
        try:
            await self.ctx.client.stop_container(record.id, PAUSE_STOP_TIMEOUT)
            record.update(await self.ctx.client.inspect_container(record.id))
        except NotFound:
            record.docker_state = "exited"
        self.ctx.store.changed(record)

    async def _teardown_network(self, record: SandboxRecord) -> None:
        """CNI DEL (once), and the namespace pin released; saved."""
        if record.network.torn_down:
            return
        await self.ctx.networks.tear_down(record.id, record.config.metadata, record.network)
        if record.id in self.ctx.store.sandboxes:
            await self.ctx.store.files.save_sandbox(record.id, record.network)

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
            await self._teardown_network(record)
            await remove_docker_container(self.ctx, record)
            self._forget(record.id)
        log.info("pod sandbox %s removed", record.id[:13])
        return cri.RemovePodSandboxResponse()

    def _forget(self, sandbox_id: str) -> None:
        ctx = self.ctx
        adoptedpods.forget_sandbox(ctx, sandbox_id)
        netns.unpin(ctx.networks.netns_path(sandbox_id))
        shutil.rmtree(ctx.pod_dir(sandbox_id), ignore_errors=True)
        ctx.store.files.delete_sandbox(sandbox_id)
        if ctx.store.discard_sandbox(sandbox_id) is not None:
            ctx.store.gone(sandbox_id, sandbox_id)

    # PodSandboxStatus and ListPodSandbox.

    async def pod_sandbox_status(
        self, request: cri.PodSandboxStatusRequest
    ) -> cri.PodSandboxStatusResponse:
        record = self.ctx.store.sandbox(request.pod_sandbox_id)
        if record.ready and not (self.ctx.store.live and record.details_current):
            await self._refresh(record)
        if not request.verbose:
            return criviews.status_answer(
                record,
                lambda: cri.PodSandboxStatusResponse(status=criviews.pod_sandbox_status(record)),
            )
        response = cri.PodSandboxStatusResponse(status=criviews.pod_sandbox_status(record))
        if request.verbose:
            info = self._verbose_info(record)
            with contextlib.suppress(NotFound):
                inspect = await self.ctx.client.inspect_container(record.id)
                info["runtimeSpec"] = inspectviews.runtime_spec(inspect)
            response.info["info"] = json.dumps(info)
        return response

    async def _refresh(self, record: SandboxRecord) -> None:
        try:
            record.update(await self.ctx.client.inspect_container(record.id))
        except NotFound:
            await release_leftover(self.ctx, record.id)
            raise NotFound(f"pod sandbox {record.id!r} not found") from None
        self.ctx.store.changed(record)

    def _verbose_info(self, record: SandboxRecord) -> dict[str, Any]:
        network = record.network
        return {
            "pid": record.pid,
            "image": self.ctx.config.pause_image,
            "runtimeHandler": record.runtime_handler,
            "dockerState": record.docker_state,
            "config": json_format.MessageToDict(record.config),
            "network": {
                "mode": network.mode,
                "netns": network.netns,
                "ips": network.ips,
                "cniResult": network.result,
                "torn_down": network.torn_down,
            },
        }

    async def list_pod_sandbox(
        self, request: cri.ListPodSandboxRequest
    ) -> cri.ListPodSandboxResponse:
        await self.containers.refresh_all()
        wanted = request.filter
        everything = passes_all(wanted)
        key = self._listed.key()
        if everything and (kept := self._listed.get(key)) is not None:
            return kept
        items = []
        for record in list(self.ctx.store.sandboxes.values()):
            if record.id not in self.ctx.store.sandbox_ids:
                continue  # still being set up
            if everything or admits(wanted, record.id, record.state, record.config.labels):
                items.append(criviews.pod_sandbox(record))
        response = cri.ListPodSandboxResponse(items=items)
        return self._listed.keep(key, response) if everything else response
