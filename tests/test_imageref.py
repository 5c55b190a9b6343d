from __future__ import annotations

import pytest

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node.imageref import (
    is_image_id,
    parse_image_user,
    parse_reference,
    repo_digest_for,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("user/app:v1", "docker.io/user/app:v1"),
        ("index.docker.io/user/app", "docker.io/user/app:latest"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        ("127.0.0.1:5000/e2e/busybox:1.29-2", "127.0.0.1:5000/e2e/busybox:1.29-2"),
        ("localhost/app", "localhost/app:latest"),
        (f"registry.k8s.io/pause@{DIGEST}", f"registry.k8s.io/pause@{DIGEST}"),
        (f"registry.k8s.io/pause:3.10@{DIGEST}", f"registry.k8s.io/pause:3.10@{DIGEST}"),
    ],
)
def test_references_normalise_like_docker(text, expected):
    assert str(parse_reference(text)) == expected


def test_parts_of_a_reference():
    ref = parse_reference("127.0.0.1:5000/e2e/busybox:1.29-2")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (
        "127.0.0.1:5000",
        "e2e/busybox",
        "1.29-2",
        "",
    )
    assert ref.repository == "127.0.0.1:5000/e2e/busybox"
    assert str(ref.with_domain("registry.k8s.io")) == "registry.k8s.io/e2e/busybox:1.29-2"


@pytest.mark.parametrize(
    "text", ["", " busybox", "Busybox", "busybox:", "busybox@sha256:short", "a//b", "x:y:z"]
)
def test_malformed_references_are_invalid_arguments(text):
    with pytest.raises(InvalidArgument):
        parse_reference(text)


def test_image_ids():
    assert is_image_id("a" * 64)
    assert is_image_id(DIGEST)
    assert not is_image_id("abc")


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (None, "")),
        ("1002", (1002, "")),
        ("1003:1003", (1003, "")),
        ("www-data", (None, "www-data")),
        ("www-data:www-data", (None, "www-data")),
        ("0", (0, "")),
    ],
)
def test_image_user(user, expected):
    assert parse_image_user(user) == expected


MIRROR_DIGEST = "127.0.0.1:5000/e2e-test-images/busybox@sha256:" + "a" * 64
ASKED_DIGEST = "registry.k8s.io/e2e-test-images/busybox@sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("registry.k8s.io/e2e-test-images/busybox:1.29-2", ASKED_DIGEST),
        (ASKED_DIGEST, ASKED_DIGEST),
        ("127.0.0.1:5000/e2e-test-images/busybox:1.29-2", MIRROR_DIGEST),
        ("docker.io/library/busybox:latest", ""),
        ("sha256:" + "b" * 64, ""),
        ("Not A Reference", ""),
    ],
)
def test_repo_digest_of_the_repository_asked_for(requested, expected):
    """The mirror's name comes first in the list and must still not be chosen."""
    assert repo_digest_for(requested, [MIRROR_DIGEST, ASKED_DIGEST]) == expected
