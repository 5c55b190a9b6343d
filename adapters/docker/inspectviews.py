"""Docker's inspect answers in the shapes containerd's verbose status shows.

``crictl inspect`` users (and tools written against containerd) read
``runtimeSpec`` (the OCI runtime spec) and ``crictl inspecti`` users read
``imageSpec`` (the OCI image config). Docker keeps neither as a document, so
these are derived from its inspect: what it reports, under the OCI names;
what it does not report is left out rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pycrid.adapters.docker.api import ContainerInspect, InspectHostConfig

IMAGE_CONFIG_KEYS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
)
"""The OCI image config's ``config`` fields, which Docker's ``Config`` names alike."""


def image_spec(inspect: Mapping[str, Any]) -> dict[str, Any]:
    """The OCI image configuration of a Docker image inspect."""
    config = inspect.get("Config") or {}
    spec: dict[str, Any] = {
        "created": inspect.get("Created") or "",
        "architecture": inspect.get("Architecture") or "",
        "os": inspect.get("Os") or "",
        "config": {key: config[key] for key in IMAGE_CONFIG_KEYS if config.get(key)},
        "rootfs": {
            "type": "layers",
            "diff_ids": list((inspect.get("RootFS") or {}).get("Layers") or []),
        },
    }
    if inspect.get("Variant"):
        spec["variant"] = inspect["Variant"]
    if inspect.get("Author"):
        spec["author"] = inspect["Author"]
    return spec


def _namespaces(host: InspectHostConfig) -> list[dict[str, str]]:
    """Each Docker mode ``container:<id>`` names the pause container's namespace."""
    namespaces = [{"type": "mount"}]
    for kind, key in (("network", "NetworkMode"), ("ipc", "IpcMode"), ("pid", "PidMode")):
        mode = str(host.get(key) or "")
        if mode == "host":
            continue
        entry = {"type": kind}
        if mode.startswith("container:"):
            entry["path"] = f"container:{mode.split(':', 1)[1]}"
        namespaces.append(entry)
    if host.get("UTSMode") != "host":
        namespaces.append({"type": "uts"})
    return namespaces


def _resources(host: InspectHostConfig) -> dict[str, Any]:
    cpu = {
        "shares": host.get("CpuShares") or None,
        "quota": host.get("CpuQuota") or None,
        "period": host.get("CpuPeriod") or None,
        "cpus": host.get("CpusetCpus") or None,
        "mems": host.get("CpusetMems") or None,
    }
    memory = {"limit": host.get("Memory") or None, "swap": host.get("MemorySwap") or None}
    resources: dict[str, Any] = {
        "cpu": {k: v for k, v in cpu.items() if v is not None},
        "memory": {k: v for k, v in memory.items() if v is not None},
    }
    if host.get("PidsLimit"):
        resources["pids"] = {"limit": host["PidsLimit"]}
    return resources


def runtime_spec(inspect: ContainerInspect) -> dict[str, Any]:
    """An OCI-runtime-spec-shaped view of a Docker container inspect."""
    config = inspect.get("Config") or {}
    host = inspect.get("HostConfig") or {}
    args = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    if not args and inspect.get("Path"):
        args = [inspect["Path"], *(inspect.get("Args") or [])]
    user = str(config.get("User") or "")
    process: dict[str, Any] = {
        "terminal": bool(config.get("Tty")),
        "args": args,
        "env": list(config.get("Env") or []),
        "cwd": config.get("WorkingDir") or "/",
        "capabilities": {"add": host.get("CapAdd") or [], "drop": host.get("CapDrop") or []},
    }
    if user:
        process["user"] = {"username": user}
    mounts = [
        {
            "destination": mount.get("Destination", ""),
            "type": "bind" if mount.get("Type") == "bind" else mount.get("Type", ""),
            "source": mount.get("Source", ""),
            "options": ["rbind", "rw" if mount.get("RW", True) else "ro"],
        }
        for mount in inspect.get("Mounts") or []
    ]
    linux: dict[str, Any] = {
        "resources": _resources(host),
        "namespaces": _namespaces(host),
        "cgroupsPath": host.get("CgroupParent") or "",
    }
    if host.get("Sysctls"):
        linux["sysctl"] = dict(host.get("Sysctls") or {})
    layers = (inspect.get("GraphDriver") or {}).get("Data") or {}
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": layers.get("MergedDir", "")},
        "hostname": config.get("Hostname") or "",
        "mounts": mounts,
        "annotations": dict(config.get("Labels") or {}),
        "linux": linux,
    }
