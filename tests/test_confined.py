"""Log files opened below their directory, never through a symlink or '..'."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node import confined
from pycrid.adapters.node.crilog import CriLogFile

WRITE = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def test_opens_and_makes_parents(tmp_path: Path) -> None:
    fd = confined.open_beneath(str(tmp_path / "pod"), "app/0.log", WRITE)
    os.write(fd, b"x")
    os.close(fd)
    assert (tmp_path / "pod" / "app" / "0.log").read_bytes() == b"x"


@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/etc/x", "", "."])
def test_paths_that_leave_are_refused(tmp_path: Path, relative: str) -> None:
    with pytest.raises(InvalidArgument):
        confined.open_beneath(str(tmp_path), relative, WRITE)


def test_a_symlinked_file_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("keep")
    (tmp_path / "pod").mkdir()
    (tmp_path / "pod" / "0.log").symlink_to(target)
    with pytest.raises(InvalidArgument):
        confined.open_beneath(str(tmp_path / "pod"), "0.log", WRITE)
    assert target.read_text() == "keep"


def test_a_symlinked_directory_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "pod").mkdir()
    (tmp_path / "pod" / "app").symlink_to(elsewhere)
    with pytest.raises(InvalidArgument):
        confined.open_beneath(str(tmp_path / "pod"), "app/0.log", WRITE)
    assert list(elsewhere.iterdir()) == []


def test_no_descriptor_leaks(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        os.close(confined.open_beneath(str(tmp_path), "a/b/c.log", WRITE))
        with pytest.raises(InvalidArgument):
            confined.open_beneath(str(tmp_path), "a/b/c.log/d", WRITE)
    assert len(os.listdir("/proc/self/fd")) == before


def test_cri_log_file_with_a_root_reopens_inside_it(tmp_path: Path) -> None:
    root = tmp_path / "pod"
    log = CriLogFile(root / "app" / "0.log", root=str(root))
    log.write(b"line\n")
    (root / "app" / "0.log").rename(root / "app" / "0.log.1")
    log.reopen()
    log.write(b"again\n")
    log.close()
    assert (root / "app" / "0.log").read_bytes() == b"again\n"
    (root / "app" / "0.log").unlink()
    (root / "app" / "0.log").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidArgument):
        CriLogFile(root / "app" / "0.log", root=str(root))
    with pytest.raises(InvalidArgument):
        CriLogFile(tmp_path / "x.log", root=str(root))


def test_a_symlinked_log_directory_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "pod").symlink_to(elsewhere)
    with pytest.raises(InvalidArgument, match="symlink"):
        confined.open_beneath(str(tmp_path / "pod"), "0.log", WRITE)
    assert list(elsewhere.iterdir()) == []


def test_a_dangling_symlinked_log_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pod").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidArgument, match="symlink"):
        confined.open_beneath(str(tmp_path / "pod"), "0.log", WRITE)
    assert not (tmp_path / "nowhere").exists()


def test_a_log_directory_below_a_symlinked_parent_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "var").symlink_to(tmp_path / "real")
    os.close(confined.open_beneath(str(tmp_path / "var" / "pod"), "0.log", WRITE))
    assert (tmp_path / "real" / "pod" / "0.log").is_file()


def test_a_fifo_at_the_log_path_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "0.log")
    started = time.monotonic()
    with pytest.raises(InvalidArgument, match="is a FIFO"):
        confined.open_beneath(str(tmp_path), "0.log", WRITE)
    assert time.monotonic() - started < 0.5


def test_a_fifo_with_a_reader_at_the_log_path_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "0.log"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(InvalidArgument, match="FIFO"):
            confined.open_beneath(str(tmp_path), "0.log", WRITE)
    finally:
        os.close(reader)


def test_a_device_at_the_log_path_is_refused(tmp_path: Path) -> None:
    os.mknod(tmp_path / "0.log", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
    with pytest.raises(InvalidArgument, match="character device"):
        confined.open_beneath(str(tmp_path), "0.log", WRITE)


def test_the_opened_log_file_blocks_as_usual(tmp_path: Path) -> None:
    fd = confined.open_beneath(str(tmp_path), "0.log", WRITE)
    try:
        assert os.get_blocking(fd)
    finally:
        os.close(fd)


def test_make_file_makes_an_empty_file_once(tmp_path: Path) -> None:
    path = tmp_path / "pod" / "app" / "0.log"
    confined.make_file(str(tmp_path / "pod"), str(path))
    path.write_bytes(b"kept")
    confined.make_file(str(tmp_path / "pod"), str(path))
    assert path.read_bytes() == b"kept"


def test_cri_log_file_without_a_root_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "0.log")
    with pytest.raises(OSError, match="No such device"):  # no reader: ENXIO
        CriLogFile(tmp_path / "0.log")
    reader = os.open(tmp_path / "0.log", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(InvalidArgument, match="FIFO"):
            CriLogFile(tmp_path / "0.log")
    finally:
        os.close(reader)


def test_a_failed_reopen_keeps_the_old_file(tmp_path: Path) -> None:
    root = tmp_path / "pod"
    log = CriLogFile(root / "0.log", root=str(root))
    try:
        (root / "0.log").rename(root / "0.log.1")
        os.mkfifo(root / "0.log")
        with pytest.raises(InvalidArgument, match="FIFO"):
            log.reopen()
        log.write(b"still here\n")
        assert (root / "0.log.1").read_bytes() == b"still here\n"
        (root / "0.log").unlink()
        log.reopen()
        log.write(b"new\n")
        assert (root / "0.log").read_bytes() == b"new\n"
    finally:
        log.close()


def test_remove_beneath_removes_a_planted_symlink_or_fifo_only(tmp_path: Path) -> None:
    root = tmp_path / "pod"
    (root / "app").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (root / "app" / "0.log.tmp").symlink_to(victim)
    confined.remove_beneath(str(root), str(root / "app" / "0.log.tmp"))
    assert not (root / "app" / "0.log.tmp").is_symlink() and victim.read_text() == "keep"
    os.mkfifo(root / "app" / "0.log.tmp")
    confined.remove_beneath(str(root), str(root / "app" / "0.log.tmp"))
    assert not (root / "app" / "0.log.tmp").exists()
    confined.remove_beneath(str(root), str(root / "app" / "0.log.tmp"))  # nothing: fine
    confined.remove_beneath(str(root), str(root / "none" / "0.log.tmp"))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.tmp").write_text("keep")
    (root / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidArgument):
        confined.remove_beneath(str(root), str(root / "link" / "x.tmp"))
    assert (tmp_path / "elsewhere" / "x.tmp").exists()
