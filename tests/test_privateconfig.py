"""The private daemon config and its CNI network, kept in step with the shipped conflist."""

from __future__ import annotations

import json
from pathlib import Path

import tomli_w

from pycrid.adapters.config import load_config
from pycrid.server import privateconfig

SHIPPED = Path(__file__).resolve().parents[1] / "docs" / "cni" / privateconfig.CONFLIST_NAME


def test_bridge_conflist_is_the_shipped_one_on_another_bridge(tmp_path: Path) -> None:
    shipped = json.loads(SHIPPED.read_text())
    ours = privateconfig.bridge_conflist("br-x", "10.1.2.0/24", tmp_path)
    bridge = shipped["plugins"][0]
    bridge["bridge"] = "br-x"
    bridge["ipam"]["ranges"] = [[{"subnet": "10.1.2.0/24"}]]
    bridge["ipam"]["dataDir"] = str(tmp_path)
    assert ours == shipped


def test_private_config_loads_and_stays_under_root(tmp_path: Path) -> None:
    conf_dir, ipam_dir = privateconfig.write_cni_conf(tmp_path, "br-x", "10.1.2.0/24")
    assert (conf_dir / privateconfig.CONFLIST_NAME).is_file()
    assert ipam_dir.parent == tmp_path
    table = privateconfig.private_config(
        tmp_path,
        "oci",
        pause_image="registry.k8s.io/pause:3.10",
        network={"mode": "cni", "cni_conf_dir": str(conf_dir)},
    )
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(table))
    config = load_config(path)
    for where in (config.listen, config.state_dir, config.run_dir):
        assert str(tmp_path) in str(where)


def test_merge_lays_tables_over_each_other() -> None:
    base = {"a": 1, "t": {"x": 1, "y": 2}}
    assert privateconfig.merge(base, {"t": {"y": 3}, "b": 2}) == {
        "a": 1,
        "b": 2,
        "t": {"x": 1, "y": 3},
    }
