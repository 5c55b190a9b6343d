"""The CNI invoker: configuration loading, results, and runs of stand-in plugins."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.deadline import set_call_deadline
from pycrid.adapters.node import cni, podnetwork
from pycrid.api.cri import api_pb2 as cri

RESULT_V1 = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "cni0", "mac": "00:11:22:33:44:55"},
        {"name": "eth0", "mac": "00:11:22:33:44:66", "sandbox": "/run/netns/x"},
        {"name": "lo", "sandbox": "/run/netns/x"},
    ],
    "ips": [
        {"interface": 1, "address": "fd00::5/64"},
        {"interface": 1, "address": "10.88.0.5/16", "gateway": "10.88.0.1"},
        {"interface": 2, "address": "127.0.0.1/8"},
    ],
}

# A stand-in plugin: records its CNI_ environment and config beside its directory,
# and answers from its config.
FAKE_PLUGIN = """#!{python}
import json, os, sys
config = json.load(sys.stdin)
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
record = {{"env": env, "config": config}}
with open(os.path.join(os.path.dirname(sys.argv[0]), "..", "calls.jsonl"), "a") as log:
    log.write(json.dumps(record) + "\\n")
if config.get("sleep"):
    import time
    time.sleep(config["sleep"])
if config.get("fail"):
    print(json.dumps({{"code": 11, "msg": "failed on purpose", "details": config["type"]}}))
    sys.exit(1)
if os.environ["CNI_COMMAND"] == "ADD":
    result = config.get("prevResult") or {{"cniVersion": config["cniVersion"], "ips": []}}
    result = dict(result)
    if "address" in config:
        result["ips"] = result["ips"] + [{{"address": config["address"]}}]
    print(json.dumps(result))
