"""GetContainerEvents: what a subscriber sees of a container's life, and a second one too."""

from __future__ import annotations

import threading
from typing import Any

from crictl_tests.dockerpods import Pods, wait_for
from pycrid.api.cri import api_pb2 as cri


class Subscriber:
    """One GetContainerEvents stream, read in a thread into a list."""

    def __init__(self, pods: Pods) -> None:
        self.call: Any = pods.rt.GetContainerEvents(cri.GetEventsRequest())
        self.events: list[cri.ContainerEventResponse] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.append(event)
        except Exception:  # cancelled at the end of the test
            pass

    def of(self, object_id: str) -> list[cri.ContainerEventResponse]:
        return [e for e in list(self.events) if e.container_id == object_id]

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(5)


def test_subscribers_see_a_container_created_started_stopped_and_deleted(pods: Pods) -> None:
    first, second = Subscriber(pods), Subscriber(pods)
    try:
        sandbox_id = pods.run(pods.sandbox_config("events"))
        kinds = (cri.CONTAINER_CREATED_EVENT, cri.CONTAINER_STARTED_EVENT)
        for subscriber in (first, second):
            wait_for(
                lambda s=subscriber: (
                    [e.container_event_type for e in s.of(sandbox_id)] == list(kinds)
                ),
                "the pod's CREATED and STARTED events",
            )
        # It ends by itself: STOPPED comes from the runtime's own notice of the exit.
        container_id = pods.run_container(
            sandbox_id, pods.container_config("brief", command=["sh", "-c", "sleep 1; exit 3"])
        )
        expected = [
            cri.CONTAINER_CREATED_EVENT,
            cri.CONTAINER_STARTED_EVENT,
            cri.CONTAINER_STOPPED_EVENT,
        ]
        wait_for(
            lambda: [e.container_event_type for e in first.of(container_id)] == expected,
            "the container's CREATED, STARTED and STOPPED events",
        )
        pods.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=container_id))
        expected.append(cri.CONTAINER_DELETED_EVENT)
        for subscriber in (first, second):
            wait_for(
                lambda s=subscriber: (
                    [e.container_event_type for e in s.of(container_id)] == expected
                ),
                "the container's four events",
            )
        events = first.of(container_id)
        for event in events:
            assert event.created_at > 0
            assert event.pod_sandbox_status.id == sandbox_id
            assert event.pod_sandbox_status.state == cri.SANDBOX_READY
            assert event.pod_sandbox_status.metadata.name == "events"
        states = [{s.id: s for s in e.containers_statuses}[container_id].state for e in events[:3]]
        assert states == [cri.CONTAINER_CREATED, cri.CONTAINER_RUNNING, cri.CONTAINER_EXITED]
        stopped = {s.id: s for s in events[2].containers_statuses}[container_id]
        assert stopped.exit_code == 3 and stopped.finished_at > 0
        assert container_id not in {s.id for s in events[3].containers_statuses}
        assert [e.container_id for e in second.of(container_id)] == [container_id] * 4
    finally:
        first.close()
        second.close()
