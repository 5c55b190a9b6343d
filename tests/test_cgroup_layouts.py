"""Every cgroup reader and writer against the four layouts a node can have.

cgroup v1 or v2, each laid out by the cgroupfs driver (``<parent>/<id>``) or by
systemd (slices and ``<prefix>-<id>.scope``). The trees are synthetic
(tests/cgrouptrees.py): the development machines boot without systemd and
cannot mount the v2 controllers, so v2 is verified here and not on a live host.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pycrid.adapters.errors import FailedPrecondition
from pycrid.adapters.node import cgroups
from pycrid.adapters.node.cgroups import is_dedicated_parent, locate_process
from pycrid.adapters.oci.runtime import conmoncgroup, nodefacts
from pycrid.adapters.podmetrics import PodMetrics, PodProcesses
from pycrid.adapters.podresources import PodCgroupResources
from pycrid.api.cri import api_pb2 as cri
from pycrid.tools.doctor.node import cgroup_version

from .cgrouptrees import LAYOUT_IDS, LAYOUTS, POD_UID, Tree, make_tree
from .test_podmetrics import NoStats

PAUSE = "p" * 64
APP = "c" * 64
MEMORY = 40 << 20
LIMIT = 64 << 20


@pytest.fixture(params=LAYOUTS, ids=LAYOUT_IDS)
def tree(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tree:
    version, systemd = request.param
    made = make_tree(tmp_path, version, systemd)
    made.add(PAUSE, 100)
    made.add(APP, 101, memory=MEMORY, limit=LIMIT)
    monkeypatch.setattr(cgroups, "PROC", made.proc)
    return made


# Readers.


def test_the_hierarchy_has_the_trees_version(tree: Tree) -> None:
    assert tree.hierarchy.version == tree.version


def test_a_containers_cgroup_is_found_and_read(tree: Tree) -> None:
    paths = locate_process(tree.hierarchy, 101, APP)
    assert paths is not None
    assert paths.main_dir == tree.dirs(tree.leaf(APP))["memory" if tree.version == 1 else ""]
    if tree.systemd:
        assert paths.main_dir.name == f"pycrid-{APP}.scope"
        assert paths.main_dir.parent.name == f"kubepods-burstable-pod{POD_UID}.slice"
    sample = paths.read()
    assert sample.cpu_ns == 2_500_000_000
    assert sample.pids == 2
    assert sample.memory is not None
    assert sample.memory.usage == MEMORY
    assert sample.memory.working_set == MEMORY - MEMORY // 8
    assert sample.memory.rss == MEMORY // 2
    assert sample.memory.cache == MEMORY // 4
    assert sample.memory.limit == LIMIT
    assert (sample.memory.page_faults, sample.memory.major_page_faults) == (90, 3)


@pytest.mark.parametrize("version", [1, 2])
def test_dockers_scopes_are_found_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    made = make_tree(tmp_path, version, systemd=True, scope_prefix="docker")
    made.add(APP, 101)
    monkeypatch.setattr(cgroups, "PROC", made.proc)
    paths = locate_process(made.hierarchy, 101, APP)
    assert paths is not None and paths.main_dir.name == f"docker-{APP}.scope"
    assert paths.read().cpu_ns == 2_500_000_000


def test_a_process_outside_the_containers_cgroup_is_not_taken_for_it(tree: Tree) -> None:
    assert locate_process(tree.hierarchy, 100, APP) is None
    assert locate_process(tree.hierarchy, 999, APP) is None  # no such process


def test_the_pod_cgroup_is_dedicated_until_a_stranger_moves_in(tree: Tree) -> None:
    paths = locate_process(tree.hierarchy, 100, PAUSE)
    assert paths is not None
    assert is_dedicated_parent(paths, [PAUSE, APP])
    pod = paths.parent().read()
    assert pod.memory is not None and pod.memory.usage == 3 * MEMORY
    tree.add("s" * 64, 102)
    assert not is_dedicated_parent(paths, [PAUSE, APP])


async def test_pod_metrics_read_the_pause_and_container_cgroups(tree: Tree) -> None:
    pods = [PodProcesses(PAUSE, 100, own_network=False, containers={APP: 101})]
    metrics = PodMetrics(lambda: pods, NoStats())  # type: ignore[arg-type]
    metrics._hierarchy = tree.hierarchy
    response = await metrics.list_pod_sandbox_metrics(cri.ListPodSandboxMetricsRequest())
    (pod,) = response.pod_metrics
    container = next(c for c in pod.container_metrics if c.container_id == APP)
    values = {m.name: m.value.value for m in container.metrics}
    assert values["container_memory_usage_bytes"] == MEMORY
    assert values["container_cpu_usage_seconds_total"] == 2


def test_the_doctor_names_the_version(tree: Tree) -> None:
    if tree.version == 2:
        (tree.root / "cgroup.controllers").write_text("cpu memory pids\n")
    assert cgroup_version(tree.root) == ("v2" if tree.version == 2 else "v1 (hybrid)")


def test_node_facts_see_the_version(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    if tree.version == 2:
        (tree.root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    monkeypatch.setattr(nodefacts, "CGROUP_ROOT", tree.root)
    facts = nodefacts.NodeFacts.probe(nodefacts.HostFacts())
    assert facts.cgroup_v2 == (tree.version == 2)
    assert facts.hugetlb_controller == (tree.version == 2)  # no hugetlb hierarchy in v1 here


# Writers.

RESIZE = cri.LinuxContainerResources(
    cpu_period=100000, cpu_quota=150000, cpu_shares=512, memory_limit_in_bytes=256 << 20
)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, unit: str, properties: Sequence[str]) -> None:
        self.calls.append((unit, list(properties)))


async def test_a_pod_resize_lands_where_the_driver_keeps_limits(tree: Tree) -> None:
    recorder = Recorder()
    resources = PodCgroupResources(
        lambda _: (100, [PAUSE, APP]),
        hierarchy=tree.hierarchy,
        systemd=tree.systemd,
        set_property=recorder,
    )
    await resources.update_pod_sandbox_resources(
        cri.UpdatePodSandboxResourcesRequest(pod_sandbox_id=PAUSE, resources=RESIZE)
    )
    pod = tree.dirs(tree.pod_path)
    if tree.systemd:
        assert recorder.calls == [
            (
                f"kubepods-burstable-pod{POD_UID}.slice",
                [
                    "CPUQuotaPeriodSec=100000us",
                    "CPUQuota=150%",
                    "CPUWeight=20",
                    "MemoryMax=268435456",
                ],
            )
        ]
        return
    assert recorder.calls == []
    if tree.version == 1:
        assert (pod["cpu"] / "cpu.cfs_quota_us").read_text() == "150000"
        assert (pod["cpu"] / "cpu.shares").read_text() == "512"
        assert (pod["memory"] / "memory.limit_in_bytes").read_text() == str(256 << 20)
    else:
        assert (pod[""] / "cpu.max").read_text() == "150000 100000"
        assert (pod[""] / "cpu.weight").read_text() == "20"
        assert (pod[""] / "memory.max").read_text() == str(256 << 20)


async def test_a_pod_without_a_cgroup_of_its_own_is_refused(tree: Tree) -> None:
    tree.add("s" * 64, 102)  # another pod's container beside this pod's
    resources = PodCgroupResources(
        lambda _: (100, [PAUSE, APP]),
        hierarchy=tree.hierarchy,
        systemd=tree.systemd,
        set_property=Recorder(),
    )
    with pytest.raises(FailedPrecondition, match="no cgroup of its own"):
        await resources.update_pod_sandbox_resources(
            cri.UpdatePodSandboxResourcesRequest(pod_sandbox_id=PAUSE, resources=RESIZE)
        )


def test_conmons_cgroup_is_made_in_every_hierarchy(tree: Tree) -> None:
    """The cgroupfs driver's monitor cgroup (systemd gives each conmon a scope instead)."""
    dirs = conmoncgroup.hierarchy_dirs("/pycrid/conmon-x", tree.hierarchy)
    if tree.version == 2:
        assert dirs == [tree.root / "pycrid/conmon-x"]
    else:
        assert tree.root / "memory/pycrid/conmon-x" in dirs
        assert tree.root / "systemd/pycrid/conmon-x" in dirs
        assert tree.root / "unified/pycrid/conmon-x" in dirs
