"""The CRI log format: timestamps, P/F splitting, streams, the file writer."""

from __future__ import annotations

import datetime

import pytest

from pycrid.adapters.node import crilog
from pycrid.adapters.node.crilog import CriLogEncoder, CriLogFile

T0 = 1_475_713_029_669_794_202  # 2016-10-06T00:17:09.669794202Z


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (T0, "2016-10-06T00:17:09.669794202Z"),
        (1_475_713_029_669_794_200, "2016-10-06T00:17:09.6697942Z"),
        (1_475_713_029_000_000_000, "2016-10-06T00:17:09Z"),
        (1_475_713_029_000_000_001, "2016-10-06T00:17:09.000000001Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_timestamps_are_go_rfc3339nano(ns: int, text: str) -> None:
    assert crilog.format_timestamp(ns) == text
    assert crilog.parse_timestamp(text) == ns


def test_datetime_timestamps() -> None:
    aware = datetime.datetime(2016, 10, 6, 0, 17, 9, 669794, tzinfo=datetime.UTC)
    assert crilog.format_timestamp(aware) == "2016-10-06T00:17:09.669794Z"
    naive = aware.replace(tzinfo=None)
    assert crilog.format_timestamp(naive) == "2016-10-06T00:17:09.669794Z"
    plus_two = aware.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    assert crilog.format_timestamp(plus_two) == "2016-10-06T00:17:09.669794Z"


def test_parse_timestamp_accepts_offsets_and_rejects_garbage() -> None:
    assert crilog.parse_timestamp("2016-10-06T02:17:09.5+02:00") == 1_475_713_029_500_000_000
    assert crilog.parse_timestamp(b"2016-10-06T00:17:09.669794202Z") == T0
    with pytest.raises(ValueError):
        crilog.parse_timestamp("yesterday")


def test_full_lines() -> None:
    enc = CriLogEncoder()
    out = enc.feed(T0, "stdout", b"log content 1\nlog content 2\n")
    assert out == (
        b"2016-10-06T00:17:09.669794202Z stdout F log content 1\n"
        b"2016-10-06T00:17:09.669794202Z stdout F log content 2\n"
    )
    assert enc.feed(T0, "stdout", b"\n") == b"2016-10-06T00:17:09.669794202Z stdout F \n"


def test_line_built_from_several_chunks_is_one_line() -> None:
    enc = CriLogEncoder()
    assert enc.feed(T0, "stdout", b"hel") == b""
    assert enc.feed(T0 + 1, "stdout", b"lo") == b""
    out = enc.feed(T0 + 2, "stdout", b" world\nnext")
    assert list(crilog.parse_lines(out)) == [
        crilog.CriLogLine(T0 + 2, "stdout", "F", b"hello world")
    ]
    assert enc.pending() == {"stdout": (T0 + 2, b"next")}


def test_long_line_is_split_into_p_chunks_and_a_final_f() -> None:
    enc = CriLogEncoder(max_line=4)
    lines = list(crilog.parse_lines(enc.feed(T0, "stdout", b"abcdefghij\n")))
    assert [(line.tag, line.message) for line in lines] == [
        ("P", b"abcd"),
        ("P", b"efgh"),
        ("F", b"ij"),
    ]


def test_line_of_exactly_the_limit_is_one_f_line() -> None:
    enc = CriLogEncoder(max_line=4)
    assert enc.feed(T0, "stdout", b"abcd") == b""
    lines = list(crilog.parse_lines(enc.feed(T0, "stdout", b"\n")))
    assert [(line.tag, line.message) for line in lines] == [("F", b"abcd")]


def test_long_line_fed_in_pieces_is_written_as_soon_as_it_is_partial() -> None:
    enc = CriLogEncoder(max_line=4)
    assert enc.feed(T0, "stdout", b"abc") == b""
    first = list(crilog.parse_lines(enc.feed(T0 + 1, "stdout", b"defgh")))
    assert [(line.tag, line.message) for line in first] == [("P", b"abcd")]
    rest = list(crilog.parse_lines(enc.feed(T0 + 2, "stdout", b"ijkl\n")))
    assert [(line.tag, line.message) for line in rest] == [("P", b"efgh"), ("F", b"ijkl")]


def test_default_limit_is_16_kib() -> None:
    enc = CriLogEncoder()
    lines = list(crilog.parse_lines(enc.feed(T0, "stderr", b"x" * 40_000 + b"\n")))
    assert [(line.tag, len(line.message)) for line in lines] == [
        ("P", 16384),
        ("P", 16384),
        ("F", 40_000 - 2 * 16384),
    ]


def test_unterminated_output_is_written_as_p_on_close() -> None:
    enc = CriLogEncoder()
    assert enc.feed(T0, "stdout", b"done\nno newline") == (
        b"2016-10-06T00:17:09.669794202Z stdout F done\n"
    )
    assert enc.close() == b"2016-10-06T00:17:09.669794202Z stdout P no newline\n"
    assert enc.close() == b""


def test_close_with_an_explicit_time() -> None:
    enc = CriLogEncoder()
    enc.feed(T0, "stderr", b"oops")
    assert enc.close("stderr", ts=0) == b"1970-01-01T00:00:00Z stderr P oops\n"


def test_streams_are_buffered_independently() -> None:
    enc = CriLogEncoder()
    out = enc.feed(T0, "stdout", b"out-")
    out += enc.feed(T0 + 1, "stderr", b"err-")
    out += enc.feed(T0 + 2, "stdout", b"line\n")
    out += enc.feed(T0 + 3, "stderr", b"line\n")
    parsed = list(crilog.parse_lines(out))
    assert [(line.stream, line.message) for line in parsed] == [
        ("stdout", b"out-line"),
        ("stderr", b"err-line"),
    ]


def test_unknown_stream_is_refused() -> None:
    with pytest.raises(ValueError):
        CriLogEncoder().feed(T0, "stdin", b"x\n")


def test_pending_survives_a_restore() -> None:
    first = CriLogEncoder()
    first.feed(T0, "stdout", b"half a ")
    second = CriLogEncoder()
    second.restore(first.pending())
    assert second.feed(T0 + 5, "stdout", b"line\n") == first.feed(T0 + 5, "stdout", b"line\n")


def test_parser_round_trip_and_joining() -> None:
    enc = CriLogEncoder(max_line=3)
    data = enc.feed(T0, "stdout", b"abcdefg\n")
    data += enc.feed(T0, "stderr", b"e\n")
    data += enc.feed(T0, "stdout", b"tail")
    data += enc.close()
    lines = list(crilog.parse_lines(data))
    assert all(line.timestamp == T0 for line in lines)
    assert crilog.join_lines(lines) == [
        ("stdout", b"abcdefg"),
        ("stderr", b"e"),
        ("stdout", b"tail"),
    ]


def test_parser_reads_extended_tags_empty_messages_and_spaces() -> None:
    line = crilog.parse_line(b"2016-10-06T00:17:09.669794202Z stdout P:x a b  c\n")
    assert (line.stream, line.tag, line.partial, line.message) == ("stdout", "P", True, b"a b  c")
    assert crilog.parse_line(b"2016-10-06T00:17:09Z stderr F").message == b""


@pytest.mark.parametrize(
    "bad",
    [
        b"garbage",
        b"2016-10-06T00:17:09Z stdin F x",
        b"2016-10-06T00:17:09Z stdout X x",
        b"not-a-time stdout F x",
    ],
)
def test_parser_rejects_malformed_lines(bad: bytes) -> None:
    with pytest.raises(ValueError):
        crilog.parse_line(bad)


def test_log_file_creates_directories_and_appends(tmp_path) -> None:
    path = tmp_path / "pod" / "ctr" / "0.log"
    log = CriLogFile(path)
    log.write(b"one\n")
    log.close()
    log = CriLogFile(path)
    log.write(b"two\n")
    assert path.read_bytes() == b"one\ntwo\n"
    assert log.size() == 8
    log.close()
    assert log.closed
    with pytest.raises(ValueError):
        log.write(b"three\n")


def test_reopen_after_rename_starts_a_new_file_and_the_old_stops_growing(tmp_path) -> None:
    path = tmp_path / "0.log"
    log = CriLogFile(path)
    log.write(b"before\n")
    old_identity = log.identity()
    rotated = tmp_path / "0.log.20161006-001709"
    path.rename(rotated)
    log.write(b"still old\n")  # kubelet renamed it, but until reopen it is ours
    log.reopen()
    log.write(b"after\n")
    log.close()
    assert rotated.read_bytes() == b"before\nstill old\n"
    assert path.read_bytes() == b"after\n"
    assert old_identity != CriLogFile(path).identity()


def test_reopen_without_rename_keeps_appending(tmp_path) -> None:
    path = tmp_path / "0.log"
    log = CriLogFile(path)
    log.write(b"a\n")
    log.reopen()
    log.write(b"b\n")
    log.close()
    assert path.read_bytes() == b"a\nb\n"
