"""The CNI part of a verbose Status."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pycrid.adapters.node.cniinfo import cni_info, cni_unused_info


def test_the_network_in_use_and_an_ok_load_status(tmp_path: Path) -> None:
    conf, bins = tmp_path / "net.d", tmp_path / "bin"
    conf.mkdir()
    bins.mkdir()
    for plugin in ("bridge", "portmap"):
        (bins / plugin).write_text("#!/bin/sh\n")
        os.chmod(bins / plugin, 0o755)
    network = {
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [
            {"type": "bridge"},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (conf / "10-pods.conflist").write_text(json.dumps(network))
    info = cni_info(str(conf), [str(bins)])
    assert info["lastCNILoadStatus"] == "OK"
    config = json.loads(info["cniconfig"])
    assert config["pluginConfDir"] == str(conf)
    assert config["pluginDirs"] == [str(bins)]
    (loaded,) = config["networks"]
    assert loaded["name"] == "pods"
    assert loaded["plugins"] == ["bridge", "portmap"]
    assert loaded["source"].endswith("10-pods.conflist")


def test_a_missing_plugin_is_the_load_status(tmp_path: Path) -> None:
    (tmp_path / "10.conf").write_text('{"cniVersion": "0.4.0", "name": "n", "type": "bridge"}')
    info = cni_info(str(tmp_path), [str(tmp_path / "nothing")])
    assert "bridge" in info["lastCNILoadStatus"]
    assert json.loads(info["cniconfig"])["networks"][0]["name"] == "n"


def test_no_config_at_all(tmp_path: Path) -> None:
    info = cni_info(str(tmp_path), [])
    assert "no CNI network config" in info["lastCNILoadStatus"]
    assert json.loads(info["cniconfig"])["networks"] == []
    assert "docker" in cni_unused_info("docker")["lastCNILoadStatus"]
