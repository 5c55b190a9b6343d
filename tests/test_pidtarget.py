"""A TARGET PID namespace names a container of the same pod, nothing else."""

from __future__ import annotations

import pytest

from pycrid.adapters.errors import InvalidArgument, NotFound
from pycrid.adapters.pidtarget import same_pod_target

PODS = {"aaaa1111": "pod-a", "bbbb2222": "pod-b"}


def resolve(prefix: str) -> str:
    found = [c for c in PODS if c.startswith(prefix)]
    if not found:
        raise NotFound(prefix)
    return found[0]


def test_a_container_of_the_same_pod_is_the_target() -> None:
    assert same_pod_target("aaaa", "pod-a", resolve, PODS.__getitem__) == "aaaa1111"


def test_a_container_of_another_pod_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="another pod"):
        same_pod_target("bbbb2222", "pod-a", resolve, PODS.__getitem__)


@pytest.mark.parametrize("target", ["", "cccc"])
def test_no_container_is_refused(target: str) -> None:
    with pytest.raises(InvalidArgument, match="target_id"):
        same_pod_target(target, "pod-a", resolve, PODS.__getitem__)
