"""Pod sandboxes: run, status, list filters, stop, remove, prefixes, bad requests."""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from crictl_tests.dockerpods import Pods, fetch, rpc_code, wait_for
from crictl_tests.harness import WEBSERVER_IMAGE
from pycrid.api.cri import api_pb2 as cri

HOST_PORT = 12061


def listed_ids(pods: Pods, **fields: object) -> list[str]:
    request = cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(**fields))
    return [item.id for item in pods.rt.ListPodSandbox(request, timeout=60).items]


def test_sandbox_lifecycle_keeps_labels_annotations_and_metadata(pods: Pods) -> None:
    labels = {"app": "web", "io.kubernetes.pod.name": "lifecycle", "odd key/x": "v w"}
    annotations = {"note": "kept as given", "json": '{"a": [1, 2]}', "empty": ""}
    config = pods.sandbox_config("lifecycle", labels=labels, annotations=annotations)
    sandbox_id = pods.run(config)

    status = pods.sandbox_status(sandbox_id[:13], verbose=True)
    assert status.status.id == sandbox_id
    assert status.status.state == cri.SANDBOX_READY
    assert status.status.metadata == config.metadata
    assert dict(status.status.labels) == labels
    assert dict(status.status.annotations) == annotations
    assert status.status.created_at > 0
    assert status.status.network.ip
    info = json.loads(status.info["info"])  # what `crictl inspectp` shows
    assert info["pid"] > 0
    assert info["config"]["metadata"]["uid"] == config.metadata.uid

    listed = pods.rt.ListPodSandbox(
        cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(id=sandbox_id[:13]))
    ).items
    assert [item.id for item in listed] == [sandbox_id]
    assert dict(listed[0].annotations) == annotations
    assert sandbox_id in listed_ids(pods, label_selector={"app": "web"})
    assert sandbox_id not in listed_ids(pods, label_selector={"app": "db"})

    pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
    assert pods.sandbox_status(sandbox_id).status.state == cri.SANDBOX_NOTREADY
    assert not pods.sandbox_status(sandbox_id).status.network.ip
    not_ready = cri.PodSandboxStateValue(state=cri.SANDBOX_NOTREADY)
    ready = cri.PodSandboxStateValue(state=cri.SANDBOX_READY)
    assert sandbox_id in listed_ids(pods, state=not_ready)
    assert sandbox_id not in listed_ids(pods, state=ready)

    # Stop and Remove are idempotent, and succeed for what is gone.
    pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
    pods.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
    pods.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
    pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
    assert rpc_code(lambda: pods.sandbox_status(sandbox_id)) == grpc.StatusCode.NOT_FOUND
    assert sandbox_id not in listed_ids(pods)


def test_remove_of_a_running_pod_removes_its_containers(pods: Pods) -> None:
    sandbox_id = pods.run()
    running = pods.run_container(sandbox_id, pods.container_config("sleeper"))
    created = pods.create(sandbox_id, pods.container_config("never-started"))
    pods.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
    for container_id in (running, created):
        assert rpc_code(lambda c=container_id: pods.status(c)) == grpc.StatusCode.NOT_FOUND
    pods.sandboxes.remove(sandbox_id)
    assert pods.leftovers() == {}


def test_hostname_dns_and_sysctls(pods: Pods) -> None:
    config = pods.sandbox_config(
        "dns",
        hostname="test-hostname",
        dns_config=cri.DNSConfig(
            servers=["10.10.10.10"], searches=["google.com"], options=["ndots:8"]
        ),
        linux=cri.LinuxPodSandboxConfig(sysctls={"kernel.shm_rmid_forced": "1"}),
    )
    sandbox_id = pods.run(config)
    container_id = pods.run_container(sandbox_id, pods.container_config("probe"))
    assert pods.exec(container_id, "hostname").stdout == b"test-hostname\n"
    resolv = pods.exec(container_id, "cat", "/etc/resolv.conf").stdout.decode()
    assert "nameserver 10.10.10.10" in resolv
    assert "search google.com" in resolv
    assert "options ndots:8" in resolv
    sysctl = pods.exec(container_id, "cat", "/proc/sys/kernel/shm_rmid_forced")
    assert sysctl.stdout == b"1\n"


def test_host_port_reachable_on_loopback(pods: Pods) -> None:
    pods.pull(WEBSERVER_IMAGE)
    config = pods.sandbox_config(
        "hostport", port_mappings=[cri.PortMapping(container_port=80, host_port=HOST_PORT)]
    )
    sandbox_id = pods.run(config)
    pods.run_container(sandbox_id, pods.container_config("web", WEBSERVER_IMAGE, command=[]))
    page = wait_for(lambda: fetch(f"http://127.0.0.1:{HOST_PORT}/"), "the web server")
    assert b"<html>" in page


