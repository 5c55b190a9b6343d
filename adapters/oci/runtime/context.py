"""What the oci runtime's pod, container, stats and recovery code share, and where
its files are.

State that must survive a reboot's loss of ``/run`` (records, conmon's exit
files, root filesystems) is under the state directory; what lives only as
long as the processes (bundles, runc's state, namespace pins, the pod's
/dev/shm) is under the run directory::

    <state_dir>/oci/runtime/sandboxes/<id>/record.json, exit, fs/{upper,work,rootfs}
    <state_dir>/oci/runtime/containers/<id>/record.json, exit, oom, fs/..., volumes/
    <run_dir>/oci/bundles/<id>/config.json, attach, ctl, conmon.pid, pidfile
    <run_dir>/oci/pods/<sandbox id>/hostname, hosts, resolv.conf, shm/
    <run_dir>/oci/netns/<sandbox id>
    <run_dir>/oci/runc/, exits/
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.node.podnetwork import PodNetworks
from pycrid.adapters.oci.images.service import OciImages
from pycrid.adapters.oci.runtime.exitwatch import ExitWatch
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.adapters.oci.runtime.ociapi import ConmonApi, RuncApi
from pycrid.adapters.oci.runtime.store import RuntimeStore


@dataclass
class OciContext:
    config: Config
    images: OciImages
    store: RuntimeStore
    runc: RuncApi
    conmon: ConmonApi
    networks: PodNetworks
    node: NodeFacts
    run_dir: Path
    exits: ExitWatch = field(init=False)

    def __post_init__(self) -> None:
        self.exits = ExitWatch(self.exit_dir)

    # Per object.

    def bundle(self, object_id: str) -> Path:
        return self.run_dir / "bundles" / object_id

    def pod_dir(self, sandbox_id: str) -> Path:
        return self.run_dir / "pods" / sandbox_id

    def shm_path(self, sandbox_id: str) -> Path:
        return self.pod_dir(sandbox_id) / "shm"

    @property
    def exit_dir(self) -> Path:
        return self.run_dir / "exits"

    def exited(self) -> frozenset[str]:
        """IDs whose process conmon saw exit (exitwatch.py).

        conmon writes ``<exit_dir>/<id>`` when the process it watches ends; the
        files go when the object is removed.
        """
        return self.exits.ids()
