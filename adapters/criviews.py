"""The CRI's views of pods and containers, built the same way by every adapter.

Each adapter keeps its own records (Docker labels and state files, the oci
runtime's store), but what the CRI answers about a pod or a container is
the same message filled from the same facts. These functions build those
messages from any record with the attributes below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar, cast

from pycrid.adapters import revision
from pycrid.adapters.records import ContainerRecord, PodRecord
from pycrid.api.cri import api_pb2 as cri

T = TypeVar("T")


def _pod_fields(record: PodRecord) -> dict[str, Any]:
    """What PodSandbox and PodSandboxStatus both say of a pod."""
    config = record.config
    return {
        "id": record.id,
        "metadata": config.metadata,
        "state": record.state,
        "created_at": record.created_at,
        "labels": config.labels,
        "annotations": config.annotations,
        "runtime_handler": record.runtime_handler,
    }


_LISTED = "_cri_listed"


def _kept(
    record: object, key: tuple[object, ...], build: Callable[[], T], attribute: str = _LISTED
) -> T:
    """``build()``, made again only when ``key`` changed since the last call for ``record``.

    kubelet lists every pod and container every second, and most have not
    changed since; the listed message is kept on the record with the facts it
    was built from. Callers copy it into their answer and never change it.
    """
    kept = getattr(record, attribute, None)
    if kept is not None and kept[0] == key:
        return cast(T, kept[1])
    view = build()
    object.__setattr__(record, attribute, (key, view))  # a view kept is no change
    return view


def status_answer(record: object, build: Callable[[], T]) -> T:
    """A status call's answer for ``record``, made again only once some record changed.

    kubelet asks the status of every pod and container every second; the
    answer depends on the record alone, and any change to a record moves
    the revision (revision.py). Callers never change the answer.
    """
    return _kept(record, (revision.current(),), build, "_cri_status_answer")


def pod_sandbox(record: PodRecord) -> cri.PodSandbox:
    """The pod as ListPodSandbox lists it."""
    return _kept(
        record,
        (record.state, record.created_at),
        lambda: cri.PodSandbox(**_pod_fields(record)),
    )


def pod_sandbox_status(record: PodRecord) -> cri.PodSandboxStatus:
    """PodSandboxStatus: the IPs while the network is up, the namespace options."""
    config = record.config
    status = cri.PodSandboxStatus(**_pod_fields(record))
    network = record.network
    if not network.torn_down and network.ips:
        status.network.ip = network.ips[0]
        status.network.additional_ips.extend(cri.PodIP(ip=ip) for ip in network.ips[1:])
    status.linux.namespaces.options.CopyFrom(config.linux.security_context.namespace_options)
    return status


def container(record: ContainerRecord) -> cri.Container:
    """The container as ListContainers lists it."""
    return _kept(
        record,
        (record.state, record.created_at, _listed_image_ref(record), record.image_id),
        lambda: _container(record),
    )


def _listed_image_ref(record: ContainerRecord) -> str:
    """ListContainers' image_ref: the image's ID, as containerd and cri-dockerd list it.

    kubelet's image garbage collector takes an image to be in use when a
    listed container's image_ref equals the image's ID in ListImages; a repo
    digest there would make it remove the images of running containers.
    ContainerStatus keeps the pullable reference. An adapter may list yet
    another reference (``listed_image_ref``).
    """
    return getattr(record, "listed_image_ref", "") or record.image_id or record.image_ref


def _container(record: ContainerRecord) -> cri.Container:
    config = record.config
    return cri.Container(
        id=record.id,
        pod_sandbox_id=record.sandbox_id,
        metadata=config.metadata,
        image=config.image,
        image_ref=_listed_image_ref(record),
        image_id=record.image_id,
        state=record.state,
        created_at=record.created_at,
        labels=config.labels,
        annotations=config.annotations,
    )


def container_status(record: ContainerRecord) -> cri.ContainerStatus:
    """ContainerStatus; the exit code and finish time only once the container exited."""
    config = record.config
    exited = record.state == cri.CONTAINER_EXITED
    status = cri.ContainerStatus(
        id=record.id,
        metadata=config.metadata,
        state=record.state,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at if exited else 0,
        exit_code=record.exit_code if exited else 0,
        image=config.image,
        image_ref=record.image_ref,
        image_id=record.image_id,
        reason=record.reason,
        message=record.message,
        labels=config.labels,
        annotations=config.annotations,
        mounts=config.mounts,
        log_path=record.log_path,
        stop_signal=config.stop_signal,
    )
    status.resources.linux.CopyFrom(record.resources)
    return status


def event_statuses(
    pod: PodRecord | None, containers: Iterable[ContainerRecord]
) -> tuple[cri.PodSandboxStatus | None, list[cri.ContainerStatus]]:
    """The statuses a container event carries: its pod's (None once the pod is gone) and
    those of the pod's containers."""
    pod_status = pod_sandbox_status(pod) if pod is not None else None
    return pod_status, [container_status(record) for record in containers]


def container_attributes(record: ContainerRecord) -> cri.ContainerAttributes:
    config = record.config
    return cri.ContainerAttributes(
        id=record.id, metadata=config.metadata, labels=config.labels, annotations=config.annotations
    )


def pod_attributes(record: PodRecord) -> cri.PodSandboxAttributes:
    config = record.config
    return cri.PodSandboxAttributes(
        id=record.id, metadata=config.metadata, labels=config.labels, annotations=config.annotations
    )


A = TypeVar("A")


class KeptAnswer(Generic[A]):
    """An unfiltered list answer, given again while nothing it shows changed.

    The answer is kept under a key that starts with the revision it was made
    at (revision.py) and holds whatever else it was made from (the oci
    adapter's exit directory). Building a list answer copies every listed
    message into it, the larger part of a list call at a hundred pods; a
    kept answer is only serialized again. Callers never change it.
    """

    __slots__ = ("_answer", "_key")

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._answer: A | None = None

    @staticmethod
    def key(*parts: object) -> tuple[object, ...]:
        """The key of an answer made now from ``parts``; take it before making the answer."""
        return (revision.current(), *parts)

    def get(self, key: tuple[object, ...]) -> A | None:
        return self._answer if key == self._key else None

    def keep(self, key: tuple[object, ...], answer: A) -> A:
        self._key, self._answer = key, answer
        return answer
