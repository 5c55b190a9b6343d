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
