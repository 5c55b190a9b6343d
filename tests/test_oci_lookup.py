"""How ImageStatus, ListImages and RemoveImage find an image in the oci store."""

from __future__ import annotations

import pytest

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.oci.images.service import find_image, to_cri_image
from pycrid.adapters.oci.images.store import ImageRecord, LayerRecord

BUSYBOX_ID = "sha256:bd86" + "1" * 60
OTHER_ID = "sha256:bd87" + "2" * 60
MANIFEST = "sha256:" + "9" * 64


def record(image_id: str, tags: list[str], digests: list[str], user: str = "") -> ImageRecord:
    layer = LayerRecord("sha256:" + "a" * 64, "x", 10, "sha256:" + "b" * 64, 1234)
    return ImageRecord(image_id, tags, digests, [MANIFEST], [layer], user=user)


RECORDS = [
    record(
        BUSYBOX_ID,
        ["registry.k8s.io/e2e-test-images/busybox:1.29-2", "docker.io/library/busybox:latest"],
        [f"registry.k8s.io/e2e-test-images/busybox@{MANIFEST}"],
        user="www-data",
    ),
    record(OTHER_ID, [], ["127.0.0.1:5000/other@sha256:" + "8" * 64], user="1002:1002"),
]


@pytest.mark.parametrize(
    "name",
    [
        BUSYBOX_ID,
        BUSYBOX_ID.removeprefix("sha256:"),
        "registry.k8s.io/e2e-test-images/busybox:1.29-2",
        "busybox",
        "docker.io/library/busybox",
        f"registry.k8s.io/e2e-test-images/busybox@{MANIFEST}",
        "bd861",
        "sha256:bd861",
    ],
)
def test_every_name_finds_the_image(name: str) -> None:
    found = find_image(RECORDS, name)
    assert found is not None and found.id == BUSYBOX_ID


@pytest.mark.parametrize(
    "name",
    ["registry.k8s.io/e2e-test-images/busybox:other", "nginx", "sha256:" + "f" * 64, "ffff"],
)
def test_unknown_names_find_nothing(name: str) -> None:
    assert find_image(RECORDS, name) is None


def test_an_ambiguous_prefix_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="ambiguous"):
        find_image(RECORDS, "bd8")


def test_cri_view() -> None:
    image = to_cri_image(RECORDS[0], {"registry.k8s.io/e2e-test-images/busybox:1.29-2"})
    assert image.pinned and image.username == "www-data" and not image.HasField("uid")
    assert image.size == 1234 and image.spec.image == BUSYBOX_ID
    other = to_cri_image(RECORDS[1], set())
    assert other.uid.value == 1002 and other.username == "" and not other.pinned