"""


def test_conflist_and_single_conf_are_loaded() -> None:
    single = cni.NetworkList.from_dict({"cniVersion": "0.4.0", "name": "n", "type": "bridge"})
    assert single.plugins == ({"cniVersion": "0.4.0", "name": "n", "type": "bridge"},)
    with pytest.raises(ValueError):
        cni.NetworkList.from_dict({"name": "n", "plugins": []})
    with pytest.raises(ValueError):
        cni.NetworkList.from_dict({"plugins": [{"type": "bridge"}]})
    with pytest.raises(ValueError):
        cni.NetworkList.from_dict({"name": "n", "plugins": [{"bridge": "x"}]})


def test_first_valid_file_in_lexical_order_wins(tmp_path: Path) -> None:
    (tmp_path / "05-broken.conflist").write_text("{not json")
    (tmp_path / "10-b.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "b", "plugins": [{"type": "bridge"}]})
    )
    (tmp_path / "20-a.conf").write_text(json.dumps({"name": "a", "type": "ptp"}))
    (tmp_path / "README").write_text("ignored")
    network = cni.load_network(tmp_path)
    assert network.name == "b"
    assert network.source.endswith("10-b.conflist")


def test_no_config_is_network_not_ready(tmp_path: Path) -> None:
    with pytest.raises(cni.NetworkNotReady, match="no CNI network config"):
        cni.load_network(tmp_path)
    with pytest.raises(cni.NetworkNotReady):
        cni.load_network(tmp_path / "absent")
    (tmp_path / "1.conflist").write_text("[]")
    with pytest.raises(cni.NetworkNotReady, match=r"1\.conflist"):
        cni.load_network(tmp_path)


def write_bridge_network(conf: Path) -> Path:
    """A one-plugin network list in ``conf``; its path."""
    config = conf / "10.conflist"
    config.write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}]})
    )
    return config


def install_plugin(bin_dir: Path, name: str) -> None:
    plugin = bin_dir / name
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)


def test_network_problem_names_a_missing_plugin(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    bin_dir = tmp_path / "bin"
    conf.mkdir()
    bin_dir.mkdir()
    write_bridge_network(conf)
    assert "bridge" in cni.network_problem(str(conf), [str(bin_dir)])
    install_plugin(bin_dir, "bridge")
    assert cni.network_problem(str(conf), [str(bin_dir)]) == ""
    with pytest.raises(cni.NetworkNotReady):
        cni.find_plugin("../bridge", [str(bin_dir)])


def test_result_ips_take_the_pod_interface_ipv4_first() -> None:
    assert cni.result_ips(RESULT_V1) == ["10.88.0.5", "fd00::5"]
    legacy = {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.2.3/24"}, "ip6": {"ip": "fd::3/64"}}
    assert cni.result_ips(legacy) == ["10.1.2.3", "fd::3"]
    assert cni.result_ips({"ips": [{"address": "garbage"}]}) == []
    assert cni.result_ips({}) == []


def test_error_message_and_result_parsing() -> None:
    error = b'{"code": 7, "msg": "no IP addresses available", "details": "range full"}'
    assert cni.error_message(error, b"", 1) == "no IP addresses available: range full (code 7)"
    assert cni.error_message(b"", b"plain failure\n", 1) == "plain failure"
    assert cni.error_message(b"", b"", 2) == "exit status 2"
    assert cni.parse_result(json.dumps(RESULT_V1).encode()) == RESULT_V1
    with pytest.raises(cni.PluginError):
        cni.parse_result(b"[1, 2]")
    with pytest.raises(cni.PluginError):
        cni.parse_result(b"{truncated")


@pytest.fixture
def fake_plugins(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("first", "second", "third"):
        path = bin_dir / name
        path.write_text(FAKE_PLUGIN.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir, tmp_path / "calls.jsonl"


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def network(version: str = "1.0.0", **extra: object) -> cni.NetworkList:
    return cni.NetworkList.from_dict(
        {
            "cniVersion": version,
            "name": "testnet",
            "plugins": [
                {"type": "first", "address": "10.9.0.2/24", **extra},
                {"type": "second", "capabilities": {"portMappings": True}},
                {"type": "third", "capabilities": {"portMappings": False}},
            ],
        }
    )


ATTACHMENT = cni.Attachment(
    container_id="abc123",
    netns="/run/netns/abc",
    args={"K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "pod"},
)
PORTS = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}


async def test_add_chains_results_and_passes_capabilities(fake_plugins: tuple[Path, Path]) -> None:
    bin_dir, log = fake_plugins
    runner = cni.CniRunner([str(bin_dir)])
    result = await runner.add(network(), ATTACHMENT, PORTS)
    assert cni.result_ips(result) == ["10.9.0.2"]
    first, second, third = calls(log)
    assert first["env"] == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "abc123",
        "CNI_NETNS": "/run/netns/abc",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod",
        "CNI_PATH": str(bin_dir),
    }
    assert first["config"]["name"] == "testnet"
    assert "prevResult" not in first["config"]
    assert second["config"]["prevResult"]["ips"] == [{"address": "10.9.0.2/24"}]
    assert second["config"]["runtimeConfig"] == PORTS
    assert "runtimeConfig" not in third["config"]


async def test_del_runs_in_reverse_with_the_cached_result(fake_plugins: tuple[Path, Path]) -> None:
    bin_dir, log = fake_plugins
    runner = cni.CniRunner([str(bin_dir)])
    await runner.delete(network(), ATTACHMENT, PORTS, RESULT_V1)
    recorded = calls(log)
    assert [c["config"]["type"] for c in recorded] == ["third", "second", "first"]
    assert {c["env"]["CNI_COMMAND"] for c in recorded} == {"DEL"}
    assert all(c["config"]["prevResult"] == RESULT_V1 for c in recorded)


async def test_del_of_old_versions_has_no_prev_result(fake_plugins: tuple[Path, Path]) -> None:
    bin_dir, log = fake_plugins
    await cni.CniRunner([str(bin_dir)]).delete(network("0.3.1"), ATTACHMENT, {}, RESULT_V1)
    assert all("prevResult" not in c["config"] for c in calls(log))


async def test_a_failing_plugin_reports_its_message_and_del_still_runs_the_rest(
    fake_plugins: tuple[Path, Path],
) -> None:
    bin_dir, log = fake_plugins
    runner = cni.CniRunner([str(bin_dir)])
    with pytest.raises(cni.PluginError, match="failed on purpose: first"):
        await runner.add(network(fail=True), ATTACHMENT, {})
    assert len(calls(log)) == 1
    os.unlink(log)
    with pytest.raises(cni.PluginError, match="failed on purpose"):
        await runner.delete(network(fail=True), ATTACHMENT, {}, None)
    assert [c["config"]["type"] for c in calls(log)] == ["third", "second", "first"]


async def test_check_runs_in_order(fake_plugins: tuple[Path, Path]) -> None:
    bin_dir, log = fake_plugins
    await cni.CniRunner([str(bin_dir)]).check(network(), ATTACHMENT, {}, RESULT_V1)
    assert [c["env"]["CNI_COMMAND"] for c in calls(log)] == ["CHECK"] * 3


async def test_a_slow_plugin_is_deadline_exceeded_and_killed(
    fake_plugins: tuple[Path, Path],
) -> None:
    bin_dir, _ = fake_plugins
    runner = cni.CniRunner([str(bin_dir)], timeout=0.5)
    with pytest.raises(errors.DeadlineExceeded, match="did not finish"):
        await runner.add(network(sleep=30), ATTACHMENT, PORTS)


async def test_the_call_deadline_bounds_a_plugin(fake_plugins: tuple[Path, Path]) -> None:
    bin_dir, _ = fake_plugins
    runner = cni.CniRunner([str(bin_dir)])
    set_call_deadline(0.5)
    try:
        with pytest.raises(errors.DeadlineExceeded):
            await runner.add(network(sleep=30), ATTACHMENT, PORTS)
    finally:
        set_call_deadline(None)


async def test_pod_network_checkpoints_before_add_and_dels_once(
    fake_plugins: tuple[Path, Path], tmp_path: Path
) -> None:
    bin_dir, log = fake_plugins
    networks = podnetwork.PodNetworks(cni.CniRunner([str(bin_dir)]), tmp_path / "netns")
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="web", namespace="ns", uid="u1"),
        port_mappings=[cri.PortMapping(host_port=8080, container_port=80)],
    )
    saved: list[dict] = []

    async def save(state: podnetwork.NetworkState) -> None:
        saved.append(state.to_dict())

    state = podnetwork.NetworkState(mode="cni")
    await networks.set_up("pod1", config, network(), state, save)
    # What DEL needs is on disk before ADD runs.
    assert saved[0]["network"]["name"] == "testnet" and saved[0]["result"] is None
    assert saved[0]["port_mappings"] == PORTS["portMappings"]
    assert state.ips == ["10.9.0.2"]
    add = calls(log)[0]["env"]
    assert add["CNI_NETNS"] == str(tmp_path / "netns" / "pod1")
    assert "K8S_POD_NAME=web" in add["CNI_ARGS"]

    restored = podnetwork.NetworkState.from_dict(json.loads(json.dumps(state.to_dict())))
    await networks.tear_down("pod1", config.metadata, restored)
    await networks.tear_down("pod1", config.metadata, restored)
    commands = [c["env"]["CNI_COMMAND"] for c in calls(log)]
    assert commands == ["ADD"] * 3 + ["DEL"] * 3
    # The namespace is not pinned here, so DEL is told it is gone.
    assert calls(log)[-1]["env"]["CNI_NETNS"] == ""
    assert restored.torn_down and not restored.ready


def test_network_problem_reads_the_config_again_only_after_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status asks every few seconds; the answer is kept while the directories stand."""
    conf, bin_dir = tmp_path / "conf", tmp_path / "bin"
    conf.mkdir()
    bin_dir.mkdir()
    reads = []
    real = cni._network_problem

    def counted(conf_dir: str, bin_dirs: list[str]) -> str:
        reads.append(conf_dir)
        return real(conf_dir, bin_dirs)

    monkeypatch.setattr(cni, "_network_problem", counted)
    assert "no CNI network config" in cni.network_problem(str(conf), [str(bin_dir)])
    assert "no CNI network config" in cni.network_problem(str(conf), [str(bin_dir)])
    assert len(reads) == 1
    config = write_bridge_network(conf)
    assert "bridge" in cni.network_problem(str(conf), [str(bin_dir)])
    install_plugin(bin_dir, "bridge")
    assert cni.network_problem(str(conf), [str(bin_dir)]) == ""
    assert cni.network_problem(str(conf), [str(bin_dir)]) == ""
    assert len(reads) == 3
    config.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": []}) + " ")
    cni.network_problem(str(conf), [str(bin_dir)])  # rewritten in place: size and times moved
    assert len(reads) == 4
