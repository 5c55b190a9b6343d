"""The CNI part of ``crictl info``: the network configuration in use and whether it loads.

The keys are containerd's (``cniconfig``, ``lastCNILoadStatus``), so that
tools reading one runtime's verbose Status read pycrid's; the load status is
``OK`` or the reason pods cannot get a network. pycrid loads the
configuration afresh for every pod, so "last" is "now".
"""

from __future__ import annotations

import json
from typing import Any

from pycrid.adapters.node import cni

POD_INTERFACE = "eth0"


def cni_info(conf_dir: str, bin_dirs: list[str]) -> dict[str, str]:
    """``cniconfig`` (JSON) and ``lastCNILoadStatus`` for a verbose Status."""
    config: dict[str, Any] = {"pluginDirs": list(bin_dirs), "pluginConfDir": conf_dir}
    networks: list[dict[str, Any]] = []
    try:
        network = cni.load_network(conf_dir)
        networks.append(
            {
                "name": network.name,
                "cniVersion": network.cni_version,
                "source": network.source,
                "ifName": POD_INTERFACE,
                "plugins": [plugin["type"] for plugin in network.plugins],
                "config": network.to_dict(),
            }
        )
    except cni.NetworkNotReady:
        pass
    config["networks"] = networks
    status = cni.network_problem(conf_dir, bin_dirs) or "OK"
    return {"cniconfig": json.dumps(config), "lastCNILoadStatus": status}


def cni_unused_info(mode: str) -> dict[str, str]:
    """The same keys when pods are networked without CNI (the docker adapter's ``docker`` mode)."""
    return {
        "cniconfig": json.dumps({"networks": []}),
        "lastCNILoadStatus": f"CNI not used: network.mode is {mode!r}",
    }
