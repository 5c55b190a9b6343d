"""Pod sandboxes on the docker adapter, as Docker holds them.

Pod lifecycle, filters, prefixes, namespaces and bad requests over the CRI are
in the contract suite (crictl_tests/contract/test_pods.py), run on both
adapters; here is what only Docker shows.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from google.protobuf import json_format

from crictl_tests.dockerpods import Pods, docker_inspect
from pycrid.api.cri import api_pb2 as cri


def test_pod_settings_become_dockers_host_config(pods: Pods) -> None:
    namespaces = cri.NamespaceOption(network=cri.NODE, pid=cri.NODE, ipc=cri.NODE)
    config = pods.sandbox_config(
        "hostconfig",
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent="/pycrid-e2e",
            security_context=cri.LinuxSandboxSecurityContext(namespace_options=namespaces),
        ),
    )
    sandbox_id = pods.run(config)
    security = cri.LinuxContainerSecurityContext(namespace_options=namespaces)
    container_id = pods.run_container(
        sandbox_id,
        pods.container_config("app", linux=cri.LinuxContainerConfig(security_context=security)),
    )
    sandbox = docker_inspect(sandbox_id)["HostConfig"]
    container = docker_inspect(container_id)["HostConfig"]
    assert sandbox["NetworkMode"] == "host"
    assert sandbox["CgroupParent"] == container["CgroupParent"] == "/pycrid-e2e"
    assert (container["PidMode"], container["IpcMode"]) == ("host", "host")


def test_crictl_drives_a_pod_with_short_ids(pods: Pods, crictl: str, tmp_path: Path) -> None:
    endpoint = pods.daemon.endpoint

    def run(*args: str) -> str:
        done = subprocess.run(
            [crictl, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    config = pods.sandbox_config("crictl")
    pod_json = tmp_path / "pod.json"
    pod_json.write_text(json_format.MessageToJson(config))
    container_json = tmp_path / "container.json"
    container_json.write_text(json_format.MessageToJson(pods.container_config("top")))
    sandbox_id = run("runp", str(pod_json))
    pods.sandboxes.append(sandbox_id)
    short = sandbox_id[:13]
    assert run("pods", "-q", "--id", short) == sandbox_id
    container_id = run("create", short, str(container_json), str(pod_json))
    run("start", container_id[:13])
    pid = run("inspect", "-o", "go-template", "--template", "{{.info.pid}}", container_id[:13])
    assert int(pid) == docker_inspect(container_id)["State"]["Pid"]
    assert json.loads(run("inspectp", short))["status"]["state"] == "SANDBOX_READY"
    assert run("ps", "-q", "--pod", short) == container_id
    assert run("exec", "--sync", container_id[:13], "echo", "hi") == "hi"
    run("stopp", short)
    run("rmp", short)
    assert sandbox_id not in run("pods", "-q")


def test_runtime_handler_selects_the_docker_runtime(pods: Pods) -> None:
    sandbox_id = pods.run(pods.sandbox_config("handler"), handler="runc")
    assert pods.sandbox_status(sandbox_id).status.runtime_handler == "runc"
    assert docker_inspect(sandbox_id)["HostConfig"]["Runtime"] == "runc"
    container_id = pods.run_container(sandbox_id, pods.container_config("app"))
    assert docker_inspect(container_id)["HostConfig"]["Runtime"] == "runc"