def test_host_network_pod_has_no_pod_ip(pods: Pods) -> None:
    namespaces = cri.NamespaceOption(network=cri.NODE)
    config = pods.sandbox_config(
        "hostnet",
        linux=cri.LinuxPodSandboxConfig(
            security_context=cri.LinuxSandboxSecurityContext(namespace_options=namespaces)
        ),
    )
    sandbox_id = pods.run(config)
    status = pods.sandbox_status(sandbox_id).status
    assert status.state == cri.SANDBOX_READY
    assert status.network.ip == ""
    assert status.linux.namespaces.options.network == cri.NODE


def test_host_pid_and_ipc_namespaces(pods: Pods) -> None:
    namespaces = cri.NamespaceOption(pid=cri.NODE, ipc=cri.NODE)
    config = pods.sandbox_config(
        "hostpid",
        linux=cri.LinuxPodSandboxConfig(
            security_context=cri.LinuxSandboxSecurityContext(namespace_options=namespaces)
        ),
    )
    sandbox_id = pods.run(config)
    security = cri.LinuxContainerSecurityContext(namespace_options=namespaces)
    container_id = pods.run_container(
        sandbox_id,
        pods.container_config("host", linux=cri.LinuxContainerConfig(security_context=security)),
    )
    init = Path("/proc/1/comm").read_bytes()
    assert pods.exec(container_id, "cat", "/proc/1/comm").stdout == init
    options = pods.sandbox_status(sandbox_id).status.linux.namespaces.options
    assert (options.pid, options.ipc) == (cri.NODE, cri.NODE)


def test_retried_run_returns_the_same_pod(pods: Pods) -> None:
    config = pods.sandbox_config("retried")
    first = pods.run(config)
    second = pods.run(config)
    assert first == second
    other = cri.PodSandboxConfig()
    other.CopyFrom(config)
    other.labels["changed"] = "yes"
    assert rpc_code(lambda: pods.run(other)) == grpc.StatusCode.ALREADY_EXISTS


def test_bad_sandbox_requests(pods: Pods) -> None:
    rt = pods.rt
    before = listed_ids(pods)
    no_metadata = cri.PodSandboxConfig(hostname="x")
    assert (
        rpc_code(lambda: rt.RunPodSandbox(cri.RunPodSandboxRequest(config=no_metadata)))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    config = pods.sandbox_config("bad-handler")
    assert (
        rpc_code(
            lambda: rt.RunPodSandbox(
                cri.RunPodSandboxRequest(config=config, runtime_handler="no-such-runtime")
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    unknown = "f" * 64
    assert rpc_code(lambda: pods.sandbox_status(unknown)) == grpc.StatusCode.NOT_FOUND
    assert (
        rpc_code(lambda: rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=unknown)))
        == grpc.StatusCode.OK
    )
    assert (
        rpc_code(lambda: rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=unknown)))
        == grpc.StatusCode.OK
    )
    assert listed_ids(pods) == before


def test_a_pod_that_fails_to_start_leaves_nothing(pods: Pods) -> None:
    before = listed_ids(pods)
    config = pods.sandbox_config(
        "bad-sysctl", linux=cri.LinuxPodSandboxConfig(sysctls={"pycrid.no.such.sysctl": "1"})
    )
    code = rpc_code(lambda: pods.run(config))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    bad_port = pods.sandbox_config(
        "bad-port", port_mappings=[cri.PortMapping(container_port=80, host_port=70000)]
    )
    assert rpc_code(lambda: pods.run(bad_port)) == grpc.StatusCode.INVALID_ARGUMENT
    assert listed_ids(pods) == before
    assert pods.leftovers() == {}


def test_a_run_cut_short_by_its_deadline_can_be_retried(pods: Pods) -> None:
    config = pods.sandbox_config("deadline")
    request = cri.RunPodSandboxRequest(config=config)
    try:
        first = pods.rt.RunPodSandbox(request, timeout=0.05).pod_sandbox_id
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        first = ""

    def retry() -> str:
        try:
            return pods.rt.RunPodSandbox(request, timeout=60).pod_sandbox_id
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ALREADY_EXISTS:  # the first is still cleaning up
                raise
            return ""

    sandbox_id = wait_for(retry, "a retried RunPodSandbox to succeed")
    pods.sandboxes.append(sandbox_id)
    assert not first or first == sandbox_id
    assert pods.sandbox_status(sandbox_id).status.state == cri.SANDBOX_READY
    pods_of_this_config = [
        item.id
        for item in pods.rt.ListPodSandbox(cri.ListPodSandboxRequest()).items
        if item.metadata.uid == config.metadata.uid
    ]
    assert pods_of_this_config == [sandbox_id]
