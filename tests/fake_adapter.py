"""An in-memory adapter for servicer tests: records calls, raises on demand.

One ``FakeBackend`` serves the runtime, sandbox, container and image
concerns; every method named after an RPC of those services records the call
and answers an empty response, unless a test made it fail. The stats,
metrics, streaming, checkpoint, pod-resources and events concerns are
absent, so their RPCs answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pycrid.adapters.base import Adapter
from pycrid.api.cri import api_pb2 as cri

_SERVICES = [cri.DESCRIPTOR.services_by_name[n] for n in ("RuntimeService", "ImageService")]
_RESPONSES = {
    "".join("_" + c.lower() if c.isupper() else c for c in m.name).lstrip("_"): m.output_type.name
    for service in _SERVICES
    for m in service.methods
}


class FakeBackend:
    def __init__(self, adapter: FakeAdapter) -> None:
        self.adapter = adapter
        self.calls: list[tuple[str, Any]] = []
        self.fail_with: dict[str, Exception] = {}
        self.gate: asyncio.Event | None = None
        """When set, RunPodSandbox waits for it (to make calls overlap)."""

    def _record(self, method: str, request: Any) -> None:
        self.calls.append((method, request))
        if method in self.fail_with:
            raise self.fail_with[method]

    def __getattr__(self, method: str) -> Callable[[Any], Awaitable[Any]]:
        if method not in _RESPONSES:
            raise AttributeError(method)

        async def call(request: Any) -> Any:
            self._record(method, request)
            return getattr(cri, _RESPONSES[method])()

        return call

    async def container_status(
        self, request: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse:
        self._record("container_status", request)
        return cri.ContainerStatusResponse(status=cri.ContainerStatus(id=request.container_id))

    async def list_containers(
        self, request: cri.ListContainersRequest
    ) -> cri.ListContainersResponse:
        self._record("list_containers", request)
        return cri.ListContainersResponse(
            containers=[cri.Container(id=i) for i in self.adapter.container_ids]
        )

    async def run_pod_sandbox(self, request: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
        self._record("run_pod_sandbox", request)
        sandbox_id = f"p{len(self.calls)}"
        if self.gate is not None:
            await self.gate.wait()
        return cri.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)

    async def list_images(self, request: cri.ListImagesRequest) -> cri.ListImagesResponse:
        self._record("list_images", request)
        return cri.ListImagesResponse(images=[cri.Image(id=f"sha256:{i}") for i in range(1200)])


class FakeAdapter(Adapter):
    def __init__(self) -> None:
        self.backend = FakeBackend(self)
        super().__init__(
            name="fake",
            runtime=self.backend,  # type: ignore[arg-type]
            sandboxes=self.backend,  # type: ignore[arg-type]
            containers=self.backend,  # type: ignore[arg-type]
            images=self.backend,  # type: ignore[arg-type]
        )
        self.calls = self.backend.calls
        self.fail_with = self.backend.fail_with
