"""An in-memory adapter for servicer tests: records calls, raises on demand."""

from __future__ import annotations

from typing import Any

from pycrid.adapters.base import Adapter
from pycrid.api.cri import api_pb2 as cri
from pycrid.server.config import Config


class FakeAdapter(Adapter):
    name = "fake"

    def __init__(self) -> None:
        super().__init__(Config())
        self.calls: list[tuple[str, Any]] = []
        self.fail_with: dict[str, Exception] = {}

    def _record(self, method: str, request: Any) -> None:
        self.calls.append((method, request))
        if method in self.fail_with:
            raise self.fail_with[method]

    async def status(self, request: cri.StatusRequest) -> cri.StatusResponse:
        self._record("status", request)
        return cri.StatusResponse()

    async def container_status(
        self, request: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse:
        self._record("container_status", request)
        return cri.ContainerStatusResponse(status=cri.ContainerStatus(id=request.container_id))

    async def stop_container(self, request: cri.StopContainerRequest) -> cri.StopContainerResponse:
        self._record("stop_container", request)
        return cri.StopContainerResponse()

    async def remove_pod_sandbox(
        self, request: cri.RemovePodSandboxRequest
    ) -> cri.RemovePodSandboxResponse:
        self._record("remove_pod_sandbox", request)
        return cri.RemovePodSandboxResponse()

    async def list_containers(
        self, request: cri.ListContainersRequest
    ) -> cri.ListContainersResponse:
        self._record("list_containers", request)
        return cri.ListContainersResponse(
            containers=[cri.Container(id=i) for i in self.container_ids]
        )

    async def run_pod_sandbox(self, request: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
        self._record("run_pod_sandbox", request)
        return cri.RunPodSandboxResponse(pod_sandbox_id="p1")

    async def list_images(self, request: cri.ListImagesRequest) -> cri.ListImagesResponse:
        self._record("list_images", request)
        return cri.ListImagesResponse(images=[cri.Image(id=f"sha256:{i}") for i in range(1200)])
