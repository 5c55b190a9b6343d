"""The adapters' backend and CNI call metrics."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from pycrid.adapters.backendmetrics import timed_backend_call, timed_cni_call


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_backend_call_is_timed_and_its_failure_counted() -> None:
    labels = {"backend": "unit", "call": "inspect"}
    before = sample("pycrid_backend_call_duration_seconds_count", **labels)
    with timed_backend_call("unit", "inspect"):
        pass
    with pytest.raises(RuntimeError), timed_backend_call("unit", "inspect"):
        raise RuntimeError("boom")
    assert sample("pycrid_backend_call_duration_seconds_count", **labels) == before + 2
    assert sample("pycrid_backend_call_failures_total", **labels) == 1


def test_a_cni_call_is_timed_and_its_failure_counted() -> None:
    labels = {"command": "ADD", "plugin": "unit-bridge"}
    with pytest.raises(OSError), timed_cni_call("ADD", "unit-bridge"):
        raise OSError("no plugin")
    assert sample("pycrid_cni_call_duration_seconds_count", **labels) == 1
    assert sample("pycrid_cni_call_failures_total", **labels) == 1
