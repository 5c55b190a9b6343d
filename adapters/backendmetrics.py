"""Prometheus metrics that the adapters observe: backend and CNI calls.

The adapters observe them directly, through module-level metrics in
prometheus_client's default registry; the server exposes that registry, so
the seam still runs one way (the server knows the adapters, not the reverse).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

BACKEND_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)

BACKEND_CALL_SECONDS = Histogram(
    "pycrid_backend_call_duration_seconds",
    "Time of one call to the backend: a Docker Engine API call or a runc/conmon command.",
    ["backend", "call"],
    buckets=BACKEND_BUCKETS,
)
BACKEND_CALL_FAILURES = Counter(
    "pycrid_backend_call_failures_total",
    "Backend calls that failed (an error answer, a timeout, a non-zero exit).",
    ["backend", "call"],
)
CNI_CALL_SECONDS = Histogram(
    "pycrid_cni_call_duration_seconds",
    "Time of one CNI plugin invocation.",
    ["command", "plugin"],
    buckets=BACKEND_BUCKETS,
)
CNI_CALL_FAILURES = Counter(
    "pycrid_cni_call_failures_total",
    "CNI plugin invocations that failed or timed out.",
    ["command", "plugin"],
)


@contextmanager
def timed_backend_call(backend: str, call: str) -> Iterator[None]:
    """Observe one backend call's duration, and count it as failed if it raises."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        BACKEND_CALL_FAILURES.labels(backend, call).inc()
        raise
    finally:
        BACKEND_CALL_SECONDS.labels(backend, call).observe(time.monotonic() - started)


@contextmanager
def timed_cni_call(command: str, plugin: str) -> Iterator[None]:
    """Observe one CNI plugin invocation, and count it as failed if it raises."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        CNI_CALL_FAILURES.labels(command, plugin).inc()
        raise
    finally:
        CNI_CALL_SECONDS.labels(command, plugin).observe(time.monotonic() - started)
