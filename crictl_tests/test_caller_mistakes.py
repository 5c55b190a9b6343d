"""A caller's mistakes get INVALID_ARGUMENT or FAILED_PRECONDITION naming the field, on
both adapters, never runc's or Docker's words as INTERNAL; and nothing is left behind."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from crictl_tests import harness
from crictl_tests.dockerpods import Pods, open_pods
from crictl_tests.harness import BUSYBOX_IMAGE
from pycrid.api.cri import api_pb2 as cri

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture(scope="module", params=["oci", "docker"])
def pods(
    request: pytest.FixtureRequest, docker_engine: None, test_registry: None
) -> Iterator[Pods]:
    daemon = harness.start_daemon(request.param)
    try:
        with open_pods(daemon, BUSYBOX_IMAGE) as pods:
            yield pods
    finally:
        daemon.stop()
        harness.remove_root(daemon)


@pytest.fixture(scope="module")
def sandbox(pods: Pods) -> str:
    return pods.run(pods.sandbox_config("mistakes"))


def failure(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def resources(**fields: Any) -> cri.LinuxContainerConfig:
    return cri.LinuxContainerConfig(resources=cri.LinuxContainerResources(**fields))


HOST_DIR = tempfile.gettempdir()
CONTAINERS: dict[str, tuple[dict[str, Any], grpc.StatusCode, str]] = {
    "missing program": ({"command": ["/no/such/program"]}, INVALID, "/no/such/program"),
    "program not on PATH": ({"command": ["nosuchprogram"]}, INVALID, "nosuchprogram"),
    "working_dir is a file": ({"working_dir": "/etc/passwd"}, PRECONDITION, "/etc/passwd"),
    "mount at /proc": (
        {"mounts": [cri.Mount(container_path="/proc", host_path=HOST_DIR)]},
        INVALID,
        "container_path '/proc'",
    ),
    "memory of 1 byte": (
        {"linux": resources(memory_limit_in_bytes=1)},
        INVALID,
        "memory_limit_in_bytes",
    ),
    "cpuset beyond the CPUs": ({"linux": resources(cpuset_cpus="0-1023")}, INVALID, "cpuset_cpus"),
    "cpuset beyond the nodes": ({"linux": resources(cpuset_mems="0-63")}, INVALID, "cpuset_mems"),
    "cpu quota of 2^62": (
        {"linux": resources(cpu_quota=2**62, cpu_period=100000)},
        INVALID,
        "cpu_quota",
    ),
    "hugepage size of 3KB": (
        {"linux": resources(hugepage_limits=[cri.HugepageLimit(page_size="3KB", limit=1 << 21)])},
        INVALID,
        "page_size",
    ),
}


@pytest.mark.parametrize("case", list(CONTAINERS))
def test_container_mistakes(pods: Pods, sandbox: str, case: str) -> None:
    fields, code, named = CONTAINERS[case]
    config = pods.container_config(re.sub(r"[^a-z0-9]+", "-", case), **fields)

    def create_and_start() -> None:
        container_id = pods.create(sandbox, config)
        try:
            pods.start(container_id)
        finally:
            pods.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=container_id))

    got, details = failure(create_and_start)
    assert (got, named in details) == (code, True), details


SYSCTLS = {
    "a sysctl the node lacks": ({"net.ipv4.no_such_sysctl": "1"}, {}),
    "a sysctl value that is no number": ({"kernel.shmmax": "abc"}, {}),
    "a sysctl of the whole node": ({"vm.swappiness": "10"}, {}),
    "a malformed sysctl": ({"kernel..msgmax": "10"}, {}),
    "an IPC sysctl with host IPC": ({"kernel.msgmax": "8192"}, {"ipc": cri.NODE}),
    "a net sysctl with host network": ({"net.ipv4.ip_forward": "1"}, {"network": cri.NODE}),
}


@pytest.mark.parametrize("case", list(SYSCTLS))
def test_sysctl_mistakes(pods: Pods, case: str) -> None:
    sysctls, namespaces = SYSCTLS[case]
    config = pods.sandbox_config(case.replace(" ", "-"))
    config.linux.sysctls.update(sysctls)
    config.linux.security_context.namespace_options.CopyFrom(cri.NamespaceOption(**namespaces))
    got, details = failure(lambda: pods.run(config))
    assert got == INVALID and "sysctl" in details, details


def test_a_name_sysctl_on_the_host_network(pods: Pods) -> None:
    """The oci adapter gives such a pod the node's UTS namespace (as containerd does), so
    kernel.domainname would rename the node; Docker gives the pause container its own."""
    config = pods.sandbox_config("uts-on-host-network")
    config.linux.sysctls["kernel.domainname"] = "example"
    config.linux.security_context.namespace_options.network = cri.NODE
    got, details = failure(lambda: pods.run(config))
    if pods.daemon.config["adapter"] == "oci":
        assert got == INVALID and "kernel.domainname" in details, details
    else:
        assert got == grpc.StatusCode.OK


def test_a_log_directory_that_cannot_hold_files(pods: Pods) -> None:
    config = pods.sandbox_config("proc-logs")
    config.log_directory = "/proc/self"
    sandbox_id = pods.run(config)
    container = pods.container_config("logger")

    def create_and_start() -> None:
        pods.start(pods.create(sandbox_id, container, config))

    got, details = failure(create_and_start)
    # /proc/self is a symlink, which no log directory may be (a caller's mistake
    # either way: the field is named).
    assert got in (INVALID, PRECONDITION) and "log_directory '/proc/self'" in details, details


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"memory_limit_in_bytes": 1}, "memory_limit_in_bytes"),
        ({"cpu_quota": 2**62, "cpu_period": 100000}, "cpu_quota"),
        ({"cpuset_cpus": "0-1023"}, "cpuset_cpus"),
    ],
)
def test_update_mistakes(pods: Pods, sandbox: str, fields: dict, named: str) -> None:
    container_id = pods.run_container(sandbox, pods.container_config(f"updated-{named}"))
    request = cri.UpdateContainerResourcesRequest(
        container_id=container_id, linux=cri.LinuxContainerResources(**fields)
    )
    got, details = failure(lambda: pods.rt.UpdateContainerResources(request))
    assert got == INVALID and named in details, details
    assert pods.status(container_id).status.state == cri.CONTAINER_RUNNING
