"""From the states an adapter observes to the CRI's container events, each once.

Adapters learn of a state in many places (their own calls, Docker's events,
conmon's exit files, listings) and often more than once. The feed remembers
the last event sent for every pod and container and sends only the steps
still missing, in order: CREATED, STARTED, STOPPED, DELETED. A pod sandbox
is an object of its own here, as containerd reports it: READY is STARTED,
NOTREADY after that is STOPPED.

Each event carries what PodSandboxStatus and ContainerStatus would answer
for the pod and its containers at that moment, which is what kubelet's
Evented PLEG puts in its cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

from pycrid.adapters import criviews
from pycrid.adapters.containerevents import ContainerEvents
from pycrid.adapters.records import RecordStore
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.containers")

Statuses = Callable[[str], tuple[cri.PodSandboxStatus | None, list[cri.ContainerStatus]]]
"""A pod's status (None once it is gone) and its containers' statuses, by pod ID."""

CREATED = cri.CONTAINER_CREATED_EVENT
STARTED = cri.CONTAINER_STARTED_EVENT
STOPPED = cri.CONTAINER_STOPPED_EVENT
DELETED = cri.CONTAINER_DELETED_EVENT

_CONTAINER_STAGE: dict[int, int] = {
    cri.CONTAINER_CREATED: CREATED,
    cri.CONTAINER_RUNNING: STARTED,
    cri.CONTAINER_EXITED: STOPPED,
}


def store_statuses(store: RecordStore) -> Statuses:
    """``Statuses`` from an adapter's store: its published containers only."""

    def statuses(sandbox_id: str) -> tuple[cri.PodSandboxStatus | None, list[cri.ContainerStatus]]:
        return criviews.event_statuses(
            store.sandboxes.get(sandbox_id),
            [c for c in store.containers_of(sandbox_id) if c.id in store.container_ids],
        )

    return statuses


class EventFeed:
    def __init__(self, hub: ContainerEvents, statuses: Statuses) -> None:
        self.hub = hub
        self.statuses = statuses
        self._sent: dict[str, int] = {}
        self._last_pod: dict[str, cri.PodSandboxStatus] = {}

    def seed(self, object_id: str, stage: int) -> None:
        """An object found at start-up, already at ``stage``: nothing is sent for it."""
        self._sent[object_id] = stage

    def seed_store(self, store: RecordStore) -> None:
        """Seed every recovered record."""
        for sandbox in store.sandboxes.values():
            self.seed(sandbox.id, STARTED if sandbox.ready else STOPPED)
        for container in store.containers.values():
            self.seed(container.id, int(container.state))

    def container(self, container_id: str, sandbox_id: str, state: int, started: bool) -> None:
        """The container is in CRI ``state``; ``started`` when it ever ran."""
        target = _CONTAINER_STAGE.get(state)
        if target is None:
            return
        skip = () if started else (STARTED,)
        self._advance(container_id, sandbox_id, target, skip)

    def sandbox(self, sandbox_id: str, ready: bool) -> None:
        if ready:
            self._advance(sandbox_id, sandbox_id, STARTED, ())
        elif sandbox_id in self._sent:
            self._advance(sandbox_id, sandbox_id, STOPPED, ())

    def deleted(self, object_id: str, sandbox_id: str) -> None:
        """The object is gone; sent once, and only for objects the feed knew."""
        if object_id not in self._sent:
            return
        self._advance(object_id, sandbox_id, DELETED, ())
        del self._sent[object_id]
        if object_id == sandbox_id:
            self._last_pod.pop(sandbox_id, None)

    def _advance(self, object_id: str, sandbox_id: str, target: int, skip: tuple[int, ...]) -> None:
        last = self._sent.get(object_id, -1)
        if target <= last:
            return
        self._sent[object_id] = target
        if object_id != sandbox_id and target in (STARTED, STOPPED):
            self._log(object_id, sandbox_id, target)
        if not self.hub.subscribed:
            return
        for stage in range(last + 1, target + 1):
            if stage not in skip:
                self.hub.publish(self._event(object_id, sandbox_id, stage))

    def _log(self, container_id: str, sandbox_id: str, stage: int) -> None:
        """A container's start and its end, with how it ended, at info level."""
        if stage == STARTED:
            log.info("container %s started in pod sandbox %s", container_id[:13], sandbox_id[:13])
            return
        _, containers = self.statuses(sandbox_id)
        for status in containers:
            if status.id == container_id:
                log.info(
                    "container %s exited: code %d, %s",
                    container_id[:13],
                    status.exit_code,
                    status.reason or "no reason given",
                )
                return
        log.info("container %s exited", container_id[:13])

    def _event(self, object_id: str, sandbox_id: str, stage: int) -> cri.ContainerEventResponse:
        pod, containers = self.statuses(sandbox_id)
        if pod is None:
            pod = self._last_pod.get(sandbox_id)
            if pod is not None:
                pod.state = cri.SANDBOX_NOTREADY
        else:
            self._last_pod[sandbox_id] = pod
        return cri.ContainerEventResponse(
            container_id=object_id,
            container_event_type=cast(cri.ContainerEventType, stage),
            created_at=time.time_ns(),
            pod_sandbox_status=pod,
            containers_statuses=containers,
        )
