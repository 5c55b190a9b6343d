"""Docker's stream framing and log stream, fed as bytes; the copier's position."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from pycrid.adapters.docker.logmessages import LogMessage, LogStreamError, LogStreamParser
from pycrid.adapters.docker.logs import Position, _Copier
from pycrid.adapters.docker.stdstream import (
    Frame,
    StdStreamDemuxer,
    StdStreamError,
    encode_frame,
)
from pycrid.adapters.node import crilog
from pycrid.adapters.node.crilog import CriLogFile, parse_timestamp
from pycrid.adapters.node.execoutput import CappedOutput
from pycrid.adapters.node.proctree import kill_process_tree

TS = b"2026-11-26T08:41:31.054819409Z"
NS = parse_timestamp(TS)


def feed_bytewise(parser: StdStreamDemuxer | LogStreamParser, data: bytes) -> list:
    out = []
    for i in range(len(data)):
        out += parser.feed(data[i : i + 1])
    return out


def test_demuxer_splits_frames_fed_in_any_pieces() -> None:
    data = encode_frame("stdout", b"out\n") + encode_frame("stderr", b"err") + b"\x01\0\0\0"
    demuxer = StdStreamDemuxer()
    assert demuxer.feed(data) == [Frame("stdout", b"out\n"), Frame("stderr", b"err")]
    assert demuxer.incomplete
    assert demuxer.feed(b"\0\0\0\x02hi") == [Frame("stdout", b"hi")]
    assert not demuxer.incomplete
    assert feed_bytewise(StdStreamDemuxer(), data[:-4]) == [
        Frame("stdout", b"out\n"),
        Frame("stderr", b"err"),
    ]


def test_demuxer_reads_empty_frames_and_the_header_bytes() -> None:
    assert StdStreamDemuxer().feed(b"\x02\0\0\0\0\0\0\0") == [Frame("stderr", b"")]
    assert encode_frame("stderr", b"abc") == b"\x02\0\0\0\0\0\0\x03abc"


def test_demuxer_refuses_what_is_not_multiplexed() -> None:
    with pytest.raises(StdStreamError):
        StdStreamDemuxer().feed(b"2026-11-26T08:41:31Z hello\n")


def test_framed_log_stream() -> None:
    data = (
        encode_frame("stdout", TS + b" hi\n")
        + encode_frame("stderr", TS + b" err\n")
        + encode_frame("stdout", TS + b" tail")
    )
    expected = [
        LogMessage("stdout", NS, b"hi\n"),
        LogMessage("stderr", NS, b"err\n"),
        LogMessage("stdout", NS, b"tail"),
    ]
    assert LogStreamParser(tty=False).feed(data) == expected
    assert feed_bytewise(LogStreamParser(tty=False), data) == expected


def test_framed_log_stream_keeps_spaces_and_empty_lines() -> None:
    data = encode_frame("stdout", TS + b"  two spaces\n") + encode_frame("stdout", TS + b" \n")
    assert [m.data for m in LogStreamParser(tty=False).feed(data)] == [b" two spaces\n", b"\n"]


def test_tty_log_stream_is_stdout_split_at_newlines() -> None:
    data = TS + b" one\r\n" + TS + b" two\r\n" + TS + b" tail"
    parser = LogStreamParser(tty=True)
    assert feed_bytewise(parser, data) == [
        LogMessage("stdout", NS, b"one\r\n"),
        LogMessage("stdout", NS, b"two\r\n"),
    ]
    assert parser.close() == [LogMessage("stdout", NS, b"tail")]
    assert parser.close() == []


def test_tty_log_stream_partial_messages_are_one_chunk_long() -> None:
    """Docker cuts long lines into 16 KiB messages; a TTY stream has no frames."""
    chunk = 16 * 1024
    line = b"a" * (2 * chunk + 100)
    data = TS + b" " + line[:chunk] + TS + b" " + line[chunk : 2 * chunk] + TS + b" "
    data += line[2 * chunk :] + b"\n" + TS + b" next\n"
    messages = LogStreamParser(tty=True).feed(data)
    assert [len(m.data) for m in messages] == [chunk, chunk, 101, 5]
    assert b"".join(m.data for m in messages[:3]) == line + b"\n"


def test_log_stream_without_timestamps_is_refused() -> None:
    with pytest.raises(LogStreamError):
        LogStreamParser(tty=True).feed(b"x" * 100)
    with pytest.raises(LogStreamError):
        LogStreamParser(tty=False).feed(encode_frame("stdout", b"no-timestamp-here\n"))


def test_position_counts_messages_that_share_a_timestamp() -> None:
    position = Position()
    assert position.since() is None
    for ts in (5, 7, 7, 7):
        position.advance(ts)
    assert (position.timestamp, position.seen) == (7, 3)
    position.advance(6)  # the clock went back: Docker's `since` will not resend it
    assert (position.timestamp, position.seen) == (7, 3)
    position.advance(NS)
    assert position.since() == "1795682491.054819409"


def test_capped_output_keeps_the_first_bytes_and_counts_the_rest() -> None:
    output = CappedOutput(limit=6)
    output.add("stdout", b"abc")
    output.add("stderr", b"e")
    output.add("stdout", b"defg")
    output.add("stderr", b"rr")
    # Both streams together stay within the limit, as one CRI answer must.
    assert (output.stdout, output.stderr) == (b"abcde", b"e")
    assert output.dropped == 4


def test_kill_process_tree_kills_children_too() -> None:
    parent = subprocess.Popen(["sh", "-c", "sleep 600 & sleep 600 & wait"])
    try:
        children: list[int] = []
        for _ in range(200):  # until the shell has forked both
            children = [
                int(c)
                for task in os.listdir(f"/proc/{parent.pid}/task")
                for c in Path(f"/proc/{parent.pid}/task/{task}/children").read_text().split()
            ]
            if len(children) == 2:
                break
            time.sleep(0.01)
        assert len(children) == 2
        killed = kill_process_tree(parent.pid)
        assert sorted(killed) == sorted([parent.pid, *children])
        assert parent.wait(10) == -9
    finally:
        if parent.poll() is None:
            parent.kill()


def test_kill_process_tree_checks_the_pid_namespace() -> None:
    assert kill_process_tree(os.getpid(), same_namespace_as=2**22 + 1) == []


def test_copier_skips_what_it_copied_before_and_what_the_file_holds(tmp_path: Path) -> None:
    """Resuming: messages counted in the position are skipped, and so are the
    bytes that reached the file after the bookmark."""
    copier = _Copier(None, "c" * 64, tmp_path / "0.log", False, tmp_path / "c.json", 16384)  # type: ignore[arg-type]
    copier.file = CriLogFile(copier.log_path)
    copier.file.write(b"2026")  # the start of the next line made it before the kill
    copier.position = Position(NS, 2)
    copier.replay, copier.skip, copier.offset = 2, 4, 100
    copier._consume(
        [
            LogMessage("stdout", NS, b"a\n"),
            LogMessage("stderr", NS, b"b\n"),
            LogMessage("stdout", NS, b"c\n"),
            LogMessage("stderr", NS + 1, b"d\n"),
        ]
    )
    copier.file.close()
    data = copier.log_path.read_bytes()
    assert list(crilog.parse_lines(data)) == [
        crilog.CriLogLine(NS, "stdout", "F", b"c"),
        crilog.CriLogLine(NS + 1, "stderr", "F", b"d"),
    ]
    assert (copier.position.timestamp, copier.position.seen) == (NS + 1, 1)
    assert (copier.offset, copier.skip) == (100 + len(data), 0)
