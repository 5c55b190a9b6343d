"""Fixtures of the contract suite: each test runs once per adapter.

A test takes ``daemon`` when it needs runtime information or images, or
``runtime_daemon`` (or ``pods``, built on it) when it needs the
RuntimeService's pods and containers; every adapter must pass both kinds.
What one adapter cannot do is a strict ``xfail`` on that test, with the reason.

Each test module gets one daemon per adapter, started when its first test
asks for it; docker daemons use the harness's "docker" network mode.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crictl_tests import harness
from crictl_tests.dockerpods import Pods, open_pods
from crictl_tests.harness import BUSYBOX_IMAGE, Daemon

ADAPTERS = ["docker", "oci"]


@pytest.fixture(scope="module", params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    """An adapter that must pass the test: both of them."""
    return request.param


@pytest.fixture(scope="module", params=ADAPTERS)
def runtime_adapter(request: pytest.FixtureRequest) -> str:
    """An adapter for a RuntimeService test: both of them."""
    return request.param


class Daemons:
    """The module's daemons, one per adapter, started on first use."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.started: dict[str, Daemon] = {}

    def get(self, adapter: str) -> Daemon:
        if adapter not in self.started:
            if adapter == "docker":
                self.request.getfixturevalue("docker_engine")
            self.started[adapter] = harness.start_daemon(adapter)
        return self.started[adapter]

    def stop_all(self) -> None:
        for daemon in self.started.values():
            daemon.stop()
            harness.remove_root(daemon)
        self.started.clear()


@pytest.fixture(scope="module")
def daemons(request: pytest.FixtureRequest, test_registry: None) -> Iterator[Daemons]:
    started = Daemons(request)
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def daemon(adapter: str, daemons: Daemons) -> Daemon:
    """The module's daemon on ``adapter``."""
    return daemons.get(adapter)


@pytest.fixture(scope="module")
def runtime_daemon(runtime_adapter: str, daemons: Daemons) -> Daemon:
    """The module's daemon on ``runtime_adapter``."""
    return daemons.get(runtime_adapter)


@pytest.fixture
def pods(runtime_daemon: Daemon) -> Iterator[Pods]:
    """Pods on the runtime daemon, busybox pulled; removed and checked afterwards."""
    with open_pods(runtime_daemon, BUSYBOX_IMAGE) as pods:
        yield pods
