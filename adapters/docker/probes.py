"""Asking dockerd who it is and what it holds, without starting the adapter.

Probes for ``pycrid version`` and ``pycrid doctor`` (adapters/probes.py): one
short-lived client each, with a short timeout.
"""

from __future__ import annotations

from typing import Any

from pycrid.adapters.probes import PROBE_TIMEOUT, ProbeError, short


def docker_version(endpoint: str, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """dockerd's ``GET /version`` answer (``Version``, ``ApiVersion``, ...)."""
    import docker

    try:
        client = docker.APIClient(base_url=endpoint, version="1.24", timeout=timeout)
    except docker.errors.DockerException as e:
        raise ProbeError(f"docker at {endpoint}: {e}") from None
    try:
        return client.version(api_version=False)
    except (docker.errors.DockerException, OSError) as e:
        raise ProbeError(f"docker at {endpoint} is not reachable: {short(e)}") from None
    finally:
        client.close()


def docker_info(endpoint: str, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """dockerd's ``GET /info`` answer (``CgroupDriver``, ``CgroupVersion``, ...)."""
    import docker

    try:
        client = docker.APIClient(base_url=endpoint, version="1.24", timeout=timeout)
        try:
            return client.info()
        finally:
            client.close()
    except (docker.errors.DockerException, OSError) as e:
        raise ProbeError(f"docker at {endpoint} is not reachable: {short(e)}") from None


def docker_has_image(endpoint: str, name: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether dockerd holds an image under ``name``."""
    import docker

    try:
        client = docker.APIClient(base_url=endpoint, version="1.24", timeout=timeout)
        try:
            client.inspect_image(name)
            return True
        finally:
            client.close()
    except docker.errors.ImageNotFound:
        return False
    except (docker.errors.DockerException, OSError) as e:
        raise ProbeError(f"docker at {endpoint} is not reachable: {short(e)}") from None
