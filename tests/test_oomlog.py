"""The kernel log's OOM kills, read as the docker adapter reads them at an exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycrid.adapters.node import oomlog
from pycrid.adapters.node.oomlog import KernelOomLog, cgroup_name

CONTAINER = "c67fa539dd9ffab66e99de252f076a8509fbfd822301811da6cc6451d0f487ba"


def kill_line(task_memcg: str, seq: int = 1) -> str:
    return (
        f"6,{seq},21866525961,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
        f"cpuset=x,mems_allowed=0,oom_memcg={task_memcg},task_memcg={task_memcg},"
        "task=tail,pid=5096,uid=0\n"
    )


@pytest.mark.parametrize(
    "path",
    [
        f"/docker/{CONTAINER}",
        f"/kubepods/burstable/pod1234/{CONTAINER}",
        f"/kubepods.slice/kubepods-burstable.slice/docker-{CONTAINER}.scope",
        f"/system.slice/cri-containerd-{CONTAINER}.scope",
        f"/pycrid.slice/pycrid-{CONTAINER}.scope/",
    ],
)
def test_the_container_id_is_read_from_each_runtimes_cgroup_names(path: str) -> None:
    assert cgroup_name(path) == CONTAINER


def test_only_kills_logged_after_it_opened_count(tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.write_text(kill_line(f"/docker/{CONTAINER}"))
    log = KernelOomLog(kmsg)
    assert log.available
    assert not log.killed_in(CONTAINER)
    with kmsg.open("a") as out:
        out.write("4,2,3,-;tail invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL)\n")
        out.write("3,3,4,-;Memory cgroup out of memory: Killed process 5096 (tail)\n")
        out.write(kill_line(f"/kubepods/besteffort/pod1/docker-{CONTAINER}.scope", 4))
    assert log.killed_in(CONTAINER)
    assert not log.killed_in("other")
    log.close()
    assert not log.available


def test_it_remembers_a_bounded_number_of_cgroups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oomlog, "KEEP", 3)
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    log = KernelOomLog(kmsg)
    with kmsg.open("a") as out:
        for n in range(5):
            out.write(kill_line(f"/docker/c{n}", n))
    assert not log.killed_in("c0")
    assert not log.killed_in("c1")
    assert all(log.killed_in(f"c{n}") for n in (2, 3, 4))
    log.close()


def test_a_log_it_cannot_open_answers_no(tmp_path: Path) -> None:
    log = KernelOomLog(tmp_path / "absent")
    assert not log.available
    assert not log.killed_in(CONTAINER)


def test_the_real_kernel_log_opens_without_blocking() -> None:
    if not oomlog.KMSG.exists():
        pytest.skip("no /dev/kmsg here")
    log = KernelOomLog()
    try:
        assert not log.killed_in(CONTAINER)  # returns at once: nothing blocks on the log
    finally:
        log.close()
