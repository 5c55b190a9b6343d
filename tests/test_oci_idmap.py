"""ID-mapped mounts made by pycrid (``idmap.py``) and the reach wrapper (``reach.py``),
for real: they need root and a kernel with MOUNT_ATTR_IDMAP (5.12+)."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.oci.runtime import idmap, reach

MAPPING = [{"containerID": 0, "hostID": 100000, "size": 65536}]
SETPRIV = shutil.which("setpriv")


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == target for line in mountinfo)


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo if line.split()[4].startswith(prefix)]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    return None


requires_root = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture
def area(tmp_path: Path) -> Iterator[Path]:
    """A directory whose mounts are all detached at the end, before it is removed."""
    yield tmp_path
    for mount_point in sorted(_mounts_below(tmp_path), key=len, reverse=True):
        idmap.detach(mount_point)


def test_map_text() -> None:
    two = [*MAPPING, {"containerID": 65536, "hostID": 300000, "size": 1}]
    assert idmap.map_text(two) == "0 100000 65536\n65536 300000 1\n"


@requires_root
async def test_an_id_mapped_mount_shows_host_root_files_as_the_mapped_root(area: Path) -> None:
    source, target = area / "source", area / "target"
    source.mkdir()
    (source / "file").write_text("data\n")
    target.mkdir()
    async with idmap.user_namespace(MAPPING, MAPPING) as userns_fd:
        assert os.readlink(f"/proc/self/fd/{userns_fd}") != os.readlink("/proc/self/ns/user")
        idmap.mount_idmapped(source, target, userns_fd, recursive=False)
    # The mount keeps the namespace's mapping after the descriptor is closed.
    st = (target / "file").stat()
    assert (st.st_uid, st.st_gid) == (100000, 100000)
    assert (target / "file").read_text() == "data\n"
    # Host root writing through it: stored as what host root is inside (unmapped here).
    assert (source / "file").stat().st_uid == 0
    idmap.detach(target)
    assert not _mounted(target)
    idmap.detach(target)  # nothing mounted: fine


@requires_root
async def test_a_recursive_id_mapped_mount_maps_the_mounts_below(area: Path) -> None:
    source, target = area / "source", area / "target"
    (source / "sub").mkdir(parents=True)
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(source / "sub")], check=True)
    (source / "sub" / "file").write_text("x")
    try:
        async with idmap.user_namespace(MAPPING, MAPPING) as userns_fd:
            idmap.mount_idmapped(source, target, userns_fd, recursive=True)
        assert (target / "sub" / "file").stat().st_uid == 100000
    finally:
        idmap.detach(target)
        idmap.detach(source / "sub")
    assert _mounts_below(area) == []


@requires_root
async def test_a_filesystem_without_id_mapping_is_refused_with_einval(area: Path) -> None:
    target = area / "target"
    target.mkdir()
    async with idmap.user_namespace(MAPPING, MAPPING) as userns_fd:
        with pytest.raises(OSError) as raised:
            idmap.mount_idmapped("/proc", target, userns_fd, recursive=False)
    assert raised.value.errno == errno.EINVAL
    assert not _mounted(target)


@requires_root
async def test_a_mapping_the_kernel_refuses_is_invalid_argument() -> None:
    overlapping = [*MAPPING, {"containerID": 10, "hostID": 500000, "size": 5}]
    with pytest.raises(InvalidArgument, match="refuses the ID mapping"):
        async with idmap.user_namespace(overlapping, MAPPING):
            pass


@requires_root
async def test_no_helper_process_is_left_behind() -> None:
    async with idmap.user_namespace(MAPPING, MAPPING):
        pass
    await asyncio.sleep(0)
    mine = str(os.getpid())
    children = [
        entry
        for entry in os.listdir("/proc")
        if entry.isdigit()
        and _stat_field(Path(f"/proc/{entry}/stat"), 4) == mine  # the parent
        and Path(f"/proc/{entry}/comm").read_text().strip() in ("unshare", "cat")
    ]
    assert children == []


def _stat_field(path: Path, number: int) -> str:
    """Field ``number`` (from 1, as proc(5) counts) of a /proc/<pid>/stat, from 3 on."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    return text[text.rfind(")") + 2 :].split()[number - 3]


