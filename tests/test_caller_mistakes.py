"""Caller mistakes that runc would report late and as internal errors, refused first."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycrid.adapters.errors import FailedPrecondition, InvalidArgument
from pycrid.adapters.node import hostresources
from pycrid.adapters.node.cgroups import Hierarchy
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.node.logfileerror import log_file_error
from pycrid.adapters.oci.runtime import nodefacts
from pycrid.adapters.oci.runtime.namespaces import check_sysctls
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.adapters.oci.runtime.resources import linux_resources
from pycrid.api.cri import api_pb2 as cri
from pycrid.server.servicers import validate


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostresources, "online_cpus", lambda: {0, 1})
    monkeypatch.setattr(hostresources, "online_memory_nodes", lambda: {0})
    monkeypatch.setattr(hostresources, "huge_page_sizes", lambda: {2 << 20: "2MB", 1 << 30: "1GB"})


def refused(res: cri.LinuxContainerResources) -> str:
    with pytest.raises(InvalidArgument) as e:
        validate.resources(res)
    return str(e.value)


# Resources.


def test_a_memory_limit_below_6_mib_is_refused() -> None:
    assert "memory_limit_in_bytes 1 is below" in refused(
        cri.LinuxContainerResources(memory_limit_in_bytes=1)
    )
    validate.resources(cri.LinuxContainerResources(memory_limit_in_bytes=6 << 20))


def test_a_cpu_quota_past_the_kernels_limit_is_refused() -> None:
    assert "cpu_quota 4611686018427387904" in refused(
        cri.LinuxContainerResources(cpu_quota=2**62, cpu_period=100000)
    )
    validate.resources(cri.LinuxContainerResources(cpu_quota=2**44 - 1))


@pytest.mark.usefixtures("two_cpus")
def test_cpusets_name_only_what_the_node_has() -> None:
    message = refused(cri.LinuxContainerResources(cpuset_cpus="0-63"))
    assert "cpuset_cpus '0-63' names CPU 2" in message and "it has 0-1" in message
    assert "cpuset_mems '0-7' names memory node 1" in refused(
        cri.LinuxContainerResources(cpuset_mems="0-7")
    )
    assert "is not a list" in refused(cri.LinuxContainerResources(cpuset_cpus="3-1"))
    assert "is not a list" in refused(cri.LinuxContainerResources(cpuset_cpus="0-99999999"))
    validate.resources(cri.LinuxContainerResources(cpuset_cpus="0,1", cpuset_mems="0"))


@pytest.mark.usefixtures("two_cpus")
def test_huge_page_sizes_are_the_nodes() -> None:
    def limits(size: str) -> cri.LinuxContainerResources:
        return cri.LinuxContainerResources(
            hugepage_limits=[cri.HugepageLimit(page_size=size, limit=1 << 21)]
        )

    assert "is not a huge page size of this node (1GB, 2MB)" in refused(limits("3KB"))
    assert "is not a size such as 2MB" in refused(limits("2 MiB"))
    validate.resources(limits("2MB"))
    validate.resources(limits("1GB"))


def test_kernel_lists_and_page_sizes_parse() -> None:
    assert hostresources.parse_list("0-2,5") == {0, 1, 2, 5}
    assert hostresources.parse_list("") == set()
    assert hostresources.page_size_bytes("2MB") == 2 << 20
    assert hostresources.page_size_bytes("3kb") is None


# Sysctls.


def pod(sysctls: dict[str, str], **namespaces: int) -> cri.PodSandboxConfig:
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="p", namespace="n", uid="u"),
    )
    config.linux.sysctls.update(sysctls)
    config.linux.security_context.namespace_options.CopyFrom(cri.NamespaceOption(**namespaces))
    return config


@pytest.mark.parametrize(
    ("sysctls", "namespaces", "words"),
    [
        ({"kernel.msgmax": "1000"}, {"ipc": cri.NODE}, "the host IPC namespace"),
        ({"fs.mqueue.msg_max": "10"}, {"ipc": cri.NODE}, "the host IPC namespace"),
        ({"kernel.shmmax": "abc"}, {}, "is not a number"),
        ({"net.ipv4.no_such_thing": "1"}, {}, "does not exist on this node"),
        ({"net.ipv4.ip_forward": "1"}, {"network": cri.NODE}, "the host network"),
        ({"vm.swappiness": "1"}, {}, "is not namespaced"),
    ],
)
def test_sysctls_the_pod_cannot_have(sysctls: dict, namespaces: dict, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        validate.sandbox_config(pod(sysctls, **namespaces))


def test_sysctls_a_pod_may_have() -> None:
    validate.sandbox_config(
        pod({"kernel.sem": "250 32000 32 128", "net.ipv4.conf.eth0.forwarding": "1"})
    )
    validate.sandbox_config(pod({"kernel.domainname": "example"}, ipc=cri.NODE))


def test_oci_refuses_uts_sysctls_on_the_host_network() -> None:
    with pytest.raises(InvalidArgument, match="UTS namespace"):
        check_sysctls(pod({"kernel.domainname": "x"}, network=cri.NODE))
    check_sysctls(pod({"kernel.domainname": "x"}))


# Mounts and the log directory.


@pytest.mark.parametrize("path", ["/proc", "/proc/", "/proc/sys", "/x/../proc/self"])
def test_mounts_over_proc_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgument, match="is in /proc"):
        validate.proc_mount(path)


def test_mounts_over_the_proc_files_runc_allows_pass() -> None:
    validate.proc_mount("/proc/cpuinfo")
    validate.proc_mount("/procfs")


def test_a_log_file_that_cannot_be_made_names_log_directory() -> None:
    error = log_file_error("/proc/self", "c.log", FileNotFoundError(2, "No such file"))
    assert isinstance(error, FailedPrecondition)
    assert "log_directory '/proc/self'" in str(error) and "'c.log'" in str(error)


# Missing cgroup controllers.


def test_limits_of_missing_controllers_are_left_out_with_a_note() -> None:
    node = NodeFacts(controllers=frozenset({"memory"}), hugetlb_controller=False)
    notes: list[str] = []
    res = cri.LinuxContainerResources(
        cpu_shares=512,
        cpuset_cpus="0",
        memory_limit_in_bytes=64 << 20,
        hugepage_limits=[cri.HugepageLimit(page_size="2MB", limit=0)],
    )
    resources = linux_resources(res, node, notes)
    assert "cpu" not in resources and "hugepageLimits" not in resources
    assert resources["memory"]["limit"] == 64 << 20
    assert len(notes) == 3


def test_a_stray_hugetlb_directory_is_no_controller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hugetlb").mkdir()  # what kubelet makes where no hugetlb is mounted
    mountinfo = (
        "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
    )
    monkeypatch.setattr(nodefacts, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(nodefacts, "host_hierarchy", lambda: Hierarchy.parse(mountinfo))
    node = NodeFacts.probe(HostFacts())
    assert not node.hugetlb_controller
    assert node.controllers is not None and {"memory", "cpu"} <= node.controllers
