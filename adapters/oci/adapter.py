"""The oci adapter: pycrid pulls, stores and unpacks images itself and runs
containers with runc under conmon, the way CRI-O and containerd do.

The ImageService works (``images/``, docs/oci-images.md); the runtime
(``runtime/``) is not built yet, so the adapter has no pod, container,
streaming or stats concern and those calls answer UNIMPLEMENTED.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pycrid.adapters.base import Adapter, StartupError
from pycrid.adapters.config import Config
from pycrid.adapters.oci.images.service import OciImages
from pycrid.api.cri import api_pb2 as cri


class OciRuntimeInfo:
    """Status and RuntimeConfig while the oci runtime is not built."""

    def __init__(self, config: Config, images: OciImages, store_root: Path) -> None:
        self.config = config
        self.images = images
        self.store_root = store_root

    async def status(self, request: cri.StatusRequest) -> cri.StatusResponse:
        runc = shutil.which("runc")
        runtime = cri.RuntimeCondition(type="RuntimeReady", status=False)
        runtime.reason = "RuntimeNotImplemented"
        runtime.message = "the oci adapter serves images but cannot run containers yet" + (
            "" if runc else " (and runc is not installed)"
        )
        network = cri.RuntimeCondition(
            type="NetworkReady",
            status=False,
            reason="NetworkPluginNotReady",
            message="the oci adapter has no pod networking yet",
        )
        response = cri.StatusResponse(
            status=cri.RuntimeStatus(conditions=[runtime, network]),
            features=cri.RuntimeFeatures(supplemental_groups_policy=False),
        )
        if request.verbose:
            response.info["config"] = json.dumps(
                {
                    "stateDir": self.config.state_dir,
                    "imageStore": str(self.store_root),
                    "images": len(self.images.store.records()),
                    "pullProgressTimeout": self.images.client.progress_timeout,
                    "registries": {
                        host: {"mirrors": r.mirrors, "insecure": r.insecure}
                        for host, r in self.config.registries.items()
                    },
                }
            )
        return response

    async def runtime_config(self, request: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        return cri.RuntimeConfigResponse(
            linux=cri.LinuxRuntimeConfiguration(cgroup_driver=cri.CGROUPFS)
        )

    async def update_runtime_config(
        self, request: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        return cri.UpdateRuntimeConfigResponse()


class OciAdapter(Adapter):
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store_root = Path(config.state_dir) / "oci"
        self.oci_images = OciImages(
            config,
            self.store_root,
            progress_timeout=config.oci.pull_progress_timeout,
            max_concurrent_downloads=config.oci.max_concurrent_downloads,
        )
        super().__init__(
            name="oci",
            runtime=OciRuntimeInfo(config, self.oci_images, self.store_root),
            images=self.oci_images,
        )

    async def start(self) -> None:
        try:
            await self.oci_images.start()
        except OSError as e:
            raise StartupError(f"cannot open the image store in {self.store_root}: {e}") from None

    async def close(self) -> None:
        await self.oci_images.close()
