"""What ``pycrid version`` prints: pycrid, the CRI it serves, its runtime, its backend."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.docker.probes import docker_version
from pycrid.adapters.probes import ProbeError, program_version
from pycrid.adapters.version import KUBELET_API_VERSION, PYCRID_VERSION, RUNTIME_API_VERSION


def source_commit() -> str:
    """The git commit of the source tree pycrid runs from, or "" (an installed wheel)."""
    git = Path(__file__).resolve().parent.parent / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head.removeprefix("ref: ")
            loose = git / ref
            if loose.is_file():
                return loose.read_text().strip()[:12]
            for line in (git / "packed-refs").read_text().splitlines():
                if line.endswith(f" {ref}"):
                    return line.split()[0][:12]
            return ""
        return head[:12]
    except OSError:
        return ""


def _package(name: str) -> str:
    try:
        return dist_version(name)
    except PackageNotFoundError:
        return "not installed"


def version_lines(config: Config | None) -> list[str]:
    """One ``name: value`` line per fact; backend lines only when ``config`` is given."""
    commit = source_commit()
    lines = [
        f"pycrid {PYCRID_VERSION}" + (f" (commit {commit})" if commit else ""),
        f"CRI API: runtime.{RUNTIME_API_VERSION} "
        f"(the Version RPC reports {KUBELET_API_VERSION}, as kubelet requires)",
        f"Python: {platform.python_version()} ({platform.python_implementation()})",
        f"grpcio: {_package('grpcio')}",
        f"protobuf: {_package('protobuf')}",
    ]
    if config is None:
        return lines
    lines.append(f"adapter: {config.adapter}")
    if config.adapter == "docker":
        try:
            answer = docker_version(config.docker.endpoint)
            lines.append(
                f"docker: Engine {answer.get('Version', '?')}, "
                f"API {answer.get('ApiVersion', '?')} at {config.docker.endpoint}"
            )
        except ProbeError as e:
            lines.append(f"docker: unknown ({e})")
    else:
        for program in ("runc", "conmon"):
            try:
                lines.append(f"{program}: {program_version(program)}")
            except ProbeError as e:
                lines.append(f"{program}: unknown ({e})")
    return lines
