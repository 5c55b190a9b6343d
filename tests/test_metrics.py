"""The Prometheus metrics: counted by the handler wrappers, served on /metrics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import aiohttp
import grpc
import pytest
from prometheus_client import REGISTRY

from pycrid.adapters import errors
from pycrid.api.cri import api_pb2 as cri
from pycrid.api.cri import api_pb2_grpc
from pycrid.server import instrument, statemetrics
from pycrid.server.daemon import build_server
from pycrid.server.metricsendpoint import MetricsEndpoint, MetricsFailure

from .fake_adapter import FakeAdapter


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def served(tmp_path: Path):
    adapter = FakeAdapter()
    server, _ = build_server(adapter)
    address = f"unix://{tmp_path}/t.sock"
    server.add_insecure_port(address)
    await server.start()
    channel = grpc.aio.insecure_channel(address)
    yield (
        adapter,
        api_pb2_grpc.RuntimeServiceStub(channel),
        api_pb2_grpc.ImageServiceStub(channel),
    )
    await channel.close()
    await server.stop(None)


async def test_calls_are_counted_and_timed_by_method_and_code(served):
    adapter, runtime, _ = served
    ok = {"method": "Version", "code": "OK"}
    missing = {"method": "StopContainer", "code": "NOT_FOUND"}
    before_ok = sample("pycrid_grpc_requests_total", **ok)
    before_hist = sample("pycrid_grpc_request_duration_seconds_count", **ok)
    before_missing = sample("pycrid_grpc_requests_total", **missing)

    await runtime.Version(cri.VersionRequest())
    await runtime.Version(cri.VersionRequest())
    adapter.container_ids.add("c1")
    adapter.backend.fail_with["stop_container"] = errors.NotFound("gone")
    with pytest.raises(grpc.aio.AioRpcError):
        await runtime.StopContainer(cri.StopContainerRequest(container_id="c1"))

    assert sample("pycrid_grpc_requests_total", **ok) == before_ok + 2
    assert sample("pycrid_grpc_request_duration_seconds_count", **ok) == before_hist + 2
    assert sample("pycrid_grpc_requests_total", **missing) == before_missing + 1
    assert sample("pycrid_grpc_requests_in_flight", method="Version") == 0


async def test_a_pull_counts_its_time_and_the_image_size(served):
    adapter, _, images = served

    async def image_status(request: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        return cri.ImageStatusResponse(image=cri.Image(id="sha256:1", size=1234))

    async def pull_image(request: cri.PullImageRequest) -> cri.PullImageResponse:
        return cri.PullImageResponse(image_ref="sha256:1")

    adapter.backend.image_status = image_status
    adapter.backend.pull_image = pull_image
    pulls, pulled_bytes = (
        sample("pycrid_image_pulls_total"),
        sample("pycrid_image_pull_bytes_total"),
    )
    timed = sample("pycrid_image_pull_duration_seconds_count")

    await images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image="busybox")))

    assert sample("pycrid_image_pulls_total") == pulls + 1
    assert sample("pycrid_image_pull_bytes_total") == pulled_bytes + 1234
    assert sample("pycrid_image_pull_duration_seconds_count") == timed + 1


async def test_a_failed_pull_is_counted_by_its_code(served):
    adapter, _, images = served
    adapter.backend.fail_with["pull_image"] = errors.Unavailable("registry down")
    before = sample("pycrid_image_pull_failures_total", code="UNAVAILABLE")
    with pytest.raises(grpc.aio.AioRpcError):
        await images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image="busybox")))
    assert sample("pycrid_image_pull_failures_total", code="UNAVAILABLE") == before + 1


async def test_pods_and_containers_are_counted_by_state():
    adapter = FakeAdapter()

    async def list_pod_sandbox(request: cri.ListPodSandboxRequest) -> cri.ListPodSandboxResponse:
        return cri.ListPodSandboxResponse(
            items=[
                cri.PodSandbox(id="a", state=cri.SANDBOX_READY),
                cri.PodSandbox(id="b", state=cri.SANDBOX_READY),
                cri.PodSandbox(id="c", state=cri.SANDBOX_NOTREADY),
            ]
        )

    adapter.backend.list_pod_sandbox = list_pod_sandbox
    adapter.backend.fail_with["list_containers"] = errors.Unavailable("docker is down")
    await statemetrics.refresh(adapter)
    assert sample("pycrid_pod_sandboxes", state="ready") == 2
    assert sample("pycrid_pod_sandboxes", state="notready") == 1
    assert REGISTRY.get_sample_value("pycrid_containers", {"state": "running"}) is None


async def test_the_endpoint_serves_the_registry_and_counts_before_each_scrape():
    scrapes = []

    async def before_scrape() -> None:
        scrapes.append(1)

    endpoint = MetricsEndpoint("127.0.0.1:0", before_scrape)
    await endpoint.start()
    try:
        assert endpoint.bound.startswith("127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{endpoint.bound}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            async with http.get(f"http://{endpoint.bound}/other") as response:
                assert response.status == 404
    finally:
        await endpoint.stop()
    assert scrapes == [1]
    assert "# TYPE pycrid_grpc_requests_total counter" in text
    assert "process_cpu_seconds_total" in text


async def test_an_address_in_use_is_a_startup_failure():
    first = MetricsEndpoint("127.0.0.1:0")
    await first.start()
    try:
        with pytest.raises(MetricsFailure, match="cannot serve metrics"):
            await MetricsEndpoint(first.bound).start()
    finally:
        await first.stop()


async def test_a_hook_after_a_call_sees_its_response_and_never_fails_it():
    seen: list[object] = []

    async def handler(request: object, context: object) -> str:
        return f"answer to {request}"

    async def count(response: object) -> None:
        seen.append(response)

    async def broken(response: object) -> None:
        raise RuntimeError("figure unavailable")

    context = SimpleNamespace(time_remaining=lambda: None)
    counted = instrument.wrap_unary("ListImages", handler, after=count)
    assert await counted("q", context) == "answer to q"
    assert seen == ["answer to q"]
    failing = instrument.wrap_unary("ListImages", handler, after=broken)
    assert await failing("r", context) == "answer to r"
