"""The ImageService: pulls by tag and digest, names, IDs, listing, removal, codes.

The test images come from the local registry through the mirror settings of
the harness; each test removes what it pulled, except busybox and the pause
image, which other tests use.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from crictl_tests.harness import LOCAL_REGISTRY, Daemon
from pycrid.api.cri import api_pb2 as cri

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

    def listed(self, name: str = "") -> list[cri.Image]:
        request = cri.ListImagesRequest(filter=cri.ImageFilter(image=spec(name)))
        return list(self.stub.ListImages(request).images)

    def remove(self, name: str) -> None:
        self.stub.RemoveImage(cri.RemoveImageRequest(image=spec(name)))

    def cleanup(self) -> None:
        for name in self.pulled:
            self.remove(name)


@pytest.fixture
def images(daemon: Daemon) -> Iterator[Images]:
    helper = Images(daemon)
    yield helper
    helper.cleanup()


def test_pull_by_tag_and_every_way_to_name_it(images: Images) -> None:
    name = f"{STAGING}/test-image-tag:test"
    image_ref = images.pull(name)
    assert image_ref.startswith("sha256:") and len(image_ref) == len("sha256:") + 64
    digest = registry_digest("k8s-staging-cri-tools/test-image-tag", "test")
    image = images.status(name)
    assert image is not None
    assert image.id == image_ref
    assert list(image.repo_tags) == [name]
    assert list(image.repo_digests) == [f"{STAGING}/test-image-tag@{digest}"]
    assert image.size > 0
    hex_id = image.id.removeprefix("sha256:")
    for reference in (image.id, hex_id, hex_id[:12], image.repo_digests[0]):
        assert images.status(reference) == image, reference
    assert [i.id for i in images.listed(name)] == [image.id]
    assert image.id in [i.id for i in images.listed()]
    # Pulled through a mirror: recorded under the requested name, not the mirror's.
    assert images.status(f"{LOCAL_REGISTRY}/k8s-staging-cri-tools/test-image-tag:test") is None


def test_a_missing_image_has_no_status_and_is_not_listed(images: Images) -> None:
    for name in ("registry.k8s.io/no-such-image:1", f"{LOCAL_REGISTRY}/not/there:1"):
        assert images.status(name) is None, name
        assert images.listed(name) == [], name


def test_pull_without_a_tag_means_latest(images: Images) -> None:
    images.pull(f"{STAGING}/test-image-latest")
    image = images.status(f"{STAGING}/test-image-latest:latest")
    assert image is not None
    assert list(image.repo_tags) == [f"{STAGING}/test-image-latest:latest"]


def test_pull_by_digest(images: Images) -> None:
    digest = registry_digest("k8s-staging-cri-tools/test-image-digest", "latest")
    name = f"{STAGING}/test-image-digest@{digest}"
    image_ref = images.pull(name)
    image = images.status(name)
    assert image is not None
    assert image_ref == image.id
    assert list(image.repo_tags) == []
    assert list(image.repo_digests) == [name]
    assert [list(i.repo_digests) for i in images.listed() if i.id == image.id] == [[name]]


@pytest.mark.parametrize(
    ("name", "uid", "username"),
    [(f"{STAGING}/test-image-user-uid:latest", 1002, ""),
     (f"{STAGING}/test-image-user-username:latest", None, "www-data")],
)  # fmt: skip
def test_image_user(images: Images, name: str, uid: int | None, username: str) -> None:
    images.pull(name)
    image = images.status(name)
    assert image is not None
    assert image.username == username
    assert image.HasField("uid") == (uid is not None)
    if uid is not None:
        assert image.uid.value == uid


def test_several_tags_on_one_image_and_removal_by_one_tag(images: Images) -> None:
    names = [f"{STAGING}/test-image-tags:{n}" for n in (1, 2, 3)]
    assert len({images.pull(name) for name in names}) == 1
    image = images.status(names[0])
    assert image is not None
    assert sorted(image.repo_tags) == names
    listed = [i for i in images.listed() if i.id == image.id]
    assert len(listed) == 1 and sorted(listed[0].repo_tags) == names
    images.remove(names[1])
    assert all(images.status(name) is None for name in names)
    assert image.id not in [i.id for i in images.listed()]


def test_same_image_from_two_registries(images: Images) -> None:
    first = f"{STAGING}/test-image-1:latest"
    second = "k8s.gcr.io/k8s-staging-cri-tools/test-image-1:latest"
    images.pull(first)
    images.pull(second)
    a, b = images.status(first), images.status(second)
    assert a is not None and b is not None and a.id == b.id
    assert sorted(a.repo_tags) == sorted([first, second])
    images.remove(first)
    assert images.status(second) is None


def test_three_different_images_are_listed(images: Images) -> None:
    ids = {images.pull(f"{STAGING}/test-image-{n}:latest") for n in (1, 2, 3)}
    assert len(ids) == 3
    assert ids <= {i.id for i in images.listed()}


def test_remove_is_idempotent_and_concurrent_removes_succeed(images: Images) -> None:
    name = f"{STAGING}/test-image-2:latest"
    images.pull(name)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: images.remove(name), range(4)))
    assert images.status(name) is None
    images.remove(name)
    images.remove("sha256:" + "0" * 64)


def test_pause_image_is_pinned(daemon: Daemon, images: Images) -> None:
    pause = daemon.config["pause_image"]
    images.stub.PullImage(cri.PullImageRequest(image=spec(pause)))  # kept: pods need it
    image = images.status(pause)
    assert image is not None and image.pinned
    other = f"{STAGING}/test-image-3:latest"
    images.pull(other)
    other_image = images.status(other)
    assert other_image is not None and not other_image.pinned


def test_bad_pulls_are_answered_with_clear_codes(images: Images) -> None:
    for missing in (f"{STAGING}/no-such-image:1", f"{LOCAL_REGISTRY}/no/such-image:1"):
        with pytest.raises(grpc.RpcError) as caught:
            images.stub.PullImage(cri.PullImageRequest(image=spec(missing)))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, missing
        assert "such-image" in caught.value.details(), missing
    with pytest.raises(grpc.RpcError) as malformed:
        images.stub.PullImage(cri.PullImageRequest(image=spec("Not A Reference")))
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as empty:
        images.stub.ImageStatus(cri.ImageStatusRequest(image=spec("")))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_pull_deadline_is_honoured(images: Images) -> None:
    # The backend may finish the transfer after the call gave up, so this test
    # uses an image no other test pulls, and removes it afterwards.
    name = f"{STAGING}/test-image-predefined-group:latest"
    with pytest.raises(grpc.RpcError) as caught:
        images.stub.PullImage(cri.PullImageRequest(image=spec(name)), timeout=0.001)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    images.pulled.append(name)
