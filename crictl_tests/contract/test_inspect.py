"""What `crictl inspect`, `inspecti` and `inspectp` show: the verbose status info."""

from __future__ import annotations

import json
import subprocess

from crictl_tests.dockerpods import Pods
from crictl_tests.harness import BUSYBOX_IMAGE
from pycrid.api.cri import api_pb2 as cri


def crictl_json(crictl: str, pods: Pods, *args: str) -> dict:
    endpoint = pods.daemon.endpoint
    argv = [crictl, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, *args]
    return json.loads(subprocess.run(argv, check=True, capture_output=True, timeout=60).stdout)


def test_inspect_shows_the_runtime_spec_pid_and_sandbox(pods: Pods, crictl: str) -> None:
    sandbox_id = pods.run(pods.sandbox_config("inspect"))
    command = ["sh", "-c", "sleep 3600"]
    container_id = pods.run_container(
        sandbox_id,
        pods.container_config("app", command=command, envs=[cri.KeyValue(key="K", value=b"v")]),
    )
    shown = crictl_json(crictl, pods, "inspect", container_id[:13])
    info = shown["info"]
    spec = info["runtimeSpec"]
    assert spec["process"]["args"] == command
    assert "K=v" in spec["process"]["env"]
    assert {ns["type"] for ns in spec["linux"]["namespaces"]} >= {"mount", "uts"}
    assert info["pid"] > 0
    assert info["sandboxID"] == sandbox_id
    assert info["runtimeType"]

    pod_info = json.loads(pods.sandbox_status(sandbox_id, verbose=True).info["info"])
    assert pod_info["runtimeSpec"]["process"]["args"]


def test_inspecti_shows_the_image_config_and_chain_id(pods: Pods, crictl: str) -> None:
    shown = crictl_json(crictl, pods, "inspecti", BUSYBOX_IMAGE)
    info = shown["info"]
    spec = info["imageSpec"]
    assert spec["os"] == "linux" and spec["architecture"]
    assert spec["rootfs"]["type"] == "layers" and spec["rootfs"]["diff_ids"]
    assert spec["config"]["Cmd"] or spec["config"].get("Entrypoint")
    assert info["chainID"].startswith("sha256:")
