"""The CRI's list filters: by ID, by state, by labels (adapter-independent)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    """A label selector: every key of ``selector`` is there with its value."""
    return all(labels.get(key) == value for key, value in selector.items())


def admits(wanted: Any, object_id: str, state: int, labels: Mapping[str, str]) -> bool:
    """Whether a ContainerFilter or PodSandboxFilter lets an object through.

    ID, state and labels only; a container's pod is for the caller to check.
    """
    return (
        (not wanted.id or object_id == wanted.id)
        and (not wanted.HasField("state") or state == wanted.state.state)
        and labels_match(labels, wanted.label_selector)
    )


def passes_all(wanted: Any) -> bool:
    """True for a ContainerFilter or PodSandboxFilter that sets nothing: kubelet's relist.

    Lists check it once, not ``admits`` per object.
    """
    return not (
        wanted.id
        or wanted.HasField("state")
        or wanted.label_selector
        or getattr(wanted, "pod_sandbox_id", "")
    )


def admits_stats(
    wanted: Any, object_id: str, labels: Mapping[str, str], sandbox_id: str = ""
) -> bool:
    """Whether a ContainerStatsFilter or PodSandboxStatsFilter lets an object through.

    By ID, by pod (a container's ``sandbox_id``; pod filters have no such field)
    and by labels.
    """
    pod = getattr(wanted, "pod_sandbox_id", "")
    return (
        (not wanted.id or object_id == wanted.id)
        and (not pod or sandbox_id == pod)
        and labels_match(labels, wanted.label_selector)
    )


def selects_all(wanted: Any) -> bool:
    """True for a filter that lets everything through."""
    return not (wanted.id or getattr(wanted, "pod_sandbox_id", "") or wanted.label_selector)
