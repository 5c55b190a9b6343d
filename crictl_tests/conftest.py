"""Fixtures for end-to-end tests: a real daemon on a real backend.

Tests that need dockerd, the local registry, crictl or critest skip when they
are absent on a developer's machine; under CI (harness.in_ci()) their absence is
a failure, because .ci/run starts the daemons and the machines carry the tools.
crictl and critest are looked up on PATH, then in ../shared/tools/bin beside the
repository.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from crictl_tests import harness
from crictl_tests.dockerpods import pods_fixture
from crictl_tests.harness import BUSYBOX_IMAGE, Daemon
from pycrid.adapters.docker.client import DockerClient


def _need(available: bool, what: str) -> None:
    if available:
        return
    if harness.in_ci():
        pytest.fail(f"{what} is not running (scripts/testenv.sh up starts it)")
    pytest.skip(f"{what} is not running (run: bash scripts/testenv.sh up)")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    _need(harness.docker_answers(), "dockerd")


@pytest.fixture(scope="session")
def test_registry() -> None:
    _need(harness.registry_answers(), "the test registry on 127.0.0.1:5000")


@pytest.fixture(scope="module")
def docker_daemon(docker_engine: None, test_registry: None) -> Iterator[Daemon]:
    """A daemon with the docker adapter, shared by the tests of one module."""
    daemon = harness.start_daemon("docker")
    yield daemon
    daemon.stop()
    harness.remove_root(daemon)


@pytest.fixture
def daemon_factory() -> Iterator[Callable[..., Daemon]]:
    """Start daemons with their own configuration; all are stopped afterwards."""
    started: list[Daemon] = []

    def start(adapter: str = "docker", extra: dict[str, Any] | None = None) -> Daemon:
        daemon = harness.start_daemon(adapter, extra)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
        harness.remove_root(daemon)


def _tool(name: str) -> str:
    """The path of a cri-tools program; skip without it, or fail under CI."""
    path = harness.find_tool(name)
    if path is not None:
        return path
    reason = f"{name} is neither on PATH nor in {harness.SHARED_TOOLS}"
    if harness.in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def crictl() -> str:
    """The real crictl binary."""
    return _tool("crictl")


@pytest.fixture(scope="session")
def critest() -> str:
    """The real critest binary (cri-tools' CRI validation suite)."""
    return _tool("critest")


CONFORMANCE_SUMMARY = pytest.StashKey[list[str]]()


@pytest.fixture
def conformance_summary(request: pytest.FixtureRequest) -> list[str]:
    """Lines for the session's "critest conformance" summary (shown with or without -s)."""
    return request.config.stash.setdefault(CONFORMANCE_SUMMARY, [])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(CONFORMANCE_SUMMARY, [])
    if lines:
        terminalreporter.section("critest conformance")
        for line in lines:
            terminalreporter.write_line(line)


# Pods on the module's docker daemon, busybox pulled; removed and checked afterwards.
pods = pods_fixture(BUSYBOX_IMAGE)


@pytest.fixture
async def docker_client(docker_engine: None) -> AsyncIterator[DockerClient]:
    """pycrid's own client of the local dockerd."""
    client = DockerClient(f"unix://{harness.DOCKER_SOCKET}")
    await client.connect(10)
    yield client
    await client.close()
