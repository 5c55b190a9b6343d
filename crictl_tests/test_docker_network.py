"""Pod networking on the docker adapter in CNI mode, with the conflist from docs/cni."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from crictl_tests import dockerpods
from crictl_tests.dockerpods import Pods, docker_ids, fetch, rpc_code, wait_for
from crictl_tests.harness import BUSYBOX_IMAGE, WEBSERVER_IMAGE, Daemon
from pycrid.api.cri import api_pb2 as cri

HOST_PORT = 12062


@pytest.fixture
def cni_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pycrid-cni-") as root:
        yield Path(root)


@pytest.fixture
def cni_pods(
    docker_engine: None, test_registry: None, daemon_factory: Callable[..., Daemon]
) -> Iterator[Pods]:
    with dockerpods.cni_pods(daemon_factory, BUSYBOX_IMAGE, WEBSERVER_IMAGE) as pods:
        yield pods


def test_shipped_conflist_is_valid_json_with_the_four_plugins() -> None:
    conf = json.loads(dockerpods.DOCS_CONFLIST.read_text())
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap", "loopback"]
    assert conf["plugins"][0]["ipam"]["type"] == "host-local"
    assert conf["plugins"][1]["capabilities"] == {"portMappings": True}


def test_pod_ip_and_host_port_reachable_and_released(cni_pods: Pods) -> None:
    pods = cni_pods
    status = pods.rt.Status(cri.StatusRequest()).status
    network_ready = {c.type: c.status for c in status.conditions}["NetworkReady"]
    assert network_ready

    config = pods.sandbox_config(
        "cni-web", port_mappings=[cri.PortMapping(container_port=80, host_port=HOST_PORT)]
    )
    sandbox_id = pods.run(config)
    sandbox = pods.sandbox_status(sandbox_id, verbose=True)
    pod_ip = sandbox.status.network.ip
    assert pod_ip.startswith("10.89.77.")
    assert json.loads(sandbox.info["info"])["network"]["mode"] == "cni"
    assert dockerpods.ip_allocations(pods.ipam_dir) == [pod_ip]
    pods.run_container(sandbox_id, pods.container_config("web", WEBSERVER_IMAGE, command=[]))

    assert b"<html>" in wait_for(lambda: fetch(f"http://{pod_ip}:80/"), "the pod IP")
    assert b"<html>" in wait_for(
        lambda: fetch(f"http://127.0.0.1:{HOST_PORT}/"), "the host port on loopback"
    )

    pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
    assert dockerpods.ip_allocations(pods.ipam_dir) == []
    assert dockerpods.mounts_under(Path(pods.daemon.config["run_dir"])) == []
    assert fetch(f"http://127.0.0.1:{HOST_PORT}/") == b""
    # A second stop finds the network already gone.
    pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))


def test_pods_get_distinct_addresses(cni_pods: Pods) -> None:
    first = cni_pods.run(cni_pods.sandbox_config("a"))
    second = cni_pods.run(cni_pods.sandbox_config("b"))
    ips = {cni_pods.sandbox_status(s).status.network.ip for s in (first, second)}
    assert len(ips) == 2
    assert sorted(dockerpods.ip_allocations(cni_pods.ipam_dir)) == sorted(ips)
    assert len(dockerpods.mounts_under(Path(cni_pods.daemon.config["run_dir"]))) == 2


def test_no_cni_config_means_network_not_ready(
    docker_engine: None,
    test_registry: None,
    daemon_factory: Callable[..., Daemon],
    cni_root: Path,
) -> None:
    empty = cni_root / "empty"
    empty.mkdir()
    daemon = daemon_factory("docker", {"network": {"mode": "cni", "cni_conf_dir": str(empty)}})
    conditions = {c.type: c for c in daemon.runtime.Status(cri.StatusRequest()).status.conditions}
    assert conditions["RuntimeReady"].status
    assert not conditions["NetworkReady"].status
    assert conditions["NetworkReady"].reason == "NetworkPluginNotReady"
    assert str(empty) in conditions["NetworkReady"].message

    pods = Pods(daemon)
    try:
        assert rpc_code(pods.run) == grpc.StatusCode.FAILED_PRECONDITION
        assert docker_ids(daemon) == []
    finally:
        pods.close()


def test_failed_cni_add_leaves_nothing(
    docker_engine: None,
    test_registry: None,
    daemon_factory: Callable[..., Daemon],
    cni_root: Path,
) -> None:
    conf_dir, ipam_dir = dockerpods.cni_conf_dir(cni_root)
    conflist = conf_dir / dockerpods.DOCS_CONFLIST.name
    conf = json.loads(conflist.read_text())
    conf["plugins"][0]["ipam"]["ranges"] = [[{"subnet": "not-a-subnet"}]]
    conflist.write_text(json.dumps(conf))
    daemon = daemon_factory("docker", {"network": {"mode": "cni", "cni_conf_dir": str(conf_dir)}})
    pods = Pods(daemon, ipam_dir=ipam_dir)
    try:
        code = rpc_code(pods.run)
        assert code == grpc.StatusCode.INTERNAL
        assert pods.leftovers() == {}
    finally:
        pods.close()


def test_pod_removed_behind_pycrids_back_releases_its_address(cni_pods: Pods) -> None:
    sandbox_id = cni_pods.run(cni_pods.sandbox_config("vanishing"))
    assert len(dockerpods.ip_allocations(cni_pods.ipam_dir)) == 1
    subprocess.run(["docker", "rm", "-f", sandbox_id], check=True, capture_output=True)
    # Docker's destroy event reaches the daemon a moment after `docker rm` returns.
    give_up = time.monotonic() + 10
    while time.monotonic() < give_up:
        listed = cni_pods.rt.ListPodSandbox(cri.ListPodSandboxRequest()).items
        if sandbox_id not in [item.id for item in listed]:
            break
        time.sleep(0.05)
    assert sandbox_id not in [item.id for item in listed]
    assert dockerpods.ip_allocations(cni_pods.ipam_dir) == []
    assert rpc_code(lambda: cni_pods.sandbox_status(sandbox_id)) == grpc.StatusCode.NOT_FOUND
    cni_pods.sandboxes.clear()


def test_concurrent_pods_get_distinct_addresses_and_clean_up(cni_pods: Pods) -> None:
    configs = [cni_pods.sandbox_config(f"parallel-{i}") for i in range(8)]
    with ThreadPoolExecutor(len(configs)) as pool:
        sandbox_ids = list(pool.map(cni_pods.run, configs))
        ips = [cni_pods.sandbox_status(s).status.network.ip for s in sandbox_ids]
        assert len(set(ips)) == len(configs)
        assert sorted(dockerpods.ip_allocations(cni_pods.ipam_dir)) == sorted(ips)
        list(
            pool.map(
                lambda s: cni_pods.rt.RemovePodSandbox(
                    cri.RemovePodSandboxRequest(pod_sandbox_id=s), timeout=60
                ),
                sandbox_ids,
            )
        )
    cni_pods.sandboxes.clear()
    assert cni_pods.leftovers() == {}
