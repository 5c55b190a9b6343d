"""What a pod's containers need of it: whether it still runs, and what they join.

Below sandboxes.py and containers.py: both read a pod through it, so neither
needs the other to answer for a pod.
"""

from __future__ import annotations

from pycrid.adapters.oci.runtime.context import OciContext
from pycrid.adapters.oci.runtime.spec import PodFacts
from pycrid.adapters.oci.runtime.store import SandboxRecord


def refresh(ctx: OciContext, record: SandboxRecord, exited: frozenset[str] | None = None) -> None:
    """A pod whose pause process exited is not ready any more.

    ``exited``: what ``ctx.exited()`` said, when the caller looks at many pods.
    """
    if record.ready and record.id in (ctx.exited() if exited is None else exited):
        record.ready = False


def pod_facts(ctx: OciContext, record: SandboxRecord) -> PodFacts:
    """What a container of this pod joins and mounts."""
    directory = ctx.pod_dir(record.id)
    shm = ctx.shm_path(record.id)
    return PodFacts(
        sandbox_id=record.id,
        netns_path="" if record.network.mode == "host" else record.network.netns,
        pause_pid=record.pid,
        shm_path=str(shm) if shm.exists() else "",
        hostname_path=str(directory / "hostname"),
        hosts_path=str(directory / "hosts"),
        resolv_conf_path=str(directory / "resolv.conf"),
    )
