"""The servicers and the instrumentation, through a real gRPC channel.

A fake adapter stands in for the backend; what is tested is the server layer:
validation, prefix resolution, idempotence rules and status codes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from pycrid.adapters import errors
from pycrid.api.cri import api_pb2 as cri
from pycrid.api.cri import api_pb2_grpc
from pycrid.server.daemon import build_server

from .fake_adapter import FakeAdapter


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


async def code_of(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def test_version_is_what_kubelet_demands(served):
    _, runtime, _ = served
    version = await runtime.Version(cri.VersionRequest())
    assert version.version == "0.1.0"
    assert version.runtime_api_version == "v1"
    assert version.runtime_name == "pycrid"
    assert version.runtime_version


async def test_an_absent_concern_is_unimplemented_never_unknown(served):
    adapter, runtime, _ = served
    adapter.container_ids.add("c1")
    adapter.sandbox_ids.add("p1")
    calls = [
        runtime.ContainerStats(cri.ContainerStatsRequest(container_id="c1")),
        runtime.ListPodSandboxStats(cri.ListPodSandboxStatsRequest()),
        runtime.ListMetricDescriptors(cri.ListMetricDescriptorsRequest()),
        runtime.CheckpointContainer(cri.CheckpointContainerRequest(container_id="c1")),
        runtime.UpdatePodSandboxResources(
            cri.UpdatePodSandboxResourcesRequest(pod_sandbox_id="p1")
        ),
        runtime.Exec(cri.ExecRequest(container_id="c1", cmd=["true"], stdout=True)),
        runtime.PortForward(cri.PortForwardRequest(pod_sandbox_id="p1", port=[80])),
    ]
    for call in calls:
        assert await code_of(call) == grpc.StatusCode.UNIMPLEMENTED
    events = runtime.GetContainerEvents(cri.GetEventsRequest())
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async for _ in events:
            pass
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert adapter.calls == []


async def test_a_present_concern_reaches_the_adapter_in_one_hop(served):
    adapter, runtime, images = served
    await runtime.ListPodSandbox(cri.ListPodSandboxRequest())
    await images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image="a")))
    assert [name for name, _ in adapter.calls] == ["list_pod_sandbox", "pull_image"]


async def test_prefixes_resolve_before_the_adapter_sees_them(served):
    adapter, runtime, _ = served
    adapter.container_ids.replace(["abc111", "abd222"])
    status = await runtime.ContainerStatus(cri.ContainerStatusRequest(container_id="abc"))
    assert status.status.id == "abc111"
    assert adapter.calls[-1][1].container_id == "abc111"


async def test_ambiguous_and_unknown_prefixes(served):
    adapter, runtime, _ = served
    adapter.container_ids.replace(["abc111", "abd222"])
    ambiguous = runtime.ContainerStatus(cri.ContainerStatusRequest(container_id="ab"))
    assert await code_of(ambiguous) == grpc.StatusCode.INVALID_ARGUMENT
    unknown = runtime.ContainerStatus(cri.ContainerStatusRequest(container_id="zz"))
    assert await code_of(unknown) == grpc.StatusCode.NOT_FOUND
    assert adapter.calls == []


async def test_stop_and_remove_of_missing_objects_succeed(served):
    adapter, runtime, _ = served
    await runtime.StopContainer(cri.StopContainerRequest(container_id="gone"))
    await runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id="gone"))
    assert adapter.calls == []
    adapter.sandbox_ids.add("p1")
    await runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id="p"))
    assert adapter.calls == [
        ("remove_pod_sandbox", cri.RemovePodSandboxRequest(pod_sandbox_id="p1"))
    ]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Unimplemented("x"), grpc.StatusCode.UNIMPLEMENTED),
        (RuntimeError("bug"), grpc.StatusCode.INTERNAL),
    ],
)
async def test_adapter_errors_map_to_status_codes(served, error, code):
    adapter, runtime, _ = served
    adapter.fail_with["status"] = error
    try:
        await runtime.Status(cri.StatusRequest())
    except grpc.aio.AioRpcError as e:
        assert e.code() == code
        assert e.details() == str(error)
    else:
        pytest.fail("Status should have failed")
    # The daemon survives and answers the next call.
    del adapter.fail_with["status"]
    await runtime.Status(cri.StatusRequest())


async def test_requests_are_validated(served):
    adapter, runtime, _ = served
    no_metadata = runtime.RunPodSandbox(cri.RunPodSandboxRequest())
    assert await code_of(no_metadata) == grpc.StatusCode.INVALID_ARGUMENT
    adapter.container_ids.add("c1")
    empty_cmd = runtime.ExecSync(cri.ExecSyncRequest(container_id="c1"))
    assert await code_of(empty_cmd) == grpc.StatusCode.INVALID_ARGUMENT
    tty_and_stderr = runtime.Exec(
        cri.ExecRequest(container_id="c1", cmd=["sh"], tty=True, stdout=True, stderr=True)
    )
    assert await code_of(tty_and_stderr) == grpc.StatusCode.INVALID_ARGUMENT
    assert adapter.calls == []


async def test_list_filters_expand_prefixes_or_select_nothing(served):
    adapter, runtime, _ = served
    adapter.container_ids.replace(["abc111", "abd222"])
    await runtime.ListContainers(cri.ListContainersRequest(filter=cri.ContainerFilter(id="abc")))
    assert adapter.calls[-1][1].filter.id == "abc111"
    calls = len(adapter.calls)
    nothing = await runtime.ListContainers(
        cri.ListContainersRequest(filter=cri.ContainerFilter(id="ab"))
    )
    assert list(nothing.containers) == [] and len(adapter.calls) == calls


async def test_stream_calls_batch_the_list(served):
    _, _, images = served
    batches = [b async for b in images.StreamImages(cri.StreamImagesRequest())]
    assert [len(b.images) for b in batches] == [500, 500, 200]


async def test_identical_concurrent_run_pod_sandbox_calls_are_carried_out_once(served):
    adapter, runtime, _ = served
    adapter.backend.gate = asyncio.Event()
    request = cri.RunPodSandboxRequest(
        config=cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name="web", namespace="ns", uid="u1")
        )
    )
    calls = [asyncio.ensure_future(runtime.RunPodSandbox(request)) for _ in range(10)]
    other = request.__deepcopy__()
    other.config.metadata.attempt = 1
    calls.append(asyncio.ensure_future(runtime.RunPodSandbox(other)))
    while len(adapter.calls) < 2:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # the other nine reach the server, in flight together
    adapter.backend.gate.set()
    answers = [r.pod_sandbox_id for r in await asyncio.gather(*calls)]
    assert len(adapter.calls) == 2
    assert len(set(answers[:10])) == 1 and answers[10] != answers[0]


async def test_configured_limits_are_enforced_by_the_server(tmp_path: Path):
    from pycrid.adapters.config import LimitsConfig

    adapter = FakeAdapter()
    server, _ = build_server(adapter, None, LimitsConfig(max_request_bytes=1 << 20, max_mounts=1))
    address = f"unix://{tmp_path}/limits.sock"
    server.add_insecure_port(address)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            runtime = api_pb2_grpc.RuntimeServiceStub(channel)
            big = cri.RunPodSandboxRequest(
                config=cri.PodSandboxConfig(annotations={f"a{i}": "x" * 1000 for i in range(2000)})
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await runtime.RunPodSandbox(big)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            config = cri.ContainerConfig(
                metadata=cri.ContainerMetadata(name="a"),
                image=cri.ImageSpec(image="busybox"),
                mounts=[cri.Mount(container_path="/a"), cri.Mount(container_path="/b")],
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await runtime.CreateContainer(
                    cri.CreateContainerRequest(pod_sandbox_id="p", config=config)
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "limits.max_mounts" in (caught.value.details() or "")
            assert adapter.calls == []
    finally:
        await server.stop(None)


NUL_ID = "abc\x00def"


@pytest.mark.parametrize(
    ("rpc", "request_"),
    [
        ("StartContainer", cri.StartContainerRequest(container_id=NUL_ID)),
        ("StopContainer", cri.StopContainerRequest(container_id=NUL_ID)),
        ("RemoveContainer", cri.RemoveContainerRequest(container_id=NUL_ID)),
        ("ContainerStatus", cri.ContainerStatusRequest(container_id=NUL_ID)),
        ("ReopenContainerLog", cri.ReopenContainerLogRequest(container_id=NUL_ID)),
        ("ExecSync", cri.ExecSyncRequest(container_id=NUL_ID, cmd=["true"])),
        ("StopPodSandbox", cri.StopPodSandboxRequest(pod_sandbox_id=NUL_ID)),
        ("RemovePodSandbox", cri.RemovePodSandboxRequest(pod_sandbox_id=NUL_ID)),
        ("PodSandboxStatus", cri.PodSandboxStatusRequest(pod_sandbox_id=NUL_ID)),
        (
            "ListContainers",
            cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=NUL_ID)),
        ),
        ("ListPodSandbox", cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(id=NUL_ID))),
    ],
)
async def test_a_nul_byte_in_an_id_is_always_invalid(served, rpc, request_):
    _, runtime, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(runtime, rpc)(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "NUL" in (caught.value.details() or "")
