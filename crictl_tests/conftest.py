"""Fixtures for end-to-end tests: a real daemon on a real backend.

Tests that need dockerd or the local registry skip when they are absent on a
developer's machine; under CI (CI set) their absence is a failure, because
.ci/run starts them.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from pycrid.adapters.docker.client import DockerClient
from pycrid.crictl_tests import harness
from pycrid.crictl_tests.dockerpods import pods_fixture
from pycrid.crictl_tests.harness import BUSYBOX_IMAGE, Daemon


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


@pytest.fixture(scope="session")
def crictl() -> str:
    """The real crictl binary; tests using it skip when it is not installed."""
    path = shutil.which("crictl")
    if path is None:
        pytest.skip("crictl is not installed")
    return path


# Pods on the module's docker daemon, busybox pulled; removed and checked afterwards.
pods = pods_fixture(BUSYBOX_IMAGE)


@pytest.fixture
async def docker_client(docker_engine: None) -> AsyncIterator[DockerClient]:
    """pycrid's own client of the local dockerd."""
    client = DockerClient(f"unix://{harness.DOCKER_SOCKET}")
    await client.connect(10)
    yield client
    await client.close()
