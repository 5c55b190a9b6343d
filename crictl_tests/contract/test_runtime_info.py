"""Runtime information over the socket: Version, Status, ImageFsInfo, every RPC, crictl."""

from __future__ import annotations

import json
import os
import subprocess

import grpc
from google.protobuf.descriptor import MethodDescriptor

from crictl_tests.harness import BUSYBOX_IMAGE, Daemon
from pycrid.api.cri import api_pb2 as cri

# What an RPC with an empty request may answer: anything but a crash.
CLEAN_ANSWERS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
}
RPC_COUNT = 41  # RuntimeService and ImageService in cri-api v0.36.3


def test_version(daemon: Daemon) -> None:
    version = daemon.runtime.Version(cri.VersionRequest())
    assert (
        version.version,
        version.runtime_name,
        version.runtime_version,
        version.runtime_api_version,
    ) == ("0.1.0", "pycrid", "0.1.0", "v1")


def test_status_conditions_are_honest(daemon: Daemon) -> None:
    """Both conditions are reported, RuntimeReady only when pods can be run."""
    status = daemon.runtime.Status(cri.StatusRequest(verbose=True))
    conditions = {c.type: c for c in status.status.conditions}
    assert {"RuntimeReady", "NetworkReady"} <= set(conditions)
    for condition in conditions.values():
        if not condition.status:
            assert condition.reason and condition.message, condition
    try:
        daemon.runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=30)
        runs_pods = True
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED
        runs_pods = False
    assert conditions["RuntimeReady"].status == runs_pods
    if runs_pods:
        assert "" in [h.name for h in status.runtime_handlers]  # the default handler
    assert isinstance(json.loads(status.info["config"]), dict)


def test_image_fs_info_has_real_figures(daemon: Daemon) -> None:
    daemon.images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=BUSYBOX_IMAGE)))
    info = daemon.images.ImageFsInfo(cri.ImageFsInfoRequest())
    image_fs = info.image_filesystems[0]
    assert os.path.isdir(image_fs.fs_id.mountpoint)
    assert image_fs.used_bytes.value > 0
    assert image_fs.inodes_used.value > 0
    assert image_fs.timestamp > 0


def _call(daemon: Daemon, method: MethodDescriptor) -> grpc.StatusCode:
    """Call ``method`` with an empty request; the code it answers."""
    request_class = getattr(cri, method.input_type.name)
    response_class = getattr(cri, method.output_type.name)
    path = f"/{method.containing_service.full_name}/{method.name}"
    assert daemon.channel is not None
    make = daemon.channel.unary_stream if method.server_streaming else daemon.channel.unary_unary
    call = make(
        path,
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    # An event stream that works stays open: its deadline ends it.
    events = method.name == "GetContainerEvents"
    try:
        result = call(request_class(), timeout=2 if events else 30)
        if method.server_streaming:
            list(result)
    except grpc.RpcError as e:
        if events and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return grpc.StatusCode.OK  # open until the client went away
        return e.code()
    return grpc.StatusCode.OK


def test_every_method_answers_cleanly(daemon: Daemon) -> None:
    """Each RPC of both services, with an empty request, answers without crashing."""
    codes = {
        method.name: _call(daemon, method)
        for service in cri.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert len(codes) == RPC_COUNT
    unclean = {name: code for name, code in codes.items() if code not in CLEAN_ANSWERS}
    assert unclean == {}
    assert codes["GetContainerEvents"] == grpc.StatusCode.OK


def test_real_crictl(daemon: Daemon, crictl: str) -> None:
    endpoint = daemon.endpoint

    def run(*args: str) -> str:
        done = subprocess.run(
            [crictl, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "RuntimeName:  pycrid" in run("version")
    assert "RuntimeReady" in run("info")
    run("images")
