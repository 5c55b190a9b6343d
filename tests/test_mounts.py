"""mount(2) options split as ``mount -o`` splits them, and a made network namespace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pycrid.adapters.node import mounts, netns
from pycrid.adapters.oci.images.rootfs import is_mounted


def test_flag_options_become_flags_and_the_rest_data() -> None:
    flags, data = mounts.split_options("mode=1777,size=65536k,nosuid,nodev,noexec")
    assert flags == mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC
    assert data == "mode=1777,size=65536k"
    assert mounts.split_options("lowerdir=/a:/b,upperdir=/u,workdir=/w") == (
        0,
        "lowerdir=/a:/b,upperdir=/u,workdir=/w",
    )
    assert mounts.split_options("") == (0, "")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_a_tmpfs_is_mounted_and_unmounted_and_an_unmounted_target_is_fine(tmp_path: Path) -> None:
    target = tmp_path / "shm"
    target.mkdir()
    mounts.mount("shm", target, "tmpfs", "mode=1777,size=1024k,nosuid,nodev,noexec")
    try:
        assert os.stat(target).st_dev != os.stat(tmp_path).st_dev
    finally:
        mounts.unmount(target)
    assert os.stat(target).st_dev == os.stat(tmp_path).st_dev
    mounts.unmount(target)  # not mounted: fine
    with pytest.raises(mounts.MountError):
        mounts.mount("none", tmp_path / "absent", "tmpfs")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_a_mount_point_is_told_even_when_its_path_needs_escaping(tmp_path: Path) -> None:
    spaced = tmp_path / "with space\\and backslash"
    prefix = tmp_path / "with"
    for directory in (spaced, prefix):
        directory.mkdir()
    mounts.mount("shm", spaced, "tmpfs", "size=64k")
    try:
        assert is_mounted(spaced)
        assert not is_mounted(prefix)  # a prefix of a mount point's name is no mount
        assert not is_mounted(tmp_path)
    finally:
        mounts.unmount(spaced)
    assert not is_mounted(spaced)


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_a_made_namespace_is_pinned_and_not_the_callers(tmp_path: Path) -> None:
    path = tmp_path / "netns" / "pod"
    own = os.stat("/proc/thread-self/ns/net").st_ino
    netns.create(path)
    try:
        assert netns.is_pinned(path)
        assert os.stat(path).st_ino != own
        assert os.stat("/proc/thread-self/ns/net").st_ino == own
        netns.create(path)  # made already: kept
    finally:
        netns.unpin(path)
    assert not path.exists()
