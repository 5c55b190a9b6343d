"""CheckpointContainer on the docker adapter: not carried out, and why.

``docker checkpoint create`` needs CRIU on the node and dockerd in
experimental mode, and writes Docker's own checkpoint directory, not the
archive at the CRI's ``location`` that kubelet's checkpoint API expects.
The answer is UNIMPLEMENTED, with the reason that applies on this node.
"""

from __future__ import annotations

import shutil

from pycrid.adapters.docker.api import DockerApi
from pycrid.adapters.errors import Unimplemented
from pycrid.api.cri import api_pb2 as cri


class DockerCheckpoints:
    def __init__(self, client: DockerApi) -> None:
        self.client = client

    async def checkpoint_container(
        self, request: cri.CheckpointContainerRequest
    ) -> cri.CheckpointContainerResponse:
        missing = []
        if shutil.which("criu") is None:
            missing.append("CRIU is not installed")
        info = await self.client.info()
        if not info.get("ExperimentalBuild"):
            missing.append("dockerd is not in experimental mode")
        if missing:
            reason = " and ".join(missing)
            raise Unimplemented(
                f"CheckpointContainer on the docker adapter needs `docker checkpoint`: {reason}"
            )
        raise Unimplemented(
            "CheckpointContainer on the docker adapter: Docker's checkpoints stay in its own "
            "store and are not exported to the CRI's archive location"
        )
