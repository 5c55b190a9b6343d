"""The daemon's own Prometheus metrics: CRI calls, image pulls, streaming sessions.

They live in prometheus_client's default registry, beside the adapters'
backend and CNI metrics and the process collector; ``metricsendpoint`` serves
that registry. ``observe_call`` is fed by the handler wrappers (instrument.py) for
every CRI call, so every adapter gets the same figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from pycrid.adapters.base import Adapter
from pycrid.api.cri import api_pb2 as cri

RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
PULL_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

REQUESTS = Counter(
    "pycrid_grpc_requests_total",
    "CRI calls answered, by method and gRPC status code.",
    ["method", "code"],
)
REQUEST_SECONDS = Histogram(
    "pycrid_grpc_request_duration_seconds",
    "Time to answer a CRI call, by method and gRPC status code.",
    ["method", "code"],
    buckets=RPC_BUCKETS,
)
IN_FLIGHT = Gauge(
    "pycrid_grpc_requests_in_flight",
    "CRI calls being served now.",
    ["method"],
)
PULLS = Counter("pycrid_image_pulls_total", "PullImage calls answered.")
PULL_FAILURES = Counter(
    "pycrid_image_pull_failures_total",
    "PullImage calls that failed, by gRPC status code.",
    ["code"],
)
PULL_SECONDS = Histogram(
    "pycrid_image_pull_duration_seconds",
    "Time of a successful PullImage call.",
    buckets=PULL_BUCKETS,
)
PULL_BYTES = Counter(
    "pycrid_image_pull_bytes_total",
    "Size of the images that successful PullImage calls made present.",
)
STREAMING_SESSIONS = Counter(
    "pycrid_streaming_sessions_total",
    "Streaming sessions (exec, attach, portforward) started.",
    ["kind"],
)
STREAMING_ACTIVE = Gauge(
    "pycrid_streaming_sessions_active",
    "Streaming sessions open now.",
    ["kind"],
)

PULL_METHOD = "PullImage"


_CallSeries = tuple[Any, Any]
_call_series: dict[tuple[str, str], _CallSeries] = {}
"""The counter and histogram children by (method, code), looked up once: kubelet
makes the same few calls every second, and ``labels()`` takes a lock each time."""


def in_flight(method: str) -> Any:
    """The in-flight gauge of ``method``."""
    return IN_FLIGHT.labels(method)


def observe_call(method: str, code: str, seconds: float) -> None:
    """Count one finished CRI call (``code`` is the gRPC code's name, e.g. ``OK``)."""
    series = _call_series.get((method, code))
    if series is None:
        series = (REQUESTS.labels(method, code), REQUEST_SECONDS.labels(method, code))
        _call_series[(method, code)] = series
    series[0].inc()
    series[1].observe(seconds)
    if method == PULL_METHOD:
        PULLS.inc()
        if code == "OK":
            PULL_SECONDS.observe(seconds)
        else:
            PULL_FAILURES.labels(code).inc()


@contextmanager
def streaming_session(kind: str) -> Iterator[None]:
    """Count a streaming session (``exec``, ``attach``, ``portforward``) and hold it active."""
    STREAMING_SESSIONS.labels(kind).inc()
    with STREAMING_ACTIVE.labels(kind).track_inprogress():
        yield


class PullSizes:
    """Adds a pulled image's size to ``PULL_BYTES``, read with ImageStatus.

    The size is what the backend reports for the image (compressed or not,
    as the adapter's ImageStatus says), so a pull of an image already present
    counts its size again: the figure is bytes made present, not bytes moved.
    """

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    async def after_pull(self, response: cri.PullImageResponse) -> None:
        images = self.adapter.images
        if images is None or not response.image_ref:
            return
        status = await images.image_status(
            cri.ImageStatusRequest(image=cri.ImageSpec(image=response.image_ref))
        )
        if status.HasField("image"):
            PULL_BYTES.inc(status.image.size)
