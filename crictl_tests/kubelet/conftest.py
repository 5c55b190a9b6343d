"""Fixtures of the kubelet suite: one kubelet-driven node per adapter and test module.

kubelet is looked up like crictl and critest (PATH, then the shared tools); a
machine without it skips the suite, CI fails it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crictl_tests import harness
from crictl_tests.kubelet.node import KubeletNode, kubelet_node

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


_RESULTS: list[tuple[str, str]] = []
"""(test, outcome) of every kubelet check run in this session."""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember each kubelet check's outcome (setup and teardown failures count too)."""
    if "kubelet/test_" not in report.nodeid:
        return
    if report.when == "call" or report.outcome != "passed":
        outcome = "error" if report.when != "call" and report.failed else report.outcome
        _RESULTS.append((report.nodeid.split("::", 1)[1], outcome))


def _on(adapter: str, test: str) -> bool:
    params = test.partition("[")[2].removesuffix("]").split("-")
    return adapter in params


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The kubelet suite's checks, line by line and per adapter, in CI's log."""
    if not _RESULTS:
        return
    terminalreporter.section("kubelet suite")
    for test, outcome in _RESULTS:
        terminalreporter.write_line(f"{outcome.upper():8} {test}")
    for adapter in ADAPTERS:
        outcomes = [o for t, o in _RESULTS if _on(adapter, t)]
        if not outcomes:
            continue
        passed = outcomes.count("passed")
        terminalreporter.write_line(
            f"kubelet suite on {adapter}: {passed} of {len(outcomes)} passed"
        )
