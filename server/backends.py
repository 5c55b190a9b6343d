"""Asking the backends who they are, without starting an adapter.

``pycrid version`` and ``pycrid doctor`` use these; each call is bounded by a
short timeout so that a hung dockerd makes them slow by seconds, not forever.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

PROBE_TIMEOUT = 3.0


class ProbeError(Exception):
    """The backend could not be asked; the message says why."""


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
        raise ProbeError(f"docker at {endpoint} is not reachable: {_short(e)}") from None
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
        raise ProbeError(f"docker at {endpoint} is not reachable: {_short(e)}") from None


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
        raise ProbeError(f"docker at {endpoint} is not reachable: {_short(e)}") from None


def program_version(name: str, timeout: float = PROBE_TIMEOUT) -> str:
    """The first line of ``name --version``."""
    path = shutil.which(name)
    if path is None:
        raise ProbeError(f"{name} is not on PATH")
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ProbeError(f"{path} --version: {e}") from None
    lines = (done.stdout or done.stderr).strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ProbeError(f"{path} --version exited {done.returncode}")
    return lines[0].strip()


def _short(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]
