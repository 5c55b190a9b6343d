"""Pods and containers by state, counted at scrape time through the adapter's list calls."""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from pycrid.adapters.base import Adapter
from pycrid.adapters.deadline import set_call_deadline
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.metrics")

LIST_DEADLINE = 10.0
"""Seconds a scrape's list calls may take."""

POD_SANDBOXES = Gauge(
    "pycrid_pod_sandboxes",
    "Pod sandboxes by state (ready, notready), counted when scraped.",
    ["state"],
)
CONTAINERS = Gauge(
    "pycrid_containers",
    "Containers by state (created, running, exited, unknown), counted when scraped.",
    ["state"],
)

_SANDBOX_STATES: dict[int, str] = {cri.SANDBOX_READY: "ready", cri.SANDBOX_NOTREADY: "notready"}
_CONTAINER_STATES: dict[int, str] = {
    cri.CONTAINER_CREATED: "created",
    cri.CONTAINER_RUNNING: "running",
    cri.CONTAINER_EXITED: "exited",
    cri.CONTAINER_UNKNOWN: "unknown",
}


def _set(gauge: Gauge, names: dict[int, str], states: list[int]) -> None:
    for name in names.values():
        gauge.labels(name).set(0)
    for state in states:
        gauge.labels(names.get(state, "unknown")).inc()


async def refresh(adapter: Adapter) -> None:
    """Count the adapter's pods and containers now; an answerless backend clears the figures."""
    set_call_deadline(LIST_DEADLINE)
    if adapter.sandboxes is not None:
        try:
            pods = await adapter.sandboxes.list_pod_sandbox(cri.ListPodSandboxRequest())
            _set(POD_SANDBOXES, _SANDBOX_STATES, [p.state for p in pods.items])
        except Exception as e:  # a scrape must answer even when the backend does not
            log.debug("pods not counted: %s", e)
            POD_SANDBOXES.clear()
    if adapter.containers is not None:
        try:
            listed = await adapter.containers.list_containers(cri.ListContainersRequest())
            _set(CONTAINERS, _CONTAINER_STATES, [c.state for c in listed.containers])
        except Exception as e:
            log.debug("containers not counted: %s", e)
            CONTAINERS.clear()
