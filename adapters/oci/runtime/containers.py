"""Containers on runc under conmon: create, start, stop, remove, status, exec.

CreateContainer writes the record first (so that recovery can undo a
half-made container), then the rootfs, the bundle, and has conmon run
``runc create``: the container's process exists from then on, waiting for
``runc start``. conmon writes the CRI log itself and, when the process
exits, its exit code to ``<container dir>/exit`` (and ``oom`` beside it
when the kernel killed it for memory). The record learns of the exit from
those files (``refresh``), on every status or list call.

StartContainer writes the time it asks for the start before ``runc start``:
after a crash between the two, ``settle_start`` asks runc whether the
process was started (recovery does it for every such record), so a running
container is never left CREATED and its exit is read when it comes.

StopContainer sends the stop signal (the CRI's, else the image's, else
SIGTERM), waits ``timeout`` seconds, then SIGKILLs every process of the
container and waits for conmon's exit file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from pycrid.adapters import criviews, faults
from pycrid.adapters.deadline import without_deadline
from pycrid.adapters.errors import (
    AlreadyExists,
    CRIError,
    FailedPrecondition,
    Internal,
    NotFound,
    backend_failure,
)
from pycrid.adapters.listfilter import admits, passes_all
from pycrid.adapters.node import atomicfile, confined
from pycrid.adapters.node.imageref import repo_digest_for
from pycrid.adapters.node.logfileerror import log_file_error
from pycrid.adapters.node.programs import check_program
from pycrid.adapters.oci.images.rootfs import prepare_rootfs, remove_rootfs
from pycrid.adapters.oci.images.service import OciImages, find_image
from pycrid.adapters.oci.images.store import ImageRecord
from pycrid.adapters.oci.runtime import conmon, podstate, rootfscheck, userns
from pycrid.adapters.oci.runtime.context import OciContext
from pycrid.adapters.oci.runtime.imageconfig import ImageConfig
from pycrid.adapters.oci.runtime.mounts import image_volumes
from pycrid.adapters.oci.runtime.resources import linux_resources
from pycrid.adapters.oci.runtime.spec import container_spec
from pycrid.adapters.oci.runtime.store import ContainerRecord, SandboxRecord
from pycrid.adapters.pidtarget import same_pod_target
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.oci")

KILL_WAIT = 10.0
"""Seconds for conmon to report an exit after SIGKILL."""
POLL_INTERVAL = 0.05
MONITOR_RECHECK = 5.0
"""Seconds a conmon seen running is taken to run still (see _monitor_running)."""


class RuntimeImages:
    """The images containers run, from the oci image store."""

    def __init__(self, images: OciImages) -> None:
        self.service = images

    def find(self, name: str) -> ImageRecord:
        record = find_image(self.service.store.records(), name)
        if record is None:
            raise NotFound(f"image {name[:128]!r} is not present: pull it first")
        return record

    async def ensure(self, name: str) -> ImageRecord:
        """The image, pulled (through the mirrors) when missing."""
        record = find_image(self.service.store.records(), name)
        if record is None:
            await self.service.pull_image(cri.PullImageRequest(image=cri.ImageSpec(image=name)))
            record = self.find(name)
        return record

    def config(self, record: ImageRecord) -> ImageConfig:
        return ImageConfig.from_blob(self.service.store.read_blob(record.id))


def stop_signal(config: cri.ContainerConfig, image: ImageConfig | None) -> int:
    """The CRI's stop signal, else the image's, else SIGTERM."""
    if config.stop_signal:
        name = cri.Signal.Name(config.stop_signal)
        with contextlib.suppress(AttributeError):
            return int(getattr(signal, name))
    if image is not None and image.stop_signal:
        text = image.stop_signal.upper()
        if text.isdigit():
            return int(text)
        with contextlib.suppress(AttributeError):
            return int(getattr(signal, text if text.startswith("SIG") else "SIG" + text))
    return int(signal.SIGTERM)


class OciContainers:
    """The containers concern of the oci adapter."""

    def __init__(self, ctx: OciContext) -> None:
        self.ctx = ctx
        self.images = RuntimeImages(ctx.images)
        self._specs: dict[str, dict[str, Any]] = {}
        self._listed: criviews.KeptAnswer[cri.ListContainersResponse] = criviews.KeptAnswer()
        self._monitor_seen: dict[str, float] = {}
        """When each container's conmon was last seen running (monotonic seconds)."""

    # Paths and the bundle's spec.

    def persist_dir(self, container_id: str) -> Any:
        return self.ctx.store.container_dir(container_id)

    def spec(self, container_id: str) -> dict[str, Any]:
        """The container's config.json (read once)."""
        spec = self._specs.get(container_id)
        if spec is None:
            spec = atomicfile.read_json(self.ctx.bundle(container_id) / "config.json", default={})
            self._specs[container_id] = spec
        return spec

    # CreateContainer.

    async def create_container(
        self, request: cri.CreateContainerRequest
    ) -> cri.CreateContainerResponse:
        ctx = self.ctx
        sandbox = ctx.store.sandbox(request.pod_sandbox_id)
        podstate.refresh(self.ctx, sandbox)
        if not sandbox.ready:
            raise FailedPrecondition(f"pod sandbox {sandbox.id[:13]} is not ready")
        config = request.config
        options = config.linux.security_context.namespace_options
        if options.pid == cri.TARGET:
            same_pod_target(
                options.target_id,
                sandbox.id,
                ctx.store.container_ids.resolve,
                lambda full: ctx.store.container(full).sandbox_id,
            )
        meta = config.metadata
        existing = next(
            (
                r
                for r in ctx.store.containers_of(sandbox.id)
                if (r.config.metadata.name, r.config.metadata.attempt) == (meta.name, meta.attempt)
            ),
            None,
        )
        if existing is not None:
            if existing.config == config:
                # kubelet's retry of a call whose answer it lost: the same container.
                return cri.CreateContainerResponse(container_id=existing.id)
            raise AlreadyExists(
                f"container name {meta.name[:200]!r} (attempt {meta.attempt}) is taken "
                f"by {existing.id[:13]}"
            )
        image = self.images.find(config.image.image)
        log_path = ""
        if config.log_path and sandbox.config.log_directory:
            log_path = os.path.join(sandbox.config.log_directory, config.log_path)
        record = ContainerRecord(
            id=secrets.token_hex(32),
            sandbox_id=sandbox.id,
            config=config,
            image_name=config.image.image,
            image_id=image.id,
            image_ref=_image_ref(config.image.image, image),
            log_path=log_path,
            created_at=time.time_ns(),
            resources=config.linux.resources,
        )
        await ctx.store.save_container(record)
        faults.reach("oci.create.after-record")
        try:
            await self._make(record, sandbox, image)
        except BaseException:
            log.warning("container %s could not be created; removing it", record.id[:13])
            with without_deadline():
                await asyncio.shield(self._remove(record))
            raise
        ctx.store.publish_container(record.id)
        ctx.store.changed(record)  # listed now: the feed hears of it
        return cri.CreateContainerResponse(container_id=record.id)

    async def _make(
        self, record: ContainerRecord, sandbox: SandboxRecord, image: ImageRecord
    ) -> None:
        ctx = self.ctx
        config = record.config
        container_dir = ctx.store.container_dir(record.id)
        ids = userns.PodIds.of(sandbox.config.linux.security_context.namespace_options)
        staging = userns.staging_dir(ctx.run_dir, record.id)
        if ids is None:
            rootfs = await prepare_rootfs(ctx.images.store, image, container_dir / "fs", record.id)
        else:
            rootfs = await userns.mount_rootfs(
                ctx.images.store, image, container_dir / "fs", record.id, staging, ids
            )
        image_config = self.images.config(image)
        volumes = {}
        for path in image_volumes(image_config.volumes, list(config.mounts)):
            host = container_dir / "volumes" / path.strip("/").replace("/", "_")
            host.mkdir(parents=True, exist_ok=True)
            if ids is not None:
                userns.give_to_root([host], ids)
            volumes[path] = str(host)
        notes: list[str] = []
        idmapped = await userns.stage_cri_mounts(list(config.mounts), ids, staging, notes)
        try:
            await self._create(record, sandbox, image_config, rootfs, volumes, idmapped, ids, notes)
        finally:
            # runc create has bound them into the container, or failed.
            userns.clear_staging(staging)

    async def _create(
        self,
        record: ContainerRecord,
        sandbox: SandboxRecord,
        image_config: ImageConfig,
        rootfs: Path,
        volumes: dict[str, str],
        idmapped: dict[int, str],
        ids: userns.PodIds | None,
        notes: list[str],
    ) -> None:
        """The bundle, then ``runc create`` under conmon."""
        ctx = self.ctx
        config = record.config
        container_dir = ctx.store.container_dir(record.id)
        generated = container_spec(
            config,
            sandbox.config,
            image_config,
            container_id=record.id,
            rootfs=str(rootfs),
            pod=podstate.pod_facts(self.ctx, sandbox),
            node=ctx.node,
            image_name=record.image_name,
            volumes=volumes,
            target_pid=self._target_pid(config),
            idmapped_sources=idmapped,
        )
        bundle = ctx.bundle(record.id)
        # The bundle matters only while its processes run: no fsync for it.
        await atomicfile.write_json_async(bundle / "config.json", generated.spec, durable=False)
        self._specs[record.id] = generated.spec
        runtime = None
        if ids is not None:
            runtime = userns.runtime_for(rootfs, ids, bundle, ctx.conmon.runtime_binary, notes)
        for note in [*notes, *generated.notes]:
            log.info("container %s: %s", record.id[:13], note)
        check_program(generated.spec["process"]["args"][0], "the container's program")
        await asyncio.to_thread(
            rootfscheck.check_process, rootfs, generated.spec, _program_field(config, image_config)
        )
        log_path = record.log_path or str(bundle / "output.log")
        if record.log_path:
            # conmon follows symlinks and waits on a FIFO: the file is made here
            # first, below the pod's log directory and following none.
            root = sandbox.config.log_directory
            try:
                confined.make_file(root, record.log_path)
            except OSError as e:
                raise log_file_error(root, config.log_path, e) from None
        with backend_failure(f"container {record.id[:13]} could not be created"):
            record.pid = await ctx.conmon.create(
                record.id,
                bundle,
                log_path,
                ctx.exit_dir,
                container_dir,
                tty=config.tty,
                stdin=config.stdin,
                stdin_once=config.stdin_once,
                name=f"{sandbox.config.metadata.name}_{config.metadata.name}",
                runtime=runtime,
            )
        faults.reach("oci.create.after-conmon-create")
        await ctx.store.save_container(record)

    def _target_pid(self, config: cri.ContainerConfig) -> int:
        options = config.linux.security_context.namespace_options
        if options.pid != cri.TARGET:
            return 0
        target = self.ctx.store.containers.get(
            self.ctx.store.container_ids.resolve(options.target_id)
        )
        if target is None:
            raise NotFound(f"target container {options.target_id[:13]} not found")
        return target.pid

    # StartContainer.

    async def start_container(
        self, request: cri.StartContainerRequest
    ) -> cri.StartContainerResponse:
        record = self.ctx.store.container(request.container_id)
        async with record.lock:
            await self.settle_start(record)
            await self.refresh(record)
            if record.state != cri.CONTAINER_CREATED:
                raise FailedPrecondition(
                    f"container {record.id[:13]} is {cri.ContainerState.Name(record.state)}, "
                    "not CONTAINER_CREATED"
                )
            sandbox = self.ctx.store.sandbox(record.sandbox_id)
            podstate.refresh(self.ctx, sandbox)
            if not sandbox.ready:
                raise FailedPrecondition(f"pod sandbox {sandbox.id[:13]} is not ready")
            # The intent first: a crash after runc started the process but
            # before the record says so is settled by settle_start.
            record.starting_at = time.time_ns()
            await self.ctx.store.save_container(record)
            faults.reach("oci.start.before-runc-start")
            try:
                with backend_failure(f"container {record.id[:13]} could not be started"):
                    await self.ctx.runc.start(record.id)
            except CRIError as e:
                if await self._runs(record):
                    # runc started it, then reported a failure (or another start
                    # after a crash got there first): it runs, so it is RUNNING.
                    record.started_at = record.starting_at
                    await self.ctx.store.save_container(record)
                    return cri.StartContainerResponse()
                record.started_at = record.finished_at = time.time_ns()
                record.exit_code = 128
                record.reason = "StartError"
                record.message = str(e)[:1024]
                await self.ctx.store.save_container(record)
                raise
            faults.reach("oci.start.after-runc-start")
            record.started_at = time.time_ns()
            await self.ctx.store.save_container(record)
        return cri.StartContainerResponse()

    async def _runs(self, record: ContainerRecord) -> bool:
        with contextlib.suppress(CRIError):
            state = await self.ctx.runc.state(record.id)
            return state is not None and state.status in ("running", "paused")
        return False

    async def settle_start(self, record: ContainerRecord) -> None:
        """Decide, from runc, a start that was asked for but never recorded.

        runc says "created" while the process still waits for ``runc start``:
        the start did not happen and the container stays CREATED. Any other
        answer means it did (the process runs, or ran and conmon saw it exit),
        so the container is RUNNING from the moment the start was asked for,
        and ``refresh`` reads its exit when it comes.
        """
        if not record.starting_at or record.started_at or record.finished_at:
            return
        state = await self.ctx.runc.state(record.id)
        if state is not None and state.status == "created":
            log.info("container %s: its start never happened", record.id[:13])
            record.starting_at = 0
        else:
            status = state.status if state is not None else "gone"
            log.info("container %s was started (runc: %s)", record.id[:13], status)
            record.started_at = record.starting_at
        await self.ctx.store.save_container(record)

    # StopContainer and RemoveContainer.

    async def stop_container(self, request: cri.StopContainerRequest) -> cri.StopContainerResponse:
        await self.stop_one(request.container_id, request.timeout)
        return cri.StopContainerResponse()

    async def stop_one(self, container_id: str, timeout: int) -> None:
        record = self.ctx.store.containers.get(container_id)
        if record is None:
            return  # gone: the CRI makes Stop succeed
        async with record.lock:
            await self._stop(record, timeout)

    async def _stop(self, record: ContainerRecord, timeout: int) -> None:
        await self.refresh(record)
        if record.state != cri.CONTAINER_RUNNING:
            return
        if timeout > 0:
            image = None
            with contextlib.suppress(CRIError):
                image = self.images.config(self.images.find(record.image_id))
            with contextlib.suppress(NotFound, FailedPrecondition):
                await self.ctx.runc.kill(record.id, stop_signal(record.config, image))
            faults.reach("oci.stop.after-signal")
            if await self._wait_exit(record, timeout):
                return
        with contextlib.suppress(NotFound, FailedPrecondition):
            await self.ctx.runc.kill(record.id, signal.SIGKILL, all_processes=True)
        faults.reach("oci.stop.after-sigkill")
        if not await self._wait_exit(record, KILL_WAIT):
            log.warning("container %s: no exit reported after SIGKILL", record.id[:13])

    async def _wait_exit(self, record: ContainerRecord, seconds: float) -> bool:
        give_up = time.monotonic() + seconds
        while True:
            await self.refresh(record)
            if record.state == cri.CONTAINER_EXITED:
                return True
            if time.monotonic() >= give_up:
                return False
            await asyncio.sleep(POLL_INTERVAL)

    async def remove_container(
        self, request: cri.RemoveContainerRequest
    ) -> cri.RemoveContainerResponse:
        await self.remove_one(request.container_id)
        return cri.RemoveContainerResponse()

    async def remove_one(self, container_id: str) -> None:
        record = self.ctx.store.containers.get(container_id)
        if record is None:
            return  # gone: the CRI makes Remove succeed
        async with record.lock:
            await self._stop(record, 0)
            await self._remove(record)

    async def _remove(self, record: ContainerRecord) -> None:
        """Everything of a container, made fully or in part; safe to repeat."""
        ctx = self.ctx
        await ctx.runc.delete(record.id, force=True)
        container_dir = ctx.store.container_dir(record.id)
        userns.clear_staging(userns.staging_dir(ctx.run_dir, record.id))
        await remove_rootfs(ctx.images.store, container_dir / "fs", record.id)
        await asyncio.to_thread(shutil.rmtree, ctx.bundle(record.id), True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ctx.exit_dir / record.id)
        ctx.store.forget_container(record.id)
        await asyncio.to_thread(shutil.rmtree, container_dir, True)
        self._specs.pop(record.id, None)
        self._monitor_seen.pop(record.id, None)

    # What happened to the process.

    def _monitor_running(self, container_id: str) -> bool:
        """Whether the container's conmon runs, asked of /proc at most every MONITOR_RECHECK s.

        conmon writes the exit file before it exits, so this only catches a
        conmon that died without a word (killed); a few seconds late is soon
        enough, where asking /proc each time was a third of ContainerStatus.
        """
        now = time.monotonic()
        if now - self._monitor_seen.get(container_id, -MONITOR_RECHECK) < MONITOR_RECHECK:
            return True
        if self.ctx.conmon.running(self.ctx.bundle(container_id), container_id):
            self._monitor_seen[container_id] = now
            return True
        self._monitor_seen.pop(container_id, None)
        return False

    async def refresh(self, record: ContainerRecord) -> None:
        """Learn of an exit from conmon's files (the only way pycrid hears of one)."""
        if not record.started_at or record.finished_at:
            return
        in_exit_dir = record.id in self.ctx.exited()
        if not in_exit_dir and self._monitor_running(record.id):
            return
        persist = self.ctx.store.container_dir(record.id)
        exited = conmon.exit_code(persist)
        if exited is None and in_exit_dir:
            # conmon writes both files; the exit directory's may come first.
            exited = conmon.read_exit_file(f"{self.ctx.exit_dir}/{record.id}")
        if exited is None:
            if self._monitor_running(record.id):
                return
            # conmon died without a word (killed, or the node rebooted).
            await asyncio.sleep(0.2)
            exited = conmon.exit_code(persist)
            if exited is None:
                record.finished_at = time.time_ns()
                record.exit_code = 255
                record.reason = "Unknown"
                record.message = "the container's monitor (conmon) is gone"
                await self.ctx.store.save_container(record)
                return
        code, finished = exited
        record.exit_code = code
        record.finished_at = max(finished, record.started_at)
        if conmon.oom_killed(persist):
            record.reason = "OOMKilled"
        else:
            record.reason = "Completed" if code == 0 else "Error"
        await self.ctx.store.save_container(record)

    # ContainerStatus and ListContainers.

    async def container_status(
        self, request: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse:
        record = self.ctx.store.container(request.container_id)
        await self.refresh(record)
        answer = criviews.status_answer(record, lambda: self._status_answer(record))
        if request.verbose:
            config = record.config
            response = cri.ContainerStatusResponse()
            response.CopyFrom(answer)
            response.info["info"] = json.dumps(
                {
                    "pid": record.pid,
                    "sandboxID": record.sandbox_id,
                    "runtimeType": "runc",
                    "runtimeSpec": self.spec(record.id),
                    "config": json_format.MessageToDict(config),
                    "imageID": record.image_id,
                }
            )
            return response
        return answer

    def _status_answer(self, record: ContainerRecord) -> cri.ContainerStatusResponse:
        status = criviews.container_status(record)
        user = self.spec(record.id).get("process", {}).get("user") or {}
        if user:
            status.user.linux.uid = user.get("uid", 0)
            status.user.linux.gid = user.get("gid", 0)
            status.user.linux.supplemental_groups.extend(user.get("additionalGids") or [])
        return cri.ContainerStatusResponse(status=status)

    async def list_containers(
        self, request: cri.ListContainersRequest
    ) -> cri.ListContainersResponse:
        wanted = request.filter
        everything = passes_all(wanted)
        key = self._listed.key(self.ctx.exits.key())
        if everything and (kept := self._listed.get(key)) is not None:
            return kept
        exited = self.ctx.exited()
        containers = []
        for record in list(self.ctx.store.containers.values()):
            if record.id not in self.ctx.store.container_ids:
                continue  # still being made
            if wanted.pod_sandbox_id and record.sandbox_id != wanted.pod_sandbox_id:
                continue
            if record.id in exited:
                await self.refresh(record)
            if everything or admits(wanted, record.id, record.state, record.config.labels):
                containers.append(criviews.container(record))
        response = cri.ListContainersResponse(containers=containers)
        return self._listed.keep(key, response) if everything else response

    # UpdateContainerResources, ReopenContainerLog, ExecSync.

    async def update_container_resources(
        self, request: cri.UpdateContainerResourcesRequest
    ) -> cri.UpdateContainerResourcesResponse:
        record = self.ctx.store.container(request.container_id)
        async with record.lock:
            await self.refresh(record)
            if record.state == cri.CONTAINER_EXITED:
                raise FailedPrecondition(f"container {record.id[:13]} has exited")
            notes: list[str] = []
            resources = linux_resources(request.linux, self.ctx.node, notes)
            with backend_failure(f"container {record.id[:13]}: resources could not be updated"):
                await self.ctx.runc.update(record.id, resources)
            merged = cri.LinuxContainerResources()
            merged.CopyFrom(request.linux)
            if not merged.oom_score_adj:
                merged.oom_score_adj = record.resources.oom_score_adj  # fixed at creation
            record.resources = merged
            await self.ctx.store.save_container(record)
        return cri.UpdateContainerResourcesResponse()

    async def running(self, container_id: str) -> ContainerRecord:
        record = self.ctx.store.container(container_id)
        await self.refresh(record)
        if record.state != cri.CONTAINER_RUNNING:
            raise FailedPrecondition(f"container {record.id[:13]} is not running")
        return record

    async def reopen_container_log(
        self, request: cri.ReopenContainerLogRequest
    ) -> cri.ReopenContainerLogResponse:
        record = await self.running(request.container_id)
        if record.log_path:
            sandbox = self.ctx.store.sandbox(record.sandbox_id)
            # conmon follows symlinks: the file is made here first (see _create),
            # and its temporary file goes, since conmon would open (and truncate)
            # whatever is planted there, through a symlink or waiting on a FIFO.
            confined.make_file(sandbox.config.log_directory, record.log_path)
            confined.remove_beneath(sandbox.config.log_directory, record.log_path + ".tmp")
            await conmon.reopen_log(self.ctx.bundle(record.id), record.log_path)
        return cri.ReopenContainerLogResponse()

    def exec_process(self, record: ContainerRecord, cmd: list[str], tty: bool) -> dict[str, Any]:
        """The container's process with another command: what ``runc exec`` runs."""
        process = dict(self.spec(record.id).get("process") or {})
        process["args"] = cmd
        process["terminal"] = tty
        process.pop("consoleSize", None)
        return process

    async def exec_sync(self, request: cri.ExecSyncRequest) -> cri.ExecSyncResponse:
        record = await self.running(request.container_id)
        try:
            result = await self.ctx.runc.exec_sync(
                record.id,
                self.exec_process(record, list(request.cmd), False),
                request.timeout or None,
            )
        except Internal as e:
            if "exec failed" not in str(e):
                raise
            # The command could not be run at all: answered the way a shell
            # (and Docker) does, so that a probe fails instead of erroring.
            missing = "no such file" in str(e).lower()
            return cri.ExecSyncResponse(stderr=str(e).encode(), exit_code=127 if missing else 126)
        return cri.ExecSyncResponse(
            stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code
        )


def _program_field(config: cri.ContainerConfig, image: ImageConfig) -> str:
    """Which field named the program the container runs, for an error message."""
    if config.command:
        return "command[0]"
    if config.args and not image.entrypoint:
        return "args[0]"
    return "the image's ENTRYPOINT/CMD"


def _image_ref(requested: str, image: ImageRecord) -> str:
    """The repo digest of the repository asked for; another's only when it has none."""
    return (
        repo_digest_for(requested, image.repo_digests)
        or (image.repo_digests[0] if image.repo_digests else "")
        or image.id
    )
