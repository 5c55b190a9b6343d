"""Cgroup parents under the systemd cgroup driver, for both adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.docker import spec
from pycrid.adapters.node import systemdcgroup
from pycrid.api.cri import api_pb2 as cri

POD_SLICE = "kubepods-burstable-pod0a1b2c3d_4e5f.slice"
KUBELET_PARENT = f"/kubepods.slice/kubepods-burstable.slice/{POD_SLICE}"


def test_a_slice_name_is_the_last_component_of_kubelets_parent() -> None:
    assert systemdcgroup.slice_name(KUBELET_PARENT, "system.slice") == POD_SLICE
    assert systemdcgroup.slice_name(POD_SLICE, "system.slice") == POD_SLICE
    assert systemdcgroup.slice_name("", "pycrid.slice") == "pycrid.slice"


@pytest.mark.parametrize("parent", ["/kubepods/burstable/pod1", "/docker", "a.slice/", ".slice"])
def test_a_parent_that_is_no_slice_is_refused_by_name(parent: str) -> None:
    if parent == "a.slice/":
        assert systemdcgroup.slice_name(parent, "x.slice") == "a.slice"
        return
    with pytest.raises(errors.InvalidArgument, match="cgroup_parent"):
        systemdcgroup.slice_name(parent, "system.slice")


def test_a_slice_name_with_an_empty_level_is_refused() -> None:
    with pytest.raises(errors.InvalidArgument, match="not a valid slice name"):
        systemdcgroup.slice_name("/kubepods--x.slice", "system.slice")


def test_a_slice_name_expands_to_its_path_the_way_systemd_reads_it() -> None:
    assert systemdcgroup.slice_path(POD_SLICE) == KUBELET_PARENT
    assert systemdcgroup.slice_path("system.slice") == "/system.slice"
    assert systemdcgroup.slice_path("-.slice") == "/"


def test_runc_gets_slice_prefix_and_id() -> None:
    path = systemdcgroup.runc_cgroups_path(KUBELET_PARENT, "pycrid.slice", "pycrid", "abc")
    assert path == f"{POD_SLICE}:pycrid:abc"
    scope = systemdcgroup.scope_path(KUBELET_PARENT, "pycrid.slice", "pycrid", "abc")
    assert scope == f"{KUBELET_PARENT}/pycrid-abc.scope"


def test_booted_with_systemd_is_the_run_directory(tmp_path: Path) -> None:
    assert not systemdcgroup.booted_with_systemd(tmp_path / "system")
    (tmp_path / "system").mkdir()
    assert systemdcgroup.booted_with_systemd(tmp_path / "system")


# The docker adapter: what dockerd's cgroup driver is given.


def _pod(parent: str) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="p", namespace="ns", uid="u"),
        linux=cri.LinuxPodSandboxConfig(cgroup_parent=parent),
    )


def _sandbox_parent(parent: str, systemd: bool) -> str:
    plan = spec.SandboxPlan(
        image="pause", name="n", labels={}, network_mode="none", systemd_cgroups=systemd
    )
    return spec.sandbox_create_body(_pod(parent), plan)["HostConfig"]["CgroupParent"]


def _container_parent(parent: str, systemd: bool) -> str:
    plan = spec.ContainerPlan(
        image_id="busybox",
        name="c",
        labels={},
        sandbox_id="s" * 64,
        sandbox_config=_pod(parent),
        systemd_cgroups=systemd,
    )
    config = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="c"))
    return spec.container_create_body(config, plan)["HostConfig"]["CgroupParent"]


def test_dockers_systemd_driver_gets_the_pod_slices_name() -> None:
    assert _sandbox_parent(KUBELET_PARENT, systemd=True) == POD_SLICE
    assert _container_parent(KUBELET_PARENT, systemd=True) == POD_SLICE


def test_dockers_cgroupfs_driver_gets_the_path_unchanged() -> None:
    assert _sandbox_parent("/kubepods/burstable/pod1", systemd=False) == "/kubepods/burstable/pod1"
    assert _container_parent("/kubepods/besteffort/pod2", False) == "/kubepods/besteffort/pod2"


def test_dockers_systemd_driver_refuses_a_cgroupfs_path_by_name() -> None:
    with pytest.raises(errors.InvalidArgument, match="not a systemd slice"):
        _sandbox_parent("/kubepods/burstable/pod1", systemd=True)
