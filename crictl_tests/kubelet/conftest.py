"""Fixtures of the kubelet suite: one kubelet-driven node per adapter and test module.

kubelet is looked up like crictl and critest (PATH, then the shared tools); a
machine without it skips the suite, CI fails it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pycrid.crictl_tests import harness
from pycrid.crictl_tests.kubelet.node import KubeletNode, kubelet_node

ADAPTERS = ["docker", "oci"]


@pytest.fixture(scope="session")
def kubelet_bin() -> str:
    path = harness.find_tool("kubelet")
    if path is not None:
        return path
    reason = f"kubelet is neither on PATH nor in {harness.SHARED_TOOLS}"
    if harness.in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module", params=ADAPTERS)
def kubelet_adapter(request: pytest.FixtureRequest, test_registry: None) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    return request.param


@pytest.fixture(scope="module")
def bare_node(kubelet_adapter: str, kubelet_bin: str) -> Iterator[KubeletNode]:
    """A started node on the module's adapter, without pods; torn down and checked after."""
    with kubelet_node(kubelet_adapter, kubelet_bin) as node:
        yield node


@pytest.fixture
def cri_errors_allowed(bare_node: KubeletNode) -> Iterator[list[str]]:
    """Patterns of kubelet ``E`` lines a test causes on purpose.

    Every other failed CRI call kubelet logs during the test fails it, and so
    does a kubelet whose /healthz is not ok at the end.
    """
    bare_node.cri_errors()  # what came before this test is not its doing
    allowed: list[str] = []
    yield allowed
    unexpected = [e.line for e in bare_node.cri_errors() if not e.matches(allowed)]
    assert unexpected == [], "kubelet logged failed CRI calls:\n" + "\n".join(unexpected)
    assert bare_node.healthz(), "kubelet's /healthz is not ok"