@requires_root
async def test_clearing_the_staging_detaches_and_never_empties_a_source(area: Path) -> None:
    source, staging = area / "source", area / "staging"
    (source / "dir").mkdir(parents=True)
    (source / "dir" / "keep").write_text("keep")
    (source / "file").write_text("keep")
    staging.mkdir()
    async with idmap.user_namespace(MAPPING, MAPPING) as userns_fd:
        for name, like in (("m0", source / "dir"), ("m1", source / "file")):
            idmap.make_mount_point(staging / name, like)
            idmap.mount_idmapped(like, staging / name, userns_fd, recursive=True)
    assert stat.S_ISREG((staging / "m1").stat().st_mode)
    assert idmap.clear_staging(staging) == []
    assert not staging.exists()
    assert (source / "dir" / "keep").read_text() == "keep"
    assert (source / "file").read_text() == "keep"
    assert idmap.clear_staging(staging) == []  # gone: fine


def test_clearing_the_staging_refuses_to_remove_what_is_not_a_mount_point(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    (staging / "m0").mkdir(parents=True)
    (staging / "m0" / "precious").write_text("x")
    problems = idmap.clear_staging(staging)
    assert len(problems) == 1 and "m0" in problems[0]
    assert (staging / "m0" / "precious").exists()


# reach: which directories runc's init cannot cross, and the wrapper that covers them.


@requires_root
def test_unsearchable_parents(tmp_path: Path) -> None:
    top = tmp_path / "top"
    mine, theirs, open_ = top / "mine", top / "mine" / "theirs", top / "mine" / "theirs" / "open"
    open_.mkdir(parents=True)
    rootfs = open_ / "rootfs"
    top.chmod(0o700)
    mine.chmod(0o710)
    theirs.chmod(0o700)
    open_.chmod(0o711)
    os.chown(mine, 0, 100000)
    os.chown(theirs, 100000, 0)
    found = reach.unsearchable_parents(rootfs, 100000, 100000)
    # top: only root may search it; mine: its group; theirs: its owner.
    assert str(top) in found and str(mine) not in found and str(theirs) not in found
    assert str(open_) not in found
    assert found == sorted(found, key=len)  # topmost first
    assert "/" not in found
    assert str(mine) in reach.unsearchable_parents(rootfs, 200000, 200000)


def test_the_wrapper_script_runs_this_module(tmp_path: Path) -> None:
    script = reach.write_wrapper(tmp_path, "/usr/sbin/runc", ["/a b", "/c"])
    text = script.read_text()
    assert text.startswith("#!/bin/sh\nexec ")
    assert (
        "-m pycrid.adapters.oci.runtime.reach --cover '/a b' --cover /c -- /usr/sbin/runc" in text
    )
    assert text.rstrip().endswith('"$@"')
    assert script.stat().st_mode & 0o777 == 0o700


@requires_root
@pytest.mark.skipif(SETPRIV is None, reason="needs setpriv (util-linux)")
def test_the_wrapper_lets_a_mapped_root_reach_a_path_below_a_private_directory(
    tmp_path: Path,
) -> None:
    private = tmp_path / "private"
    (private / "state" / "rootfs").mkdir(parents=True)
    (private / "state" / "rootfs" / "file").write_text("reached\n")
    (private / "secret").write_text("secret\n")
    (private / "link").symlink_to("state")
    private.chmod(0o700)
    as_mapped_root = [SETPRIV, "--reuid", "100000", "--regid", "100000", "--clear-groups"]
    wanted = str(private / "state" / "rootfs" / "file")

    plain = subprocess.run([*as_mapped_root, "cat", wanted], capture_output=True, text=True)
    assert plain.returncode != 0 and "Permission denied" in plain.stderr

    script = reach.write_wrapper(
        tmp_path,
        as_mapped_root[0],
        reach.unsearchable_parents(private / "state" / "rootfs", 100000, 100000),
    )
    shell = f"cat {wanted} {private}/link/rootfs/file; ls {private}"
    wrapped = subprocess.run(
        [str(script), *as_mapped_root[1:], "sh", "-c", shell], capture_output=True, text=True
    )
    assert wrapped.stdout == "reached\nreached\n"
    assert "Permission denied" in wrapped.stderr  # searchable, not listable
    assert oct(private.stat().st_mode & 0o777) == "0o700"  # the host is unchanged
    assert _mounts_below(tmp_path) == []


def test_the_wrapper_needs_a_runtime() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pycrid.adapters.oci.runtime.reach", "--cover", "/x"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "usage" in done.stderr
