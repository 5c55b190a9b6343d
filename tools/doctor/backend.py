"""Checks of the backend the configured adapter drives."""

from __future__ import annotations

from pycrid.adapters.config import Config
from pycrid.adapters.docker.probes import docker_version
from pycrid.adapters.probes import ProbeError, program_version
from pycrid.tools.doctor.result import Result, failed, passed

# The oldest Engine API the docker adapter is tested against (Docker 20.10).
MIN_DOCKER_API = (1, 41)


def _api_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)


def check_docker(config: Config) -> Result:
    endpoint = config.docker.endpoint
    try:
        answer = docker_version(endpoint)
    except ProbeError as e:
        return failed(
            "dockerd",
            str(e),
            "start dockerd (systemctl start docker), or point docker.endpoint / "
            "--docker-endpoint at the socket it serves",
        )
    api = str(answer.get("ApiVersion", "0"))
    detail = f"Engine {answer.get('Version', '?')}, API {api} at {endpoint}"
    if _api_tuple(api) < MIN_DOCKER_API:
        wanted = ".".join(map(str, MIN_DOCKER_API))
        return failed("dockerd", detail, f"upgrade Docker Engine to API {wanted} (20.10) or later")
    return passed("dockerd", detail)


def check_program(name: str, package: str) -> Result:
    try:
        return passed(name, program_version(name))
    except ProbeError as e:
        return failed(name, str(e), f"install it (Debian: apt-get install {package})")


def backend_checks(config: Config) -> list[Result]:
    if config.adapter == "docker":
        return [check_docker(config)]
    return [check_program("runc", "runc"), check_program("conmon", "conmon")]
