"""The docker adapter's ImageService: names, digests, IDs and mirrors."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from pycrid.api.cri import api_pb2 as cri
from pycrid.crictl_tests.harness import LOCAL_REGISTRY, Daemon

STAGING = "gcr.io/k8s-staging-cri-tools"
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)


def spec(name: str) -> cri.ImageSpec:
    return cri.ImageSpec(image=name)


def registry_digest(path: str, tag: str) -> str:
    """The manifest digest the local registry serves for ``path:tag``."""
    request = urllib.request.Request(
        f"http://{LOCAL_REGISTRY}/v2/{path}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Docker-Content-Digest"]


def docker_names() -> set[str]:
    out = subprocess.run(
        ["docker", "images", "--format", "{{json .}}"], capture_output=True, text=True, check=True
    ).stdout
    return {f"{row['Repository']}:{row['Tag']}" for row in map(json.loads, out.splitlines()) if row}


class Images:
    """Pulls through a daemon and removes everything it pulled afterwards."""

    def __init__(self, daemon: Daemon) -> None:
        self.stub = daemon.images
        self.pulled: list[str] = []

    def pull(self, name: str) -> str:
        self.pulled.append(name)
        return self.stub.PullImage(cri.PullImageRequest(image=spec(name))).image_ref

    def status(self, name: str) -> cri.Image | None:
        response = self.stub.ImageStatus(cri.ImageStatusRequest(image=spec(name)))
        return response.image if response.HasField("image") else None

    def remove(self, name: str) -> None:
        self.stub.RemoveImage(cri.RemoveImageRequest(image=spec(name)))

    def cleanup(self) -> None:
        for name in self.pulled:
            self.remove(name)


@pytest.fixture
def images(docker_daemon: Daemon) -> Iterator[Images]:
    helper = Images(docker_daemon)
    yield helper
    helper.cleanup()


def test_pull_through_a_mirror_shows_only_the_requested_name(images: Images):
    name = f"{STAGING}/test-image-tag:test"
    image_ref = images.pull(name)
    digest = registry_digest("k8s-staging-cri-tools/test-image-tag", "test")
    image = images.status(name)
    assert image is not None
    assert image_ref == image.id
    assert list(image.repo_tags) == [name]
    assert list(image.repo_digests) == [f"{STAGING}/test-image-tag@{digest}"]
    # dockerd itself holds the requested name, not the mirror's.
    names = docker_names()
    assert name in names
    assert f"{LOCAL_REGISTRY}/k8s-staging-cri-tools/test-image-tag:test" not in names


def test_pull_without_a_tag_means_latest(images: Images):
    images.pull(f"{STAGING}/test-image-latest")
    image = images.status(f"{STAGING}/test-image-latest:latest")
    assert image is not None
    assert list(image.repo_tags) == [f"{STAGING}/test-image-latest:latest"]


def test_pull_by_digest(images: Images):
    digest = registry_digest("k8s-staging-cri-tools/test-image-digest", "latest")
    name = f"{STAGING}/test-image-digest@{digest}"
    image_ref = images.pull(name)
    image = images.status(name)
    assert image is not None
    assert image_ref == image.id
    assert list(image.repo_tags) == []
    assert list(image.repo_digests) == [name]
    listed = images.stub.ListImages(cri.ListImagesRequest()).images
    assert [list(i.repo_digests) for i in listed if i.id == image.id] == [[name]]


def test_status_by_every_kind_of_reference(images: Images):
    name = f"{STAGING}/test-image-tag:all"
    images.pull(name)
    by_tag = images.status(name)
    assert by_tag is not None
    for reference in (by_tag.id, by_tag.id[len("sha256:") :][:12], *by_tag.repo_digests):
        assert images.status(reference) == by_tag, reference


def test_several_tags_on_one_image_and_removal_by_one_tag(images: Images):
    names = [f"{STAGING}/test-image-tags:{n}" for n in (1, 2, 3)]
    for name in names:
        images.pull(name)
    image = images.status(names[0])
    assert image is not None
    assert sorted(image.repo_tags) == names
    listed = [i for i in images.stub.ListImages(cri.ListImagesRequest()).images if i.id == image.id]
    assert len(listed) == 1 and sorted(listed[0].repo_tags) == names
    images.remove(names[1])
    assert all(images.status(name) is None for name in names)


def test_same_image_from_two_registries(images: Images):
    first = f"{STAGING}/test-image-1:latest"
    second = "k8s.gcr.io/k8s-staging-cri-tools/test-image-1:latest"
    images.pull(first)
    images.pull(second)
    a, b = images.status(first), images.status(second)
    assert a is not None and b is not None and a.id == b.id
    assert sorted(a.repo_tags) == sorted([first, second])
    images.remove(first)
    assert images.status(second) is None


def test_three_different_images_are_listed(images: Images):
    names = [f"{STAGING}/test-image-{n}:latest" for n in (1, 2, 3)]
    ids = {images.pull(name) and images.status(name).id for name in names}
    assert len(ids) == 3
    listed = {i.id for i in images.stub.ListImages(cri.ListImagesRequest()).images}
    assert ids <= listed


def test_remove_is_idempotent_and_concurrent_removes_succeed(images: Images):
    name = f"{STAGING}/test-image-2:latest"
    images.pull(name)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: images.remove(name), range(4)))
    assert images.status(name) is None
    images.remove(name)
    images.remove("sha256:" + "0" * 64)


def test_pause_image_is_pinned(docker_daemon: Daemon, images: Images):
    pause = docker_daemon.config["pause_image"]
    images.stub.PullImage(cri.PullImageRequest(image=spec(pause)))  # kept: pods need it
    image = images.status(pause)
    assert image is not None and image.pinned
    other = f"{STAGING}/test-image-3:latest"
    images.pull(other)
    assert not images.status(other).pinned


def test_bad_pulls_are_answered_with_clear_codes(images: Images):
    with pytest.raises(grpc.RpcError) as missing:
        images.stub.PullImage(cri.PullImageRequest(image=spec(f"{STAGING}/no-such-image:1")))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-image" in missing.value.details()
    with pytest.raises(grpc.RpcError) as malformed:
        images.stub.PullImage(cri.PullImageRequest(image=spec("Not A Reference")))
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as empty:
        images.stub.ImageStatus(cri.ImageStatusRequest(image=spec("")))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_pull_deadline_is_honoured(images: Images):
    # dockerd may finish the transfer after the call gave up, so this test uses
    # an image no other test pulls.
    name = f"{STAGING}/test-image-predefined-group:latest"
    with pytest.raises(grpc.RpcError) as caught:
        images.stub.PullImage(cri.PullImageRequest(image=spec(name)), timeout=0.001)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    images.pulled.append(name)
