"""Status' verbose ``config`` names the pause image, where kubeadm looks for it."""

from __future__ import annotations

import json
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.docker.fake import FakeDocker
from pycrid.adapters.docker.runtimeinfo import DockerRuntimeInfo
from pycrid.adapters.oci.runtime.info import OciRuntimeInfo
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.api.cri import api_pb2 as cri

PAUSE = "registry.k8s.io/pause:3.9"


async def test_the_docker_adapter_publishes_sandbox_image(tmp_path: Path) -> None:
    info = DockerRuntimeInfo(Config(pause_image=PAUSE), FakeDocker(), tmp_path)
    status = await info.status(cri.StatusRequest(verbose=True))
    assert json.loads(status.info["config"])["sandboxImage"] == PAUSE


async def test_the_oci_adapter_publishes_sandbox_image(tmp_path: Path) -> None:
    info = OciRuntimeInfo(Config(pause_image=PAUSE), NodeFacts(), tmp_path)
    status = await info.status(cri.StatusRequest(verbose=True))
    config = json.loads(status.info["config"])
    assert config["sandboxImage"] == PAUSE
    assert config["cgroupManager"] == "cgroupfs"
