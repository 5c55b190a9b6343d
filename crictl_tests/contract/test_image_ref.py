"""A container's imageRef names the repository that was asked for, never a mirror's.

The image (one no other test of the module pulls) is pulled first under the
local registry's own name and then under its real name, which the harness
serves from that registry as a mirror: the image then has repo digests for
both repositories, the mirror's first.
"""

from __future__ import annotations

from crictl_tests.dockerpods import Pods
from crictl_tests.harness import LOCAL_REGISTRY, WEBSERVER_IMAGE
from pycrid.api.cri import api_pb2 as cri


def test_image_ref_is_the_requested_repository(pods: Pods) -> None:
    repository, _, tag = WEBSERVER_IMAGE.rpartition(":")
    path = repository.split("/", 1)[1]
    pods.pull(f"{LOCAL_REGISTRY}/{path}:{tag}")
    pods.pull(WEBSERVER_IMAGE)
    sandbox_id = pods.run()
    container_id = pods.create(sandbox_id, pods.container_config("ref", WEBSERVER_IMAGE))
    status = pods.status(container_id).status
    assert status.image.image == WEBSERVER_IMAGE
    assert status.image_ref.startswith(f"{repository}@sha256:"), status.image_ref
    listed = pods.daemon.images.ImageStatus(
        cri.ImageStatusRequest(image=cri.ImageSpec(image=WEBSERVER_IMAGE))
    ).image
    assert status.image_ref in listed.repo_digests
