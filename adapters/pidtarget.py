"""The container whose PID namespace a TARGET-mode container joins.

The CRI's ``namespace_options.pid = TARGET`` (kubelet's ephemeral debug
containers) names a container of the same pod; joining one of another pod
would show that pod's processes, so anything else is refused, as containerd
refuses it.
"""

from __future__ import annotations

from collections.abc import Callable

from pycrid.adapters.errors import CRIError, InvalidArgument


def same_pod_target(
    target_id: str, sandbox_id: str, resolve: Callable[[str], str], pod_of: Callable[[str], str]
) -> str:
    """The full ID of the target: ``resolve`` maps an ID prefix to a full ID,
    ``pod_of`` a full ID to its pod's ID. InvalidArgument unless it is in
    ``sandbox_id``."""
    where = f"namespace_options.target_id {target_id[:64]!r}"
    if not target_id:
        raise InvalidArgument("namespace_options.target_id is required for PID mode TARGET")
    try:
        full = resolve(target_id)
    except CRIError:
        raise InvalidArgument(f"{where} names no container") from None
    if pod_of(full) != sandbox_id:
        raise InvalidArgument(f"{where} is a container of another pod")
    return full
