"""Whether the pause image is on the node, or can be pulled from where pycrid would."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node import atomicfile
from pycrid.adapters.node.imageref import Reference, parse_reference
from pycrid.adapters.oci.images.auth import NO_CREDENTIALS
from pycrid.adapters.oci.images.endpoints import endpoints_for
from pycrid.adapters.oci.images.failures import RegistryError
from pycrid.adapters.oci.images.registry import RegistryClient
from pycrid.adapters.oci.images.service import find_image
from pycrid.adapters.oci.images.store import ImageRecord
from pycrid.server.backends import ProbeError, docker_has_image
from pycrid.server.doctor.result import Result, failed, passed

PULL_PROBE_TIMEOUT = 10.0


def _in_oci_store(config: Config, name: str) -> bool:
    """Read the oci adapter's image records without opening (and so changing) its store."""
    raw = atomicfile.read_json(Path(config.state_dir) / "oci" / "images.json", default={})
    records = []
    for item in raw.get("images", []):
        try:
            records.append(ImageRecord.from_json(item))
        except (TypeError, KeyError):
            continue
    return find_image(records, name) is not None


async def _pullable_from(config: Config, ref: Reference) -> tuple[str, str]:
    """(endpoint that serves the manifest, "") or ("", the reasons every endpoint gave)."""
    client = RegistryClient(progress_timeout=PULL_PROBE_TIMEOUT, retries=0)
    reasons = []
    try:
        for endpoint in endpoints_for(config, ref.domain):
            try:
                fetch = client.fetch_manifest(
                    endpoint, ref.path, ref.digest or ref.tag, NO_CREDENTIALS
                )
                await asyncio.wait_for(fetch, PULL_PROBE_TIMEOUT)
                return str(endpoint), ""
            except (RegistryError, OSError, TimeoutError) as e:
                reasons.append(f"{endpoint}: {str(e) or type(e).__name__}")
    finally:
        await client.close()
    return "", "; ".join(reasons)


def check_pause_image(config: Config) -> Result:
    name = config.pause_image
    try:
        ref = parse_reference(name)
    except InvalidArgument as e:
        return failed("pause image", str(e), "set pause_image to a valid image reference")
    try:
        if config.adapter == "docker":
            present = docker_has_image(config.docker.endpoint, name)
        else:
            present = _in_oci_store(config, name)
    except ProbeError as e:
        present = False
        note = f" (cannot ask: {e})"
    else:
        note = ""
    if present:
        return passed("pause image", f"{name} is present")
    source, reasons = asyncio.run(_pullable_from(config, ref))
    if source:
        return passed("pause image", f"{name} not present{note}; pullable from {source}")
    return failed(
        "pause image",
        f"{name} is not present{note} and cannot be pulled ({reasons})",
        f'make {ref.domain} or a mirror of it reachable ([registries."{ref.domain}"] '
        "mirrors), or load the image onto the node",
    )
