"""The oci adapter under runc's systemd cgroup driver: paths, flags and answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pycrid.adapters.config import Config, ConfigError, OciConfig, parse_config
from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.oci.runtime import spec
from pycrid.adapters.oci.runtime.conmon import Conmon
from pycrid.adapters.oci.runtime.info import OciRuntimeInfo
from pycrid.adapters.oci.runtime.nodefacts import DEFAULT_SLICE, NodeFacts
from pycrid.adapters.oci.runtime.runc import Runc
from pycrid.api.cri import api_pb2 as cri

SANDBOX_ID = "a" * 64
POD_SLICE = "kubepods-besteffort-pod1234.slice"
KUBELET_PARENT = f"/kubepods.slice/kubepods-besteffort.slice/{POD_SLICE}"


def systemd_node(**fields: Any) -> NodeFacts:
    return NodeFacts(
        host=HostFacts(negative_oom_score_adj=True),
        cgroup_parent=DEFAULT_SLICE,
        systemd_cgroups=True,
        **fields,
    )


def test_the_cgroup_manager_key_takes_systemd_or_cgroupfs() -> None:
    assert parse_config({"oci": {"cgroup_manager": "systemd"}}).oci.cgroup_manager == "systemd"
    assert parse_config({}).oci.cgroup_manager == ""
    with pytest.raises(ConfigError, match=r"oci\.cgroup_manager .cgroupv2."):
        parse_config({"oci": {"cgroup_manager": "cgroupv2"}})


def test_probe_picks_the_slice_default_under_systemd() -> None:
    node = NodeFacts.probe(HostFacts(), cgroup_manager="systemd")
    assert node.systemd_cgroups and node.cgroup_parent == "pycrid.slice"
    node = NodeFacts.probe(HostFacts(), cgroup_manager="cgroupfs")
    assert not node.systemd_cgroups and node.cgroup_parent == "/pycrid"


def test_cgroups_path_is_slice_prefix_id_under_systemd() -> None:
    node = systemd_node()
    assert spec.cgroups_path(KUBELET_PARENT, node, SANDBOX_ID) == f"{POD_SLICE}:pycrid:{SANDBOX_ID}"
    assert spec.cgroups_path("", node, SANDBOX_ID) == f"pycrid.slice:pycrid:{SANDBOX_ID}"
    with pytest.raises(InvalidArgument, match="not a systemd slice"):
        spec.cgroups_path("/kubepods/besteffort/pod1", node, SANDBOX_ID)


def test_cgroups_path_is_unchanged_under_cgroupfs() -> None:
    node = NodeFacts()
    assert spec.cgroups_path("/kubepods/pod1", node, SANDBOX_ID) == f"/kubepods/pod1/{SANDBOX_ID}"
    assert spec.cgroups_path("", node, SANDBOX_ID) == f"/pycrid/{SANDBOX_ID}"


def test_runc_gets_the_systemd_flag_on_every_command(tmp_path: Path) -> None:
    runc = Runc("/usr/sbin/runc", tmp_path, systemd_cgroup=True)
    assert runc._argv(["update", "c"])[:5] == [
        "/usr/sbin/runc",
        "--root",
        str(tmp_path),
        "--log-format",
        "json",
    ]
    assert "--systemd-cgroup" in runc._argv(["update", "c"])
    assert "--systemd-cgroup" not in Runc("/usr/sbin/runc", tmp_path)._argv(["update", "c"])


def test_conmon_starts_in_a_scope_of_its_own_and_passes_the_flag_on(tmp_path: Path) -> None:
    monitor = Conmon("/usr/bin/conmon", "/usr/sbin/runc", tmp_path, scope_slice="system.slice")
    argv = monitor.argv("c1", tmp_path, "/l/0.log", tmp_path, tmp_path, False, False, False, "n")
    assert argv[: argv.index("/usr/bin/conmon")] == [
        "systemd-run",
        "--scope",
        "--quiet",
        "--collect",
        "--unit=pycrid-conmon-c1.scope",
        "--slice=system.slice",
        "--",
    ]
    assert "--systemd-cgroup" in argv
    at = argv.index("--systemd-cgroup", argv.index("/usr/bin/conmon"))
    assert argv[at + 1 : at + 3] == ["--runtime-arg", "--systemd-cgroup"]
    assert monitor.runc.systemd_cgroup


def test_conmon_under_cgroupfs_has_no_scope_and_no_flag(tmp_path: Path) -> None:
    monitor = Conmon("/usr/bin/conmon", "/usr/sbin/runc", tmp_path)
    argv = monitor.argv("c1", tmp_path, "/l/0.log", tmp_path, tmp_path, False, False, False, "n")
    assert argv[0] == "/usr/bin/conmon"
    assert "--systemd-cgroup" not in argv and not monitor.runc.systemd_cgroup


@pytest.mark.parametrize(("systemd", "driver"), [(True, cri.SYSTEMD), (False, cri.CGROUPFS)])
async def test_runtime_config_answers_the_driver_in_use(
    tmp_path: Path, systemd: bool, driver: int
) -> None:
    node = systemd_node() if systemd else NodeFacts()
    info = OciRuntimeInfo(Config(oci=OciConfig()), node, tmp_path)
    answer = await info.runtime_config(cri.RuntimeConfigRequest())
    assert answer.linux.cgroup_driver == driver


def test_runc_never_sees_systemds_service_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from pycrid.adapters.oci.runtime.runc import runc_environment

    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin")
    env = runc_environment()
    assert "NOTIFY_SOCKET" not in env and "LISTEN_FDS" not in env and "WATCHDOG_USEC" not in env
    assert env["PATH"] == "/usr/sbin:/usr/bin"
