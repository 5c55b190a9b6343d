"""The docker adapter's ImageService, as dockerd sees it.

Names, digests, IDs, listing and removal over the CRI are in the contract
suite (crictl_tests/contract/test_images.py), run on both adapters.
"""

from __future__ import annotations

import json
import subprocess

from crictl_tests.harness import LOCAL_REGISTRY, Daemon
from pycrid.api.cri import api_pb2 as cri

STAGING = "gcr.io/k8s-staging-cri-tools"


def docker_names() -> set[str]:
    out = subprocess.run(
        ["docker", "images", "--format", "{{json .}}"], capture_output=True, text=True, check=True
    ).stdout
    return {f"{row['Repository']}:{row['Tag']}" for row in map(json.loads, out.splitlines()) if row}


def test_dockerd_holds_the_requested_name_not_the_mirrors(docker_daemon: Daemon) -> None:
    name = f"{STAGING}/test-image-tag:test"
    image = cri.ImageSpec(image=name)
    docker_daemon.images.PullImage(cri.PullImageRequest(image=image))
    try:
        names = docker_names()
        assert name in names
        assert f"{LOCAL_REGISTRY}/k8s-staging-cri-tools/test-image-tag:test" not in names
    finally:
        docker_daemon.images.RemoveImage(cri.RemoveImageRequest(image=image))
