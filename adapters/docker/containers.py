"""App containers in a pod: Docker containers that join the pause container.

Network and IPC always come from the pod's pause container; the PID namespace
as the config's namespace options say. Each container's output goes through
Docker's bounded json-file log to pycrid's log copier, which writes the CRI
log file at ``log_directory/log_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import time

from google.protobuf import json_format

from pycrid.adapters import criviews, faults
from pycrid.adapters.deadline import set_call_deadline, without_deadline
from pycrid.adapters.docker import inspectviews, naming, spec
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.execsync import exec_sync
from pycrid.adapters.docker.namedcreate import create_container
from pycrid.adapters.docker.store import ContainerRecord
from pycrid.adapters.docker.teardown import release_leftover, remove_docker_container
from pycrid.adapters.errors import CRIError, FailedPrecondition, NotFound
from pycrid.adapters.listfilter import admits, passes_all
from pycrid.adapters.node import confined
from pycrid.adapters.node.programs import check_program
from pycrid.adapters.pidtarget import same_pod_target
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker")

REFRESH_DEADLINE = 30.0
"""Seconds one shared ``docker ps -a`` may take, whoever waits for it."""


def log_path_of(sandbox: cri.PodSandboxConfig, config: cri.ContainerConfig) -> str:
    """The absolute CRI log path, or "" when the pod or the container names none."""
    if not config.log_path or not sandbox.log_directory:
        return ""
    return os.path.join(sandbox.log_directory, config.log_path)


class DockerContainers:
    def __init__(self, ctx: DockerContext) -> None:
        self.ctx = ctx
        self._refreshing: asyncio.Future[None] | None = None
        self._listed: criviews.KeptAnswer[cri.ListContainersResponse] = criviews.KeptAnswer()

    # CreateContainer.

    async def create_container(
        self, request: cri.CreateContainerRequest
    ) -> cri.CreateContainerResponse:
        ctx = self.ctx
        sandbox = ctx.store.sandbox(request.pod_sandbox_id)
        if not sandbox.ready:
            raise FailedPrecondition(f"pod sandbox {sandbox.id[:13]} is not ready")
        config = request.config
        image = await ctx.images.inspect(config.image.image)
        if image is None:
            raise NotFound(f"image {config.image.image!r} not found")
        if not config.command and config.args and not (image.get("Config") or {}).get("Entrypoint"):
            check_program(config.args[0], "args[0]")  # the image runs args as its command
        log_path = log_path_of(sandbox.config, config)
        if log_path:
            # Refused now rather than after Docker has started the container.
            confined.make_file(sandbox.config.log_directory, log_path)
        options = config.linux.security_context.namespace_options
        target = ""
        if options.pid == cri.TARGET:
            target = same_pod_target(
                options.target_id,
                sandbox.id,
                ctx.store.container_ids.resolve,
                lambda full: ctx.store.container(full).sandbox_id,
            )
        name = naming.container_name(config.metadata, sandbox.config.metadata, ctx.instance)
        plan = spec.ContainerPlan(
            image_id=image["Id"],
            name=name,
            labels=naming.container_labels(config, ctx.instance, sandbox.id, log_path),
            sandbox_id=sandbox.id,
            sandbox_config=sandbox.config,
            runtime=sandbox.runtime_handler,
            resolv_conf_path=(
                str(ctx.resolv_conf_path(sandbox.id))
                if spec.wants_own_resolv_conf(sandbox.config)
                else ""
            ),
            pid_target_id=target,
            host=ctx.host,
            systemd_cgroups=ctx.systemd_cgroups,
        )
        body = spec.container_create_body(config, plan)
        container_id, retried = await create_container(ctx, body, name, config)
        if retried:
            return cri.CreateContainerResponse(container_id=container_id)
        faults.reach("docker.create.after-create")
        record = ContainerRecord(
            id=container_id,
            sandbox_id=sandbox.id,
            config=config,
            log_path=log_path,
            created_at=0,
            image_id=image["Id"],
            image_ref=ctx.images.image_ref(image, config.image.image),
            resources=config.linux.resources,
        )
        ctx.store.add_container(record, published=False)
        try:
            inspect = await ctx.client.inspect_container(container_id)
        except BaseException:
            ctx.store.discard_container(container_id)
            with without_deadline(), contextlib.suppress(Exception):
                await asyncio.shield(ctx.client.remove_container(container_id, force=True))
            raise
        record.created_at = naming.docker_time_ns(inspect.get("Created"))
        record.update(inspect)
        ctx.store.publish_container(container_id)
        ctx.store.changed(record)
        log.info(
            "container %s (%s) created in pod sandbox %s",
            container_id[:13],
            config.metadata.name,
            sandbox.id[:13],
        )
        return cri.CreateContainerResponse(container_id=container_id)

    # StartContainer.

    async def start_container(
        self, request: cri.StartContainerRequest
    ) -> cri.StartContainerResponse:
        record = self.ctx.store.container(request.container_id)
        async with record.lock:
            if not self._vouched(record):
                await self._inspect(record)
            if record.state != cri.CONTAINER_CREATED:
                raise FailedPrecondition(
                    f"container {record.id[:13]} is {cri.ContainerState.Name(record.state)}, "
                    "not CONTAINER_CREATED"
                )
            sandbox = self.ctx.store.sandboxes.get(record.sandbox_id)
            if sandbox is None or not sandbox.ready:
                raise FailedPrecondition(f"pod sandbox {record.sandbox_id[:13]} is not ready")
            try:
                await self.ctx.client.start_container(record.id)
                faults.reach("docker.start.after-docker-start")
            finally:
                with without_deadline(), contextlib.suppress(NotFound):
                    await self._inspect(record)
            if record.log_path:
                try:
                    await self.ctx.log_copiers.start(
                        record.id,
                        record.log_path,
                        record.config.tty,
                        sandbox.config.log_directory or None,
                    )
                except BaseException:
                    # No log, no run: a container whose output goes nowhere is not started.
                    log.warning("container %s: no log copy, stopping it", record.id[:13])
                    with without_deadline(), contextlib.suppress(CRIError):
                        await self.ctx.client.stop_container(record.id, 0)
                        await self._inspect(record)
                    raise
        return cri.StartContainerResponse()

    # StopContainer and RemoveContainer.

    async def stop_container(self, request: cri.StopContainerRequest) -> cri.StopContainerResponse:
        await self.stop_one(request.container_id, request.timeout)
        return cri.StopContainerResponse()

    async def stop_one(self, container_id: str, timeout: int) -> None:
        """SIGTERM (or the image's stop signal), SIGKILL after ``timeout`` seconds."""
        record = self.ctx.store.containers.get(container_id)
        if record is None:
            return  # gone: the CRI makes Stop succeed
        async with record.lock:
            try:
                if record.state == cri.CONTAINER_RUNNING or not record.finished_known:
                    await self.ctx.client.stop_container(record.id, max(0, timeout))
                    faults.reach("docker.stop.after-docker-stop")
                await self._inspect(record)
            except NotFound:
                self._forget(record.id)
                return
            await self._settle(record)

    async def remove_container(
        self, request: cri.RemoveContainerRequest
    ) -> cri.RemoveContainerResponse:
        await self.remove_one(request.container_id)
        return cri.RemoveContainerResponse()

    async def remove_one(self, container_id: str) -> None:
        record = self.ctx.store.containers.get(container_id)
        if record is None:
            self.ctx.store.discard_container(container_id)
            return  # gone: the CRI makes Remove succeed
        async with record.lock:
            await remove_docker_container(self.ctx, record)
            await self.ctx.log_copiers.stop(record.id, remove=True)
            self._forget(record.id)
        log.info("container %s removed", container_id[:13])

    def _forget(self, container_id: str) -> None:
        self.ctx.store.files.delete_container(container_id)
        if not self.ctx.log_copiers.is_copying(container_id):
            self.ctx.log_copiers.forget(container_id)
        record = self.ctx.store.discard_container(container_id)
        if record is not None:
            self.ctx.store.gone(container_id, record.sandbox_id)

    # ContainerStatus and ListContainers.

    def _vouched(self, record: ContainerRecord) -> bool:
        """Whether memory can answer for the record without asking Docker (store.py)."""
        return record.finished_known or (self.ctx.store.live and record.details_current)

    async def _inspect(self, record: ContainerRecord) -> None:
        try:
            record.update(await self.ctx.client.inspect_container(record.id))
        except NotFound:
            self._forget(record.id)
            raise NotFound(f"container {record.id!r} not found") from None
        self.ctx.store.changed(record)

    async def _settle(self, record: ContainerRecord) -> None:
        """An exited container's output is all in its CRI log before its exit is reported.

        Readers (kubelet, critest) read the log as soon as they see EXITED.
        """
        if record.state == cri.CONTAINER_EXITED and record.log_path and not record.log_drained:
            await self.ctx.log_copiers.stop(record.id)
            record.log_drained = True

    async def container_status(
        self, request: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse:
        record = self.ctx.store.container(request.container_id)
        if not self._vouched(record):
            await self._inspect(record)
        await self._settle(record)
        config = record.config

        def answer() -> cri.ContainerStatusResponse:
            return cri.ContainerStatusResponse(status=criviews.container_status(record))

        response = answer() if request.verbose else criviews.status_answer(record, answer)
        if request.verbose:
            inspect = await self.ctx.client.inspect_container(record.id)
            host = inspect.get("HostConfig") or {}
            response.info["info"] = json.dumps(
                {
                    "pid": record.pid,
                    "sandboxID": record.sandbox_id,
                    "runtimeType": host.get("Runtime") or "runc",
                    "runtimeSpec": inspectviews.runtime_spec(inspect),
                    "dockerState": record.docker_state,
                    "config": json_format.MessageToDict(config),
                    "imageID": record.image_id,
                }
            )
        if response.status.state == cri.CONTAINER_EXITED:
            # Once a client sees EXITED, the container's log file is complete.
            await self.ctx.log_copiers.wait_copied(record.id)
        return response

    async def refresh_all(self, *, even_if_live: bool = False) -> None:
        """One ``docker ps -a`` brings every state up to date; concurrent callers share it.

        A live store is up to date already (store.py), unless told otherwise.
        """
        if self.ctx.store.live and not even_if_live:
            if self._refreshing is not None and not self._refreshing.done():
                # Catching up after an event (a removal behind pycrid's back).
                await asyncio.shield(self._refreshing)
            return
        if self._refreshing is None or self._refreshing.done():
            # A context of its own: the shared refresh must not carry the
            # deadline of whichever caller happened to start it.
            self._refreshing = asyncio.get_running_loop().create_task(
                self._refresh_all(), context=contextvars.Context()
            )
        await asyncio.shield(self._refreshing)

    async def _refresh_all(self) -> None:
        set_call_deadline(REFRESH_DEADLINE)
        ctx = self.ctx
        started = time.monotonic()
        listed = await ctx.list_containers()
        states = {summary["Id"]: summary.get("State") or "" for summary in listed}
        published_pods = set(ctx.store.sandbox_ids)
        for gone in ctx.store.apply_listing(states, started):
            log.info("%s is gone from docker; forgotten", gone[:13])
            if gone in published_pods:
                await release_leftover(ctx, gone)
            ctx.store.files.delete_container(gone)
            if not ctx.log_copiers.is_copying(gone):
                ctx.log_copiers.forget(gone)

    async def list_containers(
        self, request: cri.ListContainersRequest
    ) -> cri.ListContainersResponse:
        await self.refresh_all()
        wanted = request.filter
        everything = passes_all(wanted)
        key = self._listed.key()
        if everything and (kept := self._listed.get(key)) is not None:
            return kept  # kept only when every exited container had settled
        unsettled = [
            record
            for record in self.ctx.store.containers.values()
            if record.state == cri.CONTAINER_EXITED and not record.log_drained
        ]
        if unsettled:
            await asyncio.gather(*(self._settle(record) for record in unsettled))
        containers = []
        for record in list(self.ctx.store.containers.values()):
            if record.id not in self.ctx.store.container_ids:
                continue  # still being created
            if wanted.pod_sandbox_id and record.sandbox_id != wanted.pod_sandbox_id:
                continue
            if everything or admits(wanted, record.id, record.state, record.config.labels):
                containers.append(criviews.container(record))
        response = cri.ListContainersResponse(containers=containers)
        if everything and not unsettled:
            self._listed.keep(key, response)
        return response

    # UpdateContainerResources.

    async def update_container_resources(
        self, request: cri.UpdateContainerResourcesRequest
    ) -> cri.UpdateContainerResourcesResponse:
        record = self.ctx.store.container(request.container_id)
        fields = spec.update_body(request.linux, self.ctx.host)
        async with record.lock:
            if fields:
                await self.ctx.client.update_container(record.id, fields)
            resources = cri.LinuxContainerResources()
            resources.CopyFrom(request.linux)
            if not resources.oom_score_adj:
                resources.oom_score_adj = record.resources.oom_score_adj  # fixed at creation
            await self.ctx.store.files.save_container_resources(record.id, resources)
            record.resources = resources
        return cri.UpdateContainerResourcesResponse()

    # The container's log and ExecSync.

    async def reopen_container_log(
        self, request: cri.ReopenContainerLogRequest
    ) -> cri.ReopenContainerLogResponse:
        info = await self.ctx.client.inspect_container(request.container_id)
        if not info.get("State", {}).get("Running"):
            # The CRI allows an error here, and then no new file may appear.
            raise FailedPrecondition("container is not running")
        await self.ctx.log_copiers.reopen(request.container_id)
        return cri.ReopenContainerLogResponse()

    async def exec_sync(self, request: cri.ExecSyncRequest) -> cri.ExecSyncResponse:
        return await exec_sync(self.ctx.client, request.container_id, request.cmd, request.timeout)
