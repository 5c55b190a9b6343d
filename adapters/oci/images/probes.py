"""What ``pycrid doctor`` asks of the oci adapter's images, without opening its store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.node import atomicfile
from pycrid.adapters.node.imageref import Reference
from pycrid.adapters.oci.images.auth import NO_CREDENTIALS
from pycrid.adapters.oci.images.endpoints import endpoints_for
from pycrid.adapters.oci.images.failures import RegistryError
from pycrid.adapters.oci.images.registry import RegistryClient
from pycrid.adapters.oci.images.service import find_image
from pycrid.adapters.oci.images.store import ImageRecord


def image_present(config: Config, name: str) -> bool:
    """Read the image records without opening (and so changing) the store."""
    raw = atomicfile.read_json(Path(config.state_dir) / "oci" / "images.json", default={})
    records = []
    for item in raw.get("images", []):
        try:
            records.append(ImageRecord.from_json(item))
        except (TypeError, KeyError):
            continue
    return find_image(records, name) is not None


async def pullable_from(config: Config, ref: Reference, timeout: float) -> tuple[str, str]:
    """(endpoint that serves the manifest, "") or ("", the reasons every endpoint gave)."""
    client = RegistryClient(progress_timeout=timeout, retries=0)
    reasons = []
    try:
        for endpoint in endpoints_for(config, ref.domain):
            try:
                fetch = client.fetch_manifest(
                    endpoint, ref.path, ref.digest or ref.tag, NO_CREDENTIALS
                )
                await asyncio.wait_for(fetch, timeout)
                return str(endpoint), ""
            except (RegistryError, OSError, TimeoutError) as e:
                reasons.append(f"{endpoint}: {str(e) or type(e).__name__}")
    finally:
        await client.close()
    return "", "; ".join(reasons)
