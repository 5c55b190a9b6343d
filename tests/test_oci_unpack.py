"""Layer unpacking with hand-built tarballs: whiteouts, links, devices, escapes."""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from pycrid.adapters.oci.images import unpackers
from pycrid.adapters.oci.images.unpack import (
    OPAQUE_XATTR,
    UnpackError,
    clean_path,
    unpack,
)

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (mknod, chown, trusted xattrs)")


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, **fields: object
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    data = fields.pop("data", b"")
    assert isinstance(data, bytes)
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 946684800
    for key, value in fields.items():
        setattr(info, key, value)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    return info, data


def make_tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def diff_id(tar: bytes) -> str:
    return "sha256:" + hashlib.sha256(tar).hexdigest()


def unpack_bytes(data: bytes, root: Path, expected: str | None = None):
    return unpack(io.BytesIO(data), root, expected)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "fs"
    path.mkdir()
    return path


def test_files_directories_and_modes(root: Path) -> None:
    tar = make_tar(
        entry("etc", tarfile.DIRTYPE, mode=0o750),
        entry("etc/hostname", data=b"box\n", mode=0o600),
        entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
        entry("./usr/share/doc/README", data=b"x" * 1000),
    )
    result = unpack_bytes(tar, root, diff_id(tar))
    assert result.diff_id == diff_id(tar)
    assert result.size == 4 + 10 + 1000
    assert (root / "etc/hostname").read_bytes() == b"box\n"
    assert stat.S_IMODE((root / "etc").stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "etc/hostname").stat().st_mode) == 0o600
    # Parents missing from the tar are made; the set-uid bit survives chown.
    assert (root / "usr/share/doc").is_dir()
    assert stat.S_IMODE((root / "bin/tool").stat().st_mode) == 0o4755
    assert (root / "etc/hostname").stat().st_mtime == 946684800
    assert (root / "etc").stat().st_mtime == 946684800


@needs_root
def test_ownership_is_numeric_from_the_tar(root: Path) -> None:
    tar = make_tar(
        entry("home", tarfile.DIRTYPE, uid=1002, gid=1003),
        entry("home/file", data=b"a", uid=1002, gid=1003, uname="nobody-here", gname="x"),
        entry("link", tarfile.SYMTYPE, linkname="home/file", uid=7, gid=8),
    )
    unpack_bytes(tar, root)
    assert (root / "home").stat().st_uid == 1002
    assert (root / "home/file").stat().st_gid == 1003
    assert os.lstat(root / "link").st_uid == 7


@pytest.mark.parametrize("compression", ["plain", "gzip", "zstd"])
def test_compressions_give_the_same_layer(root: Path, compression: str) -> None:
    tar = make_tar(entry("a", data=b"hello"), entry("d", tarfile.DIRTYPE))
    data = {
        "plain": tar,
        "gzip": gzip.compress(tar),
        "zstd": zstandard.ZstdCompressor().compress(tar),
    }[compression]
    result = unpack_bytes(data, root, diff_id(tar))
    assert result.diff_id == diff_id(tar)
    assert (root / "a").read_bytes() == b"hello"


def test_diff_id_mismatch_is_refused(root: Path) -> None:
    tar = make_tar(entry("a", data=b"hello"))
    with pytest.raises(UnpackError, match="diff_id"):
        unpack_bytes(tar, root, "sha256:" + "0" * 64)


def test_truncated_layer_is_refused(root: Path) -> None:
    data = gzip.compress(make_tar(entry("a", data=b"x" * 100000)))
    with pytest.raises(UnpackError, match="corrupt"):
        unpack_bytes(data[: len(data) // 2], root)


@needs_root
def test_whiteouts_become_overlay_whiteouts(root: Path) -> None:
    tar = make_tar(
        entry("etc", tarfile.DIRTYPE),
        entry("etc/.wh.passwd"),
        entry(".wh.tmp"),
    )
    unpack_bytes(tar, root)
    for path in (root / "etc/passwd", root / "tmp"):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode)
        assert st.st_rdev == os.makedev(0, 0)
    assert not (root / "etc/.wh.passwd").exists()


@needs_root
def test_opaque_directory(root: Path) -> None:
    tar = make_tar(
        entry("var", tarfile.DIRTYPE),
        entry("var/cache", tarfile.DIRTYPE),
        entry("var/cache/.wh..wh..opq"),
        entry("var/cache/new", data=b"n"),
        entry("var/.wh..wh.plnk", tarfile.DIRTYPE),
    )
    unpack_bytes(tar, root)
    assert os.getxattr(root / "var/cache", OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(root / "var/cache")) == ["new"]
    assert sorted(os.listdir(root / "var")) == ["cache"]


@needs_root
def test_a_layer_cannot_forge_overlay_attributes(root: Path) -> None:
    info, data = entry("d", tarfile.DIRTYPE)
    info.pax_headers = {
        "SCHILY.xattr.trusted.overlay.opaque": "y",
        "SCHILY.xattr.user.note": "kept",
    }
    unpack_bytes(make_tar((info, data)), root)
    assert os.getxattr(root / "d", "user.note") == b"kept"
    with pytest.raises(OSError):
        os.getxattr(root / "d", OPAQUE_XATTR)


def test_hard_links_share_the_inode_and_count_once(root: Path) -> None:
    tar = make_tar(
        entry("bin/busybox", data=b"B" * 500, mode=0o755),
        entry("bin/sh", tarfile.LNKTYPE, linkname="bin/busybox"),
        entry("usr/bin/env", tarfile.LNKTYPE, linkname="/bin/busybox"),
    )
    result = unpack_bytes(tar, root)
    inode = (root / "bin/busybox").stat().st_ino
    assert (root / "bin/sh").stat().st_ino == inode
    assert (root / "usr/bin/env").stat().st_ino == inode
    assert (root / "bin/busybox").stat().st_nlink == 3
    assert result.size == 500


@pytest.mark.parametrize("target", ["../../etc/passwd", "missing/file", "bin"])
def test_hard_links_must_stay_in_the_layer(root: Path, target: str) -> None:
    tar = make_tar(entry("bin", tarfile.DIRTYPE), entry("x", tarfile.LNKTYPE, linkname=target))
    with pytest.raises(UnpackError):
        unpack_bytes(tar, root)


def test_symlinks(root: Path) -> None:
    tar = make_tar(
        entry("usr/lib/libc.so", data=b"c"),
        entry("lib", tarfile.SYMTYPE, linkname="usr/lib"),
        entry("etc/localtime", tarfile.SYMTYPE, linkname="/usr/share/zoneinfo/UTC"),
        entry("usr/lib/up", tarfile.SYMTYPE, linkname="../../lib"),
    )
    result = unpack_bytes(tar, root)
    assert os.readlink(root / "lib") == "usr/lib"
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.readlink(root / "usr/lib/up") == "../../lib"
    assert result.size == 1 + len("usr/lib") + len("/usr/share/zoneinfo/UTC") + len("../../lib")


def test_relative_symlink_escaping_the_root_is_refused(root: Path) -> None:
    tar = make_tar(entry("a/evil", tarfile.SYMTYPE, linkname="../../../etc/shadow"))
    with pytest.raises(UnpackError, match="outside the root"):
        unpack_bytes(tar, root)


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "./../../x"])
def test_paths_escaping_the_root_are_refused(tmp_path: Path, root: Path, name: str) -> None:
    with pytest.raises(UnpackError, match="outside"):
        unpack_bytes(make_tar(entry(name, data=b"bad")), root)
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "x").exists()


