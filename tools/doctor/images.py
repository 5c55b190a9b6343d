"""Whether the pause image is on the node, or can be pulled from where pycrid would."""

from __future__ import annotations

import asyncio

from pycrid.adapters.config import Config
from pycrid.adapters.docker.probes import docker_has_image
from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node.imageref import parse_reference
from pycrid.adapters.oci.images.probes import image_present, pullable_from
from pycrid.adapters.probes import ProbeError
from pycrid.tools.doctor.result import Result, failed, passed

PULL_PROBE_TIMEOUT = 10.0


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
            present = image_present(config, name)
    except ProbeError as e:
        present = False
        note = f" (cannot ask: {e})"
    else:
        note = ""
    if present:
        return passed("pause image", f"{name} is present")
    source, reasons = asyncio.run(pullable_from(config, ref, PULL_PROBE_TIMEOUT))
    if source:
        return passed("pause image", f"{name} not present{note}; pullable from {source}")
    return failed(
        "pause image",
        f"{name} is not present{note} and cannot be pulled ({reasons})",
        f'make {ref.domain} or a mirror of it reachable ([registries."{ref.domain}"] '
        "mirrors), or load the image onto the node",
    )
