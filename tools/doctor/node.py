"""Checks of the node itself: cgroups, kernel features, the socket's directory."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.docker.probes import docker_info
from pycrid.adapters.node import systemdcgroup
from pycrid.adapters.probes import ProbeError
from pycrid.tools.doctor.result import Result, failed, passed

CGROUP_ROOT = Path("/sys/fs/cgroup")
# mount_setattr(2) has number 442 on every architecture's unified table (Linux 5.12).
SYS_MOUNT_SETATTR = 442


def cgroup_version(root: Path = CGROUP_ROOT) -> str:
    """``v2``, ``v1 (hybrid)`` (v1 controllers beside a v2 ``unified`` tree) or ``v1``."""
    if (root / "cgroup.controllers").exists():
        return "v2"
    if not root.is_dir() or not any(root.iterdir()):
        return ""
    return "v1 (hybrid)" if (root / "unified").is_dir() else "v1"


def check_cgroups(config: Config) -> Result:
    version = cgroup_version()
    if not version:
        return failed(
            "cgroups", f"nothing mounted at {CGROUP_ROOT}", "mount the cgroup filesystems"
        )
    if config.adapter == "docker":
        try:
            driver = docker_info(config.docker.endpoint).get("CgroupDriver", "?")
        except ProbeError as e:
            return failed("cgroups", f"cgroup {version}; {e}", "start dockerd (see dockerd)")
        source = "dockerd's"
    else:
        driver = systemdcgroup.cgroup_manager(config.oci.cgroup_manager)
        source = "the oci adapter's"
    return passed(
        "cgroups",
        f"cgroup {version}, {source} driver {driver} (kubelet 1.31+ reads it from "
        "RuntimeConfig; older kubelets need cgroupDriver set to it)",
    )


def _has_filesystem(name: str) -> bool:
    try:
        text = Path("/proc/filesystems").read_text()
    except OSError:
        return False
    return any(line.split()[-1] == name for line in text.splitlines() if line.split())


def _module_available(name: str) -> bool:
    base = Path("/lib/modules") / platform.release()
    return any(base.rglob(f"{name}.ko*")) if base.is_dir() else False


def check_overlay(config: Config) -> Result:
    if _has_filesystem("overlay"):
        return passed("overlay filesystem", "in /proc/filesystems")
    if _module_available("overlay"):
        return passed("overlay filesystem", "module present; loaded on first use")
    return failed(
        "overlay filesystem",
        "not in /proc/filesystems and no overlay module for this kernel",
        "modprobe overlay, or use a kernel built with CONFIG_OVERLAY_FS",
        # Docker picks another storage driver; the oci adapter unpacks into overlay layers.
        required=config.adapter == "oci",
    )


def mount_setattr_available() -> bool:
    """Probe the syscall with a bad descriptor: EBADF means the kernel has it."""
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(SYS_MOUNT_SETATTR, -1, b"", 0, None, 0)
    return not (result == -1 and ctypes.get_errno() == errno.ENOSYS)


def check_mount_setattr(config: Config) -> Result:
    if mount_setattr_available():
        return passed("mount_setattr", f"present (kernel {platform.release()})")
    return failed(
        "mount_setattr",
        f"kernel {platform.release()} lacks it",
        "use Linux 5.12 or later; without it pods with user namespaces cannot get "
        "ID-mapped layers and volumes (everything else works)",
        required=False,
    )


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_socket_dir(config: Config) -> Result:
    if config.socket_activated:
        return passed("socket", f"{config.listen}: systemd creates it (pycrid.socket)")
    path = config.socket_path
    directory = path.parent
    if directory.is_dir():
        if not os.access(directory, os.W_OK | os.X_OK):
            return failed(
                "socket directory",
                f"{directory} is not writable by uid {os.geteuid()}",
                "run pycrid as root, or choose a listen path in a directory it may write",
            )
        state = "a daemon's socket is there" if path.exists() else "writable"
        return passed("socket directory", f"{directory} ({state})")
    existing = _nearest_existing(directory)
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return passed("socket directory", f"{directory} will be created under {existing}")
    return failed(
        "socket directory",
        f"{directory} cannot be created ({existing} is not a writable directory)",
        "choose a listen path whose parent can be created, or create it",
    )


def node_checks(config: Config) -> list[Result]:
    return [
        check_cgroups(config),
        check_overlay(config),
        check_mount_setattr(config),
        check_socket_dir(config),
    ]