def test_absolute_paths_stay_below_the_root(root: Path) -> None:
    unpack_bytes(make_tar(entry("/etc/issue", data=b"hi")), root)
    assert (root / "etc/issue").read_bytes() == b"hi"


def test_nothing_is_written_through_a_symlink(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tar = make_tar(
        entry("dir", tarfile.SYMTYPE, linkname=str(outside)),
        entry("dir/planted", data=b"gotcha"),
    )
    with pytest.raises(UnpackError, match="not a directory"):
        unpack_bytes(tar, root)
    assert list(outside.iterdir()) == []


def test_a_file_replaced_by_a_symlink_is_not_followed(tmp_path: Path, root: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("safe")
    tar = make_tar(
        entry("f", tarfile.SYMTYPE, linkname=str(victim)),
        entry("f", data=b"overwritten"),
    )
    unpack_bytes(tar, root)
    assert victim.read_text() == "safe"
    assert (root / "f").read_bytes() == b"overwritten"
    assert not (root / "f").is_symlink()


@needs_root
def test_device_nodes_and_fifos(root: Path) -> None:
    tar = make_tar(
        entry("dev", tarfile.DIRTYPE),
        entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        entry("dev/loop0", tarfile.BLKTYPE, devmajor=7, devminor=0, mode=0o660, gid=6),
        entry("run/fifo", tarfile.FIFOTYPE, mode=0o620),
    )
    unpack_bytes(tar, root)
    null = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(root / "dev/loop0")
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0)
    assert loop.st_gid == 6
    assert stat.S_ISFIFO(os.lstat(root / "run/fifo").st_mode)


def test_later_entries_replace_earlier_ones(root: Path) -> None:
    tar = make_tar(
        entry("x", data=b"first"),
        entry("x", data=b"second"),
        entry("d", tarfile.DIRTYPE),
        entry("d/inner", data=b"i"),
        entry("d", tarfile.DIRTYPE, mode=0o700),
    )
    unpack_bytes(tar, root)
    assert (root / "x").read_bytes() == b"second"
    assert (root / "d/inner").exists()
    assert stat.S_IMODE((root / "d").stat().st_mode) == 0o700


def test_clean_path() -> None:
    assert clean_path("./a//b/./c/") == ["a", "b", "c"]
    assert clean_path("/abs/x") == ["abs", "x"]
    assert clean_path("a/../b") == ["b"]
    assert clean_path(".") == []
    with pytest.raises(UnpackError):
        clean_path("a/../../b")


async def test_a_large_layer_is_unpacked_by_a_worker_process_and_a_bad_one_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every layer goes to the workers here (threshold 0); the answers are the thread's."""
    monkeypatch.setattr(unpackers, "PROCESS_THRESHOLD", 0)
    threads = concurrent.futures.ThreadPoolExecutor(1)
    layers = unpackers.Unpackers(threads, workers=1)
    tar = make_tar(entry("etc", tarfile.DIRTYPE), entry("etc/motd", data=b"hello\n"))
    blob = tmp_path / "layer.tar.gz"
    blob.write_bytes(gzip.compress(tar))
    try:
        (tmp_path / "fs").mkdir()
        result = await layers.unpack(blob, tmp_path / "fs", diff_id(tar))
        assert result.diff_id == diff_id(tar)
        assert (tmp_path / "fs" / "etc" / "motd").read_bytes() == b"hello\n"
        (tmp_path / "again").mkdir()
        with pytest.raises(UnpackError, match="diff"):
            await layers.unpack(blob, tmp_path / "again", "sha256:" + "0" * 64)
    finally:
        layers.close()
        threads.shutdown()
    assert layers._pool is None
