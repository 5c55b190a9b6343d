"""Files a client names: read without waiting on a FIFO or reading a device without end."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

import pytest

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node import clientfile

LIMIT = clientfile.MIB


def test_reads_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_bytes(b"{}")
    assert clientfile.read_regular(str(tmp_path / "p.json"), LIMIT, "profile") == b"{}"


def test_follows_a_symlink_to_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_bytes(b"{}")
    (tmp_path / "link").symlink_to(tmp_path / "p.json")
    assert clientfile.read_regular(str(tmp_path / "link"), LIMIT, "profile") == b"{}"


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(InvalidArgument, match="is a FIFO"):
        clientfile.read_regular(str(fifo), LIMIT, "profile")
    assert time.monotonic() - started < 0.5


def test_a_fifo_with_a_writer_is_refused_too(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY)
    try:
        with pytest.raises(InvalidArgument, match="is a FIFO"):
            clientfile.read_regular(str(fifo), LIMIT, "profile")
    finally:
        os.close(writer)
        os.close(reader)


def test_dev_zero_is_refused_without_reading() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InvalidArgument, match="character device"):
        clientfile.read_regular("/dev/zero", LIMIT, "profile")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 4096  # KiB


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="is a directory"):
        clientfile.read_regular(str(tmp_path), LIMIT, "profile")


def test_the_cap_is_enforced(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b" " * (LIMIT + 1))
    with pytest.raises(InvalidArgument, match="larger than 1 MiB"):
        clientfile.read_regular(str(tmp_path / "big"), LIMIT, "profile")
    (tmp_path / "exact").write_bytes(b" " * LIMIT)
    assert len(clientfile.read_regular(str(tmp_path / "exact"), LIMIT, "profile")) == LIMIT


def test_a_file_that_grows_is_still_capped(tmp_path: Path) -> None:
    path = tmp_path / "growing"
    path.write_bytes(b"")
    stop = threading.Event()

    def grow() -> None:
        with open(path, "ab") as f:
            while not stop.is_set():
                f.write(b" " * 65536)
                f.flush()

    thread = threading.Thread(target=grow)
    thread.start()
    try:
        time.sleep(0.05)
        with pytest.raises(InvalidArgument, match="larger than 100 bytes"):
            clientfile.read_regular(str(path), 100, "profile")
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("path", ["", "relative.json", "/a\0b"])
def test_bad_paths_are_invalid(path: str) -> None:
    with pytest.raises(InvalidArgument):
        clientfile.read_regular(path, LIMIT, "profile")


def test_missing_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        clientfile.read_regular(str(tmp_path / "missing"), LIMIT, "profile")


def test_no_descriptor_leaks(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b" " * 200)
    before = len(os.listdir("/proc/self/fd"))
    for name in ("fifo", "big", "missing"):
        for _ in range(10):
            with pytest.raises(InvalidArgument):
                clientfile.read_regular(str(tmp_path / name), 100, "profile")
    assert len(os.listdir("/proc/self/fd")) == before
