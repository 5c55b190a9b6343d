"""runtime.v1.RuntimeService: validate, resolve IDs, call the adapter.

Handlers stay thin: anything a backend must do differently lives in the
adapter; anything every backend needs (prefix resolution, request checks, the
idempotence rules of the CRI) lives here, once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias, TypeVar
from urllib.parse import urlsplit

import grpc
from google.protobuf.message import Message

from pycrid.adapters.base import (
    Adapter,
    Containers,
    Metrics,
    PodSandboxes,
    Stats,
    Streaming,
)
from pycrid.adapters.config import LimitsConfig
from pycrid.adapters.errors import NotFound, Unimplemented
from pycrid.adapters.idindex import IdIndex
from pycrid.adapters.version import KUBELET_API_VERSION, RUNTIME_API_VERSION, RUNTIME_NAME
from pycrid.api.cri import api_pb2 as cri
from pycrid.api.cri import api_pb2_grpc
from pycrid.server.servicers import validate
from pycrid.server.singleflight import SingleFlight
from pycrid.server.streaming.server import StreamingServer

Context: TypeAlias = grpc.aio.ServicerContext
T = TypeVar("T")
STREAM_BATCH = 500


def batches(items: list, size: int = STREAM_BATCH) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _key(rpc: str, request: Message) -> bytes:
    return rpc.encode() + b"\0" + request.SerializeToString(deterministic=True)


def served(adapter: Adapter, concern: T | None, rpc: str) -> T:
    """The adapter's object for ``rpc``; UNIMPLEMENTED when it has none.

    This is the one way an adapter says it does not support a call.
    """
    if concern is None:
        raise Unimplemented(f"{rpc} is not supported by the {adapter.name} adapter")
    return concern


class RuntimeServicer(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(
        self,
        adapter: Adapter,
        streaming: StreamingServer | None = None,
        limits: LimitsConfig | None = None,
    ) -> None:
        self.adapter = adapter
        self.streaming_server = streaming
        self.limits = limits or LimitsConfig()
        self.creates = SingleFlight()
        """RunPodSandbox and CreateContainer: identical requests are carried out once."""

    # The adapter's concerns, each UNIMPLEMENTED where the adapter has none.

    def _sandboxes(self, rpc: str) -> PodSandboxes:
        return served(self.adapter, self.adapter.sandboxes, rpc)

    def _containers(self, rpc: str) -> Containers:
        return served(self.adapter, self.adapter.containers, rpc)

    def _stats(self, rpc: str) -> Stats:
        return served(self.adapter, self.adapter.stats, rpc)

    def _metrics(self, rpc: str) -> Metrics:
        return served(self.adapter, self.adapter.metrics, rpc)

    def _streaming(self, rpc: str) -> tuple[Streaming, StreamingServer]:
        concern = served(self.adapter, self.adapter.streaming, rpc)
        if self.streaming_server is None:
            raise Unimplemented(f"{rpc}: no streaming server is running")
        return concern, self.streaming_server

    # ID resolution. crictl passes short IDs straight through.

    def _sandbox(self, prefix: str) -> str:
        validate.object_id(prefix, "pod sandbox")
        return self.adapter.sandbox_ids.resolve(prefix)

    def _container(self, prefix: str) -> str:
        validate.object_id(prefix, "container")
        return self.adapter.container_ids.resolve(prefix)

    def _sandbox_or_none(self, prefix: str) -> str | None:
        """For Stop/Remove: the CRI makes them succeed when the object is gone."""
        try:
            return self._sandbox(prefix)
        except NotFound:
            return None

    def _container_or_none(self, prefix: str) -> str | None:
        try:
            return self._container(prefix)
        except NotFound:
            return None

    def _resolve_filter(self, list_filter: object, id_index: IdIndex | None = None) -> bool:
        """Expand the ID prefixes of a list filter in place.

        Returns False when a prefix matches no object, or several: such a
        filter selects nothing.
        """
        fields = (
            ("id", id_index or self.adapter.container_ids),
            ("pod_sandbox_id", self.adapter.sandbox_ids),
        )
        for field, index in fields:
            prefix = getattr(list_filter, field, "")
            if prefix:
                validate.object_id(prefix, f"filter {field}")
                matches = index.matching(prefix)
                if len(matches) != 1:
                    return False
                setattr(list_filter, field, matches[0])
        return True

    # Runtime information.

    async def Version(self, request: cri.VersionRequest, context: Context) -> cri.VersionResponse:
        return cri.VersionResponse(
            version=KUBELET_API_VERSION,
            runtime_name=RUNTIME_NAME,
            runtime_version=self.adapter.runtime_version,
            runtime_api_version=RUNTIME_API_VERSION,
        )

    async def Status(self, request: cri.StatusRequest, context: Context) -> cri.StatusResponse:
        response = await self.adapter.runtime.status(request)
        if request.verbose and self.streaming_server is not None:
            # The address bound, which a configured port 0 does not tell.
            address = urlsplit(self.streaming_server.base_url).netloc
            response.info["streamServerAddress"] = address
        return response

    async def RuntimeConfig(
        self, request: cri.RuntimeConfigRequest, context: Context
    ) -> cri.RuntimeConfigResponse:
        return await self.adapter.runtime.runtime_config(request)

    async def UpdateRuntimeConfig(
        self, request: cri.UpdateRuntimeConfigRequest, context: Context
    ) -> cri.UpdateRuntimeConfigResponse:
        validate.message(request)
        if request.runtime_config.network_config.pod_cidr:
            validate.pod_cidr(request.runtime_config.network_config.pod_cidr)
        return await self.adapter.runtime.update_runtime_config(request)

    # Pod sandboxes.

    async def RunPodSandbox(
        self, request: cri.RunPodSandboxRequest, context: Context
    ) -> cri.RunPodSandboxResponse:
        validate.sandbox_config(request.config, self.limits)
        sandboxes = self._sandboxes("RunPodSandbox")
        return await self.creates.run(
            _key("RunPodSandbox", request), lambda: sandboxes.run_pod_sandbox(request)
        )

    async def StopPodSandbox(
        self, request: cri.StopPodSandboxRequest, context: Context
    ) -> cri.StopPodSandboxResponse:
        sandbox_id = self._sandbox_or_none(request.pod_sandbox_id)
        if sandbox_id is None:
            return cri.StopPodSandboxResponse()
        return await self._sandboxes("StopPodSandbox").stop_pod_sandbox(
            cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)
        )

    async def RemovePodSandbox(
        self, request: cri.RemovePodSandboxRequest, context: Context
    ) -> cri.RemovePodSandboxResponse:
        sandbox_id = self._sandbox_or_none(request.pod_sandbox_id)
        if sandbox_id is None:
            return cri.RemovePodSandboxResponse()
        return await self._sandboxes("RemovePodSandbox").remove_pod_sandbox(
            cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)
        )

    async def PodSandboxStatus(
        self, request: cri.PodSandboxStatusRequest, context: Context
    ) -> cri.PodSandboxStatusResponse:
        resolved = cri.PodSandboxStatusRequest()
        resolved.CopyFrom(request)
        resolved.pod_sandbox_id = self._sandbox(request.pod_sandbox_id)
        return await self._sandboxes("PodSandboxStatus").pod_sandbox_status(resolved)

    async def ListPodSandbox(
        self, request: cri.ListPodSandboxRequest, context: Context
    ) -> cri.ListPodSandboxResponse:
        resolved = cri.ListPodSandboxRequest()
        resolved.CopyFrom(request)
        if not self._resolve_filter(resolved.filter, id_index=self.adapter.sandbox_ids):
            return cri.ListPodSandboxResponse()
        return await self._sandboxes("ListPodSandbox").list_pod_sandbox(resolved)

    async def StreamPodSandboxes(
        self, request: cri.StreamPodSandboxesRequest, context: Context
    ) -> AsyncIterator[cri.StreamPodSandboxesResponse]:
        listed = await self.ListPodSandbox(
            cri.ListPodSandboxRequest(filter=request.filter), context
        )
        for batch in batches(list(listed.items)):
            yield cri.StreamPodSandboxesResponse(pod_sandboxes=batch)

    async def UpdatePodSandboxResources(
        self, request: cri.UpdatePodSandboxResourcesRequest, context: Context
    ) -> cri.UpdatePodSandboxResourcesResponse:
        resolved = cri.UpdatePodSandboxResourcesRequest()
        resolved.CopyFrom(request)
        resolved.pod_sandbox_id = self._sandbox(request.pod_sandbox_id)
        return await served(
            self.adapter, self.adapter.pod_resources, "UpdatePodSandboxResources"
        ).update_pod_sandbox_resources(resolved)

    # Containers.

    async def CreateContainer(
        self, request: cri.CreateContainerRequest, context: Context
    ) -> cri.CreateContainerResponse:
        validate.container_config(request.config, self.limits)
        validate.sandbox_limits(request.sandbox_config, self.limits)
        validate.message(request.sandbox_config, "sandbox_config.")
        resolved = cri.CreateContainerRequest()
        resolved.CopyFrom(request)
        resolved.pod_sandbox_id = self._sandbox(request.pod_sandbox_id)
        containers = self._containers("CreateContainer")
        return await self.creates.run(
            _key("CreateContainer", resolved), lambda: containers.create_container(resolved)
        )

    async def StartContainer(
        self, request: cri.StartContainerRequest, context: Context
    ) -> cri.StartContainerResponse:
        return await self._containers("StartContainer").start_container(
            cri.StartContainerRequest(container_id=self._container(request.container_id))
        )

    async def StopContainer(
        self, request: cri.StopContainerRequest, context: Context
    ) -> cri.StopContainerResponse:
        validate.stop_timeout(request.timeout)
        container_id = self._container_or_none(request.container_id)
        if container_id is None:
            return cri.StopContainerResponse()
        return await self._containers("StopContainer").stop_container(
            cri.StopContainerRequest(container_id=container_id, timeout=request.timeout)
        )

    async def RemoveContainer(
        self, request: cri.RemoveContainerRequest, context: Context
    ) -> cri.RemoveContainerResponse:
        container_id = self._container_or_none(request.container_id)
        if container_id is None:
            return cri.RemoveContainerResponse()
        return await self._containers("RemoveContainer").remove_container(
            cri.RemoveContainerRequest(container_id=container_id)
        )

    async def ListContainers(
        self, request: cri.ListContainersRequest, context: Context
    ) -> cri.ListContainersResponse:
        resolved = cri.ListContainersRequest()
        resolved.CopyFrom(request)
        if not self._resolve_filter(resolved.filter):
            return cri.ListContainersResponse()
        return await self._containers("ListContainers").list_containers(resolved)

    async def StreamContainers(
        self, request: cri.StreamContainersRequest, context: Context
    ) -> AsyncIterator[cri.StreamContainersResponse]:
        listed = await self.ListContainers(
            cri.ListContainersRequest(filter=request.filter), context
        )
        for batch in batches(list(listed.containers)):
            yield cri.StreamContainersResponse(containers=batch)

    async def ContainerStatus(
        self, request: cri.ContainerStatusRequest, context: Context
    ) -> cri.ContainerStatusResponse:
        return await self._containers("ContainerStatus").container_status(
            cri.ContainerStatusRequest(
                container_id=self._container(request.container_id), verbose=request.verbose
            )
        )

    async def UpdateContainerResources(
        self, request: cri.UpdateContainerResourcesRequest, context: Context
    ) -> cri.UpdateContainerResourcesResponse:
        validate.message(request)
        validate.resources(request.linux)
        resolved = cri.UpdateContainerResourcesRequest()
        resolved.CopyFrom(request)
        resolved.container_id = self._container(request.container_id)
        return await self._containers("UpdateContainerResources").update_container_resources(
            resolved
        )

    async def ReopenContainerLog(
        self, request: cri.ReopenContainerLogRequest, context: Context
    ) -> cri.ReopenContainerLogResponse:
        return await self._containers("ReopenContainerLog").reopen_container_log(
            cri.ReopenContainerLogRequest(container_id=self._container(request.container_id))
        )

    async def ExecSync(
        self, request: cri.ExecSyncRequest, context: Context
    ) -> cri.ExecSyncResponse:
        validate.message(request)
        validate.exec_command(request.cmd)
        validate.stop_timeout(request.timeout)
        resolved = cri.ExecSyncRequest()
        resolved.CopyFrom(request)
        resolved.container_id = self._container(request.container_id)
        return await self._containers("ExecSync").exec_sync(resolved)

    async def CheckpointContainer(
        self, request: cri.CheckpointContainerRequest, context: Context
    ) -> cri.CheckpointContainerResponse:
        resolved = cri.CheckpointContainerRequest()
        resolved.CopyFrom(request)
        resolved.container_id = self._container(request.container_id)
        return await served(
            self.adapter, self.adapter.checkpoints, "CheckpointContainer"
        ).checkpoint_container(resolved)

    # Streaming sessions.

    async def Exec(self, request: cri.ExecRequest, context: Context) -> cri.ExecResponse:
        validate.message(request)
        validate.exec_command(request.cmd)
        validate.require(
            request.stdin or request.stdout or request.stderr,
            "one of stdin, stdout or stderr must be requested",
        )
        validate.require(
            not (request.tty and request.stderr), "tty and stderr cannot both be requested"
        )
        resolved = cri.ExecRequest()
        resolved.CopyFrom(request)
        resolved.container_id = self._container(request.container_id)
        streaming, server = self._streaming("Exec")
        await streaming.exec(resolved)
        return server.get_exec(resolved)

    async def Attach(self, request: cri.AttachRequest, context: Context) -> cri.AttachResponse:
        validate.require(
            request.stdin or request.stdout or request.stderr,
            "one of stdin, stdout or stderr must be requested",
        )
        resolved = cri.AttachRequest()
        resolved.CopyFrom(request)
        resolved.container_id = self._container(request.container_id)
        streaming, server = self._streaming("Attach")
        await streaming.attach(resolved)
        return server.get_attach(resolved)

    async def PortForward(
        self, request: cri.PortForwardRequest, context: Context
    ) -> cri.PortForwardResponse:
        validate.require(
            all(0 < port <= 65535 for port in request.port), "ports must be within 1..65535"
        )
        resolved = cri.PortForwardRequest()
        resolved.CopyFrom(request)
        resolved.pod_sandbox_id = self._sandbox(request.pod_sandbox_id)
        streaming, server = self._streaming("PortForward")
        await streaming.port_forward(resolved)
        return server.get_port_forward(resolved)

    # Stats and metrics.

    async def ContainerStats(
        self, request: cri.ContainerStatsRequest, context: Context
    ) -> cri.ContainerStatsResponse:
        return await self._stats("ContainerStats").container_stats(
            cri.ContainerStatsRequest(container_id=self._container(request.container_id))
        )

    async def ListContainerStats(
        self, request: cri.ListContainerStatsRequest, context: Context
    ) -> cri.ListContainerStatsResponse:
        resolved = cri.ListContainerStatsRequest()
        resolved.CopyFrom(request)
        if not self._resolve_filter(resolved.filter):
            return cri.ListContainerStatsResponse()
        return await self._stats("ListContainerStats").list_container_stats(resolved)

    async def StreamContainerStats(
        self, request: cri.StreamContainerStatsRequest, context: Context
    ) -> AsyncIterator[cri.StreamContainerStatsResponse]:
        listed = await self.ListContainerStats(
            cri.ListContainerStatsRequest(filter=request.filter), context
        )
        for batch in batches(list(listed.stats)):
            yield cri.StreamContainerStatsResponse(container_stats=batch)

    async def PodSandboxStats(
        self, request: cri.PodSandboxStatsRequest, context: Context
    ) -> cri.PodSandboxStatsResponse:
        return await self._stats("PodSandboxStats").pod_sandbox_stats(
            cri.PodSandboxStatsRequest(pod_sandbox_id=self._sandbox(request.pod_sandbox_id))
        )

    async def ListPodSandboxStats(
        self, request: cri.ListPodSandboxStatsRequest, context: Context
    ) -> cri.ListPodSandboxStatsResponse:
        resolved = cri.ListPodSandboxStatsRequest()
        resolved.CopyFrom(request)
        if not self._resolve_filter(resolved.filter, id_index=self.adapter.sandbox_ids):
            return cri.ListPodSandboxStatsResponse()
        return await self._stats("ListPodSandboxStats").list_pod_sandbox_stats(resolved)

    async def StreamPodSandboxStats(
        self, request: cri.StreamPodSandboxStatsRequest, context: Context
    ) -> AsyncIterator[cri.StreamPodSandboxStatsResponse]:
        listed = await self.ListPodSandboxStats(
            cri.ListPodSandboxStatsRequest(filter=request.filter), context
        )
        for batch in batches(list(listed.stats)):
            yield cri.StreamPodSandboxStatsResponse(pod_sandbox_stats=batch)

    async def ListMetricDescriptors(
        self, request: cri.ListMetricDescriptorsRequest, context: Context
    ) -> cri.ListMetricDescriptorsResponse:
        return await self._metrics("ListMetricDescriptors").list_metric_descriptors(request)

    async def ListPodSandboxMetrics(
        self, request: cri.ListPodSandboxMetricsRequest, context: Context
    ) -> cri.ListPodSandboxMetricsResponse:
        return await self._metrics("ListPodSandboxMetrics").list_pod_sandbox_metrics(request)

    async def StreamPodSandboxMetrics(
        self, request: cri.StreamPodSandboxMetricsRequest, context: Context
    ) -> AsyncIterator[cri.StreamPodSandboxMetricsResponse]:
        listed = await self._metrics("StreamPodSandboxMetrics").list_pod_sandbox_metrics(
            cri.ListPodSandboxMetricsRequest()
        )
        for batch in batches(list(listed.pod_metrics)):
            yield cri.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=batch)

    async def GetContainerEvents(
        self, request: cri.GetEventsRequest, context: Context
    ) -> AsyncIterator[cri.ContainerEventResponse]:
        events = served(self.adapter, self.adapter.events, "GetContainerEvents")
        async for event in events.get_container_events(request):
            yield event
