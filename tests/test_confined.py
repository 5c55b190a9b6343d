"""Log files opened below their directory, never through a symlink or '..'."""

from __future__ import annotations

import os
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
