"""Configurations for a pycrid daemon that lives in one private directory.

`pycrid compare adapter:...` and the end-to-end tests both start daemons that
must not meet any other pycrid on the node: their socket, state and run
directories, CNI bridge, subnet and IP allocations are their own. The CNI
network is the shipped `docs/cni/10-pycrid-bridge.conflist` with its bridge,
subnet and allocation directory changed; `tests/test_privateconfig.py` keeps
the two in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFLIST_NAME = "10-pycrid-bridge.conflist"


def bridge_conflist(bridge: str, subnet: str, ipam_dir: Path) -> dict[str, Any]:
    """The shipped bridge network, on ``bridge`` and ``subnet``, allocating under ``ipam_dir``."""
    return {
        "cniVersion": "1.0.0",
        "name": "pycrid",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "loopback"},
        ],
    }


def write_cni_conf(root: Path, bridge: str, subnet: str) -> tuple[Path, Path]:
    """Write the bridge network under ``root``; returns (conf_dir, ipam_dir)."""
    ipam_dir = root / "ipam"
    conf_dir = root / "net.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    conflist = bridge_conflist(bridge, subnet, ipam_dir)
    (conf_dir / CONFLIST_NAME).write_text(json.dumps(conflist, indent=2))
    return conf_dir, ipam_dir


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, tables merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def private_config(
    root: Path,
    adapter: str,
    *,
    pause_image: str,
    network: dict[str, Any],
    log_level: str = "info",
) -> dict[str, Any]:
    """A config (as a TOML table) whose socket, state and run dirs are all under ``root``.

    ``root`` must be short: a Unix socket path has at most 107 bytes.
    """
    return {
        "listen": f"unix://{root}/pycrid.sock",
        "adapter": adapter,
        "state_dir": str(root / "state"),
        "run_dir": str(root / "run"),
        "log_level": log_level,
        "pause_image": pause_image,
        "shutdown_grace": 5.0,
        "docker": {"startup_timeout": 10.0},
        "network": network,
    }
