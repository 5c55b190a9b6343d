"""Stats of the docker adapter: cgroup, mount table and /proc parsing, CPU rates, layer sizes."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pycrid.adapters import criviews
from pycrid.adapters.docker import stats
from pycrid.adapters.docker.fake import FakeContainer, FakeDocker
from pycrid.adapters.docker.stats import DockerStats
from pycrid.adapters.docker.store import ContainerRecord, StateFiles, Store
from pycrid.adapters.errors import NotFound
from pycrid.adapters.node import cgroups, criusage, layersize, procnet
from pycrid.adapters.node.cgroups import CgroupPaths, CgroupSample, Hierarchy, MemorySample
from pycrid.adapters.node.cpurates import CpuRates
from pycrid.adapters.node.layersize import LayerSizes
from pycrid.api.cri import api_pb2 as cri

CONTAINER = "4983a2d2b3c65b3ddde109e65ec4341c50f47c8d3314b4a102c3be7bbb70c97f"
V1_UNLIMITED = "9223372036854771712"

V1_MEMORY_STAT = """cache 4096
rss 53248
pgfault 700
pgmajfault 1
inactive_file 4096
hierarchical_memory_limit 9223372036854771712
total_cache 1052672
total_rss 2150400
total_pgfault 757
total_pgmajfault 3
total_inactive_file 1048576
total_active_file 4096
"""

V2_MEMORY_STAT = """anon 2097152
file 1052672
inactive_file 1048576
active_file 4096
pgfault 812
pgmajfault 2
"""

V2_CPU_STAT = """usage_usec 1500
user_usec 1000
system_usec 500
nr_periods 0
"""

# The mount table of a hybrid host with controllers on their own mounts.
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

COMBINED_MOUNTINFO = """\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 /kube /sys/fs/cgroup/memory rw shared:10 - cgroup cgroup rw,memory
"""

V2_MOUNTINFO = """\
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw
"""

DOCKER_PROC_CGROUP = f"""\
9:name=systemd:/docker/{CONTAINER}
8:pids:/docker/{CONTAINER}
4:memory:/docker/{CONTAINER}
2:cpuacct:/docker/{CONTAINER}
1:cpu:/docker/{CONTAINER}
0::/docker/{CONTAINER}
"""

NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes packets errs drop fifo frame compressed multicast"
    "|bytes packets errs drop fifo colls carrier compressed\n"
    "    lo: 140 2 0 0 0 0 0 0 140 2 0 0 0 0 0 0\n"
    "  eth0: 1296 16 1 0 0 0 0 0 520 6 2 0 0 0 0 0\n"
    "  net1:10 1 0 0 0 0 0 0 20 1 0 0 0 0 0 0\n"
)


def write_files(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def v1_cgroup(root: Path, limit: str = V1_UNLIMITED) -> dict[str, Path]:
    return {
        "cpuacct": write_files(root / "cpuacct", {"cpuacct.usage": "9924034\n"}),
        "memory": write_files(
            root / "memory",
            {
                "memory.usage_in_bytes": "3641344\n",
                "memory.limit_in_bytes": limit + "\n",
                "memory.stat": V1_MEMORY_STAT,
            },
        ),
        "pids": write_files(root / "pids", {"pids.current": "3\n"}),
    }


def v2_cgroup(directory: Path, limit: str = "max") -> Path:
    return write_files(
        directory,
        {
            "cpu.stat": V2_CPU_STAT,
            "memory.current": "3641344\n",
            "memory.max": limit + "\n",
            "memory.stat": V2_MEMORY_STAT,
            "pids.current": "2\n",
        },
    )


# Reading cgroup files.


def test_parse_keyed_takes_key_value_lines() -> None:
    assert cgroups.parse_keyed("a 1\nb -2\nbad line here\nc x\n") == {"a": 1, "b": -2}


def test_v1_reading_uses_the_hierarchical_totals(tmp_path: Path) -> None:
    sample = cgroups.read_v1(v1_cgroup(tmp_path))
    assert sample.timestamp > 0
    assert sample.cpu_ns == 9924034
    assert sample.memory == MemorySample(
        usage=3641344,
        working_set=3641344 - 1048576,
        rss=2150400,
        page_faults=757,
        major_page_faults=3,
        limit=None,
    )
    assert sample.pids == 3


def test_v1_memory_limit_is_kept_when_set(tmp_path: Path) -> None:
    sample = cgroups.read_v1(v1_cgroup(tmp_path, limit=str(64 << 20)))
    assert sample.memory is not None
    assert sample.memory.limit == 64 << 20


def test_v1_reading_of_a_removed_cgroup_has_no_figures(tmp_path: Path) -> None:
    dirs = {name: tmp_path / name for name in ("cpuacct", "memory", "pids")}
    sample = cgroups.read_v1(dirs)
    assert (sample.cpu_ns, sample.memory, sample.pids) == (None, None, None)


def test_v2_reading(tmp_path: Path) -> None:
    sample = cgroups.read_v2(v2_cgroup(tmp_path))
    assert sample.cpu_ns == 1500 * 1000
    assert sample.memory == MemorySample(
        usage=3641344,
        working_set=3641344 - 1048576,
        rss=2097152,
        page_faults=812,
        major_page_faults=2,
        limit=None,
    )
    assert sample.pids == 2


def test_v2_limit_and_missing_controllers(tmp_path: Path) -> None:
    limited = cgroups.read_v2(v2_cgroup(tmp_path / "a", limit=str(32 << 20)))
    assert limited.memory is not None and limited.memory.limit == 32 << 20
    cpu_only = cgroups.read_v2(write_files(tmp_path / "b", {"cpu.stat": V2_CPU_STAT}))
    assert cpu_only.cpu_ns == 1_500_000
    assert cpu_only.memory is None and cpu_only.pids is None


def test_working_set_never_goes_below_zero(tmp_path: Path) -> None:
    directory = v2_cgroup(tmp_path)
    (directory / "memory.current").write_text("100\n")
    sample = cgroups.read_v2(directory)
    assert sample.memory is not None and sample.memory.working_set == 0


def test_sum_of_samples_adds_figures_and_drops_limits() -> None:
    memory = MemorySample(10, 8, 5, 3, 1, limit=100)
    total = cgroups.sum_samples(
        [
            CgroupSample(timestamp=5, cpu_ns=7, memory=memory, pids=1),
            CgroupSample(timestamp=9, cpu_ns=3, memory=memory, pids=2),
            CgroupSample(timestamp=7),
        ]
    )
    assert total == CgroupSample(
        timestamp=9, cpu_ns=10, memory=MemorySample(20, 16, 10, 6, 2), pids=3
    )
    empty = cgroups.sum_samples([CgroupSample(timestamp=1)])
    assert (empty.cpu_ns, empty.memory, empty.pids) == (None, None, None)


# Finding a process's cgroups.


def test_parse_proc_cgroup_splits_combined_controllers() -> None:
    paths = cgroups.parse_proc_cgroup("2:cpu,cpuacct:/a\n4:memory:/b\n1:name=systemd:/c\n0::/d\n")
    assert paths == {"cpu": "/a", "cpuacct": "/a", "memory": "/b", "name=systemd": "/c", "": "/d"}


def test_hybrid_host_is_read_through_its_v1_controllers() -> None:
    hierarchy = Hierarchy.parse(HYBRID_MOUNTINFO)
    assert hierarchy.version == 1
    found = hierarchy.locate(DOCKER_PROC_CGROUP)
    assert found == CgroupPaths(
        1,
        {
            "cpuacct": Path("/sys/fs/cgroup/cpuacct/docker", CONTAINER),
            "memory": Path("/sys/fs/cgroup/memory/docker", CONTAINER),
            "pids": Path("/sys/fs/cgroup/pids/docker", CONTAINER),
        },
    )
    assert found.parent().dirs["memory"] == Path("/sys/fs/cgroup/memory/docker")


def test_v1_mount_of_a_subtree_and_combined_controllers() -> None:
    hierarchy = Hierarchy.parse(COMBINED_MOUNTINFO)
    found = hierarchy.locate("3:cpu,cpuacct:/kube/pod1/c1\n5:memory:/kube/pod1/c1\n")
    assert found is not None
    assert found.dirs == {
        "cpuacct": Path("/sys/fs/cgroup/cpu,cpuacct/kube/pod1/c1"),
        "memory": Path("/sys/fs/cgroup/memory/pod1/c1"),
    }
    # A cgroup outside what is mounted cannot be read.
    assert hierarchy.locate("3:cpu,cpuacct:/x\n5:memory:/elsewhere/x\n") is None


def test_v2_host_uses_the_unified_entry() -> None:
    hierarchy = Hierarchy.parse(V2_MOUNTINFO)
    assert hierarchy.version == 2
    found = hierarchy.locate(f"0::/system.slice/docker-{CONTAINER}.scope\n")
    assert found == CgroupPaths(
        2, {"": Path(f"/sys/fs/cgroup/system.slice/docker-{CONTAINER}.scope")}
    )
    assert found.main_dir == found.dirs[""]
    assert hierarchy.locate("4:memory:/x\n") is None


def test_mountinfo_escapes_are_undone() -> None:
    hierarchy = Hierarchy.parse(
        r"30 23 0:26 / /sys/fs/cgroup/my\040mount rw - cgroup2 cgroup2 rw" + "\n"
    )
    assert hierarchy.v2 == cgroups.Mount(root="/", point="/sys/fs/cgroup/my mount")


def test_dedicated_parent_holds_only_the_pods_cgroups(tmp_path: Path) -> None:
    pod = tmp_path / "memory" / "kubepods" / "pod1"
    for name in ("pause1", "app1"):
        (pod / name).mkdir(parents=True)
    (pod / "memory.stat").write_text("")
    paths = CgroupPaths(1, {"memory": pod / "pause1"})
    assert cgroups.is_dedicated_parent(paths, ["pause1", "app1"])
    (pod / "someone-else").mkdir()
    assert not cgroups.is_dedicated_parent(paths, ["pause1", "app1"])
    gone = CgroupPaths(1, {"memory": tmp_path / "nothing" / "pause1"})
    assert not cgroups.is_dedicated_parent(gone, ["pause1"])


# Network.


def test_net_dev_figures() -> None:
    interfaces = procnet.parse_net_dev(NET_DEV)
    assert [i.name for i in interfaces] == ["lo", "eth0", "net1"]
    assert interfaces[1] == procnet.InterfaceSample("eth0", 1296, 1, 520, 2)


def test_network_usage_defaults_to_eth0_and_leaves_loopback_out() -> None:
    usage = criusage.network_usage(procnet.parse_net_dev(NET_DEV), timestamp=42)
    assert usage.timestamp == 42
    assert usage.default_interface.name == "eth0"
    assert usage.default_interface.rx_bytes.value == 1296
    assert usage.default_interface.tx_errors.value == 2
    assert [i.name for i in usage.interfaces] == ["net1"]


def test_network_usage_without_eth0_takes_the_first_interface() -> None:
    only_net1 = [i for i in procnet.parse_net_dev(NET_DEV) if i.name != "eth0"]
    assert criusage.network_usage(only_net1, 1).default_interface.name == "net1"
    loopback_only = criusage.network_usage(procnet.parse_net_dev(NET_DEV)[:1], 1)
    assert not loopback_only.HasField("default_interface")


def test_net_dev_of_this_process_and_of_a_gone_one() -> None:
    interfaces = procnet.read_net_dev(os.getpid())
    assert interfaces is not None and "lo" in [i.name for i in interfaces]
    assert procnet.read_net_dev(0) is None


# CPU rates and messages.


def test_cpu_rate_needs_a_previous_sample_and_a_long_enough_window() -> None:
    second = 1_000_000_000
    rates = CpuRates(min_window_ns=second)
    assert rates.rate("c", 10 * second, 5 * second) is None
    assert rates.rate("c", 12 * second, 6 * second) == second // 2
    # Too close to the previous sample: the previous rate stands.
    assert rates.rate("c", 12 * second + 1000, 9 * second) == second // 2
    assert rates.rate("c", 14 * second, 8 * second) == second
    # Usage went down (a container left a sum): start over.
    assert rates.rate("c", 16 * second, 1 * second) is None
    rates.keep_only([])
    assert rates.rate("c", 20 * second, 2 * second) is None


def test_cpu_and_memory_messages() -> None:
    sample = CgroupSample(
        timestamp=7, cpu_ns=100, memory=MemorySample(50, 40, 30, 20, 0, limit=100), pids=1
    )
    cpu = criusage.cpu_usage(sample, rate=None)
    assert cpu is not None
    assert cpu.timestamp == 7 and cpu.usage_core_nano_seconds.value == 100
    assert not cpu.HasField("usage_nano_cores")
    with_rate = criusage.cpu_usage(sample, rate=0)
    assert with_rate is not None and with_rate.HasField("usage_nano_cores")
    memory = criusage.memory_usage(sample)
    assert memory is not None
    assert memory.timestamp == 7
    assert memory.working_set_bytes.value == 40
    assert memory.available_bytes.value == 60
    assert memory.major_page_faults.value == 0 and memory.HasField("major_page_faults")
    unlimited = criusage.memory_usage(
        CgroupSample(timestamp=7, memory=MemorySample(50, 40, 3, 2, 1))
    )
    assert unlimited is not None and not unlimited.HasField("available_bytes")
    assert criusage.cpu_usage(CgroupSample(timestamp=7), None) is None
    assert criusage.memory_usage(CgroupSample(timestamp=7)) is None
    process = criusage.process_usage(sample)
    assert process is not None
    assert process.timestamp == 7 and process.process_count.value == 1
    assert criusage.process_usage(CgroupSample(timestamp=7)) is None


# Writable layers.


def test_measure_dir_counts_blocks_and_inodes_once(tmp_path: Path) -> None:
    root = tmp_path / "diff"
    (root / "d").mkdir(parents=True)
    (root / "d" / "big").write_bytes(b"x" * 100_000)
    os.link(root / "d" / "big", root / "hardlink")
    (root / "link").symlink_to("/")
    usage = layersize.measure_dir(str(root))
    assert usage.complete
    assert usage.inodes == 4  # diff, d, big (once), link
    assert usage.used_bytes >= 100_000
    assert usage.used_bytes < 2 * 100_000  # the hard link and the symlink's target not twice


def test_measure_dir_is_bounded(tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / str(i)).write_text("x")
    usage = layersize.measure_dir(str(tmp_path), max_entries=5)
    assert not usage.complete and usage.inodes == 5
    assert layersize.measure_dir(str(tmp_path / "missing")) == layersize.DirUsage(0, 0)


async def test_layer_sizes_measure_once_then_serve_the_known_size(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 8192)
    layers = LayerSizes(max_age=3600, first_wait=60)
    try:
        first = await layers.get("c", str(tmp_path))
        assert first is not None and first.usage.used_bytes >= 8192
        (tmp_path / "g").write_bytes(b"x" * 8192)
        assert await layers.get("c", str(tmp_path)) is first
        layers.keep_only([])
        again = await layers.get("c", str(tmp_path))
        assert again is not None and again.usage.inodes == 3
    finally:
        layers.close()


async def test_stale_layer_size_is_served_while_it_is_measured_again(tmp_path: Path) -> None:
    layers = LayerSizes(max_age=0, first_wait=60)
    try:
        first = await layers.get("c", str(tmp_path))
        assert first is not None
        stale = await layers.get("c", str(tmp_path))
        assert stale is not None and stale.usage == first.usage
    finally:
        layers.close()


def test_writable_layer_names_the_storage_driver_directory() -> None:
    usage = layersize.DirUsage(used_bytes=4096, inodes=2)
    layer = stats.writable_layer(
        "/var/lib/docker/overlay2/abc/diff",
        layersize.MeasuredLayer(at=0.0, timestamp=9, usage=usage),
    )
    assert layer.fs_id.mountpoint == "/var/lib/docker/overlay2"
    assert layer.timestamp == 9
    assert (layer.used_bytes.value, layer.inodes_used.value) == (4096, 2)
    unknown = stats.writable_layer("/var/lib/docker/overlay2/abc/diff", None)
    assert unknown.timestamp > 0 and not unknown.HasField("used_bytes")


@pytest.mark.parametrize("version", [1, 2])
def test_cgroup_paths_read_their_version(tmp_path: Path, version: int) -> None:
    if version == 1:
        paths = CgroupPaths(1, v1_cgroup(tmp_path))
    else:
        paths = CgroupPaths(2, {"": v2_cgroup(tmp_path)})
    sample = paths.read()
    assert sample.cpu_ns and sample.memory and sample.pids


def test_attributes_copy_the_records_config() -> None:
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="c", attempt=2),
        labels={"a": "b"},
        annotations={"n": "v"},
    )
    record = ContainerRecord(
        id="c1",
        sandbox_id="s1",
        config=config,
        log_path="",
        created_at=1,
        image_id="",
        image_ref="",
        resources=cri.LinuxContainerResources(),
    )
    attributes = criviews.container_attributes(record)
    assert attributes.id == "c1"
    assert attributes.metadata == config.metadata
    assert dict(attributes.labels) == {"a": "b"}
    assert dict(attributes.annotations) == {"n": "v"}


# The RPCs, on a store and a counting stand-in for Docker.


class Refresher:
    def __init__(self) -> None:
        self.refreshed = 0

    async def refresh_all(self) -> None:
        self.refreshed += 1


def stats_rpcs(tmp_path: Path) -> tuple[DockerStats, FakeDocker, Refresher]:
    docker = FakeDocker()
    docker.root_dir = str(tmp_path)
    image = docker.add_image("registry.k8s.io/x:1")
    refresher = Refresher()
    ctx = SimpleNamespace(
        client=docker,
        store=Store(StateFiles(tmp_path / "state")),
    )
    for container_id, sandbox_id, tier in (
        ("c1", "s1", "web"),
        ("c2", "s1", "db"),
        ("c3", "s2", "web"),
    ):
        record = ContainerRecord(
            id=container_id,
            sandbox_id=sandbox_id,
            config=cri.ContainerConfig(
                metadata=cri.ContainerMetadata(name=container_id), labels={"tier": tier}
            ),
            log_path="",
            created_at=1,
            image_id="",
            image_ref="",
            resources=cri.LinuxContainerResources(),
        )
        ctx.store.containers[container_id] = record
        ctx.store.container_ids.add(container_id)
        docker.containers[container_id] = FakeContainer(
            id=container_id, name=container_id, image_id=image.id, body={}, created=1
        )
        (tmp_path / "overlay2" / container_id / "diff").mkdir(parents=True)
    return DockerStats(cast(Any, ctx), cast(Any, refresher)), docker, refresher


async def listed_ids(rpcs: DockerStats, **fields: Any) -> list[str]:
    request = cri.ListContainerStatsRequest(filter=cri.ContainerStatsFilter(**fields))
    response = await rpcs.list_container_stats(request)
    return sorted(s.attributes.id for s in response.stats)


async def test_docker_is_asked_once_per_container(tmp_path: Path) -> None:
    rpcs, docker, _ = stats_rpcs(tmp_path)
    try:
        for _ in range(3):
            response = await rpcs.container_stats(cri.ContainerStatsRequest(container_id="c1"))
            assert response.stats.attributes.metadata.name == "c1"
            # Created, not running: no figures, but its writable layer.
            assert not response.stats.HasField("cpu")
            assert response.stats.writable_layer.fs_id.mountpoint == str(tmp_path / "overlay2")
        assert [method for method, _ in docker.calls] == ["inspect_container"]
    finally:
        rpcs.close()


async def test_list_filters_refresh_once_and_list_every_state(tmp_path: Path) -> None:
    rpcs, _, refresher = stats_rpcs(tmp_path)
    try:
        assert await listed_ids(rpcs) == ["c1", "c2", "c3"]
        assert await listed_ids(rpcs, id="c2") == ["c2"]
        assert await listed_ids(rpcs, pod_sandbox_id="s1") == ["c1", "c2"]
        assert await listed_ids(rpcs, label_selector={"tier": "web"}) == ["c1", "c3"]
        assert await listed_ids(rpcs, pod_sandbox_id="s2", label_selector={"tier": "db"}) == []
        assert refresher.refreshed == 5
    finally:
        rpcs.close()


async def test_a_container_docker_lost_is_not_found_alone_and_bare_in_lists(
    tmp_path: Path,
) -> None:
    rpcs, _, _ = stats_rpcs(tmp_path)
    try:
        record = rpcs.ctx.store.containers.pop("c1")
        record.id = "gone"
        rpcs.ctx.store.containers["gone"] = record
        rpcs.ctx.store.container_ids.add("gone")
        with pytest.raises(NotFound):
            await rpcs.container_stats(cri.ContainerStatsRequest(container_id="gone"))
        with pytest.raises(NotFound):
            await rpcs.container_stats(cri.ContainerStatsRequest(container_id="nothing"))
        response = await rpcs.list_container_stats(cri.ListContainerStatsRequest())
        (listed,) = [s for s in response.stats if s.attributes.id == "gone"]
        assert not listed.HasField("writable_layer")
    finally:
        rpcs.close()
