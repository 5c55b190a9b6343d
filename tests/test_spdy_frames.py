"""SPDY/3.1 framing, fed bytes: hand-built frames and a capture of a real client."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from pycrid.server.streaming import spdy
from pycrid.server.streaming.spdy_headers import (
    DICTIONARY,
    HeaderBlockError,
    HeaderCompressor,
    HeaderDecompressor,
    decode_block,
    encode_block,
)

# What crictl 1.36 (client-go, moby/spdystream) sent after the upgrade of an exec
# without stdin: three SYN_STREAMs (error, stdout, stderr), then, on hanging
# up, RST_STREAM(CANCEL) for each and a GOAWAY.
CRICTL_EXEC = bytes.fromhex(
    "800300010000002a0000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a5a54945f"
    "04000000ffff800300010000001900000003000000000000c22ac5565c92925f5a02000000ffff8003000100"
    "00001500000005000000000000c229975a5404000000ffff8003000300000008000000050000000580030003"
    "0000000800000001000000058003000300000008000000030000000580030007000000080000000000000000"
)


def control(kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHI", 0x8003, kind, flags << 24 | len(body)) + body


def test_dictionary_is_the_spdy3_one() -> None:
    assert len(DICTIONARY) == 1423
    assert (
        hashlib.sha256(DICTIONARY).hexdigest()
        == "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
    )


def test_a_real_client_session_decodes() -> None:
    conn = spdy.SpdyConnection()
    frames = conn.receive_data(CRICTL_EXEC)
    assert frames == [
        spdy.SynStream(1, (("streamtype", "error"),)),
        spdy.SynStream(3, (("streamtype", "stdout"),)),
        spdy.SynStream(5, (("streamtype", "stderr"),)),
        spdy.RstStream(5, spdy.RstStatus.CANCEL),
        spdy.RstStream(1, spdy.RstStatus.CANCEL),
        spdy.RstStream(3, spdy.RstStatus.CANCEL),
        spdy.GoAway(0, spdy.GoAwayStatus.OK),
    ]


def test_bytes_may_arrive_one_at_a_time() -> None:
    conn = spdy.SpdyConnection()
    frames = [f for i in range(len(CRICTL_EXEC)) for f in conn.receive_data(CRICTL_EXEC[i : i + 1])]
    assert len(frames) == 7 and frames[2] == spdy.SynStream(5, (("streamtype", "stderr"),))


def test_data_frames_and_fin() -> None:
    conn = spdy.SpdyConnection()
    raw = struct.pack(">II", 7, 5) + b"hello" + struct.pack(">II", 7, 1 << 24)
    assert conn.receive_data(raw) == [spdy.Data(7, b"hello"), spdy.Data(7, b"", fin=True)]
    assert conn.send(spdy.Data(7, b"hi", fin=True)) == struct.pack(">II", 7, 1 << 24 | 2) + b"hi"


def test_control_frames_are_written_as_specified() -> None:
    conn = spdy.SpdyConnection()
    assert conn.send(spdy.RstStream(3, spdy.RstStatus.CANCEL)) == control(3, 0, b"\0\0\0\3\0\0\0\5")
    assert conn.send(spdy.Ping(1)) == control(6, 0, b"\0\0\0\1")
    assert conn.send(spdy.GoAway(9, spdy.GoAwayStatus.PROTOCOL_ERROR)) == control(
        7, 0, struct.pack(">II", 9, 1)
    )
    assert conn.send(spdy.WindowUpdate(1, 100)) == control(9, 0, struct.pack(">II", 1, 100))


def test_syn_reply_header_block_is_zlib_with_the_dictionary() -> None:
    raw = spdy.SpdyConnection().send(spdy.SynReply(1, (("x-a", "1"),)))
    flags_length, stream_id = struct.unpack_from(">II", raw, 4)
    assert raw[:4] == b"\x80\x03\x00\x02" and stream_id == 1
    assert flags_length & 0xFFFFFF == len(raw) - 8
    block = zlib.decompressobj(zdict=DICTIONARY).decompress(raw[12:])
    assert decode_block(block) == (("x-a", "1"),)


def test_each_direction_is_one_zlib_stream() -> None:
    sender, receiver = spdy.SpdyConnection(), spdy.SpdyConnection()
    wire = b"".join(
        sender.send(spdy.SynStream(i, (("streamtype", kind), ("port", "80"))))
        for i, kind in ((1, "error"), (3, "data"), (5, "data"))
    )
    frames = receiver.receive_data(wire)
    assert [f.headers for f in frames] == [
        (("streamtype", "error"), ("port", "80")),
        (("streamtype", "data"), ("port", "80")),
        (("streamtype", "data"), ("port", "80")),
    ]


def test_header_values_joined_with_nul() -> None:
    block = encode_block((("a", "1"), ("A", "2"), ("b", "")))
    assert block == (
        struct.pack(">I", 2)
        + struct.pack(">I", 1) + b"a" + struct.pack(">I", 3) + b"1\x002"
        + struct.pack(">I", 1) + b"b" + struct.pack(">I", 0)
    )  # fmt: skip
    assert decode_block(block) == (("a", "1"), ("a", "2"), ("b", ""))


def test_settings_and_unknown_control_frames() -> None:
    conn = spdy.SpdyConnection()
    settings = control(4, 0, struct.pack(">III", 1, 7 | 0x01 << 24, 65536))
    unknown = control(0x42, 0, b"whatever")
    assert conn.receive_data(settings + unknown) == [spdy.Settings(((1, 7, 65536),))]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(struct.pack(">HHI", 0x8002, 1, 0), id="spdy-2"),
        pytest.param(struct.pack(">II", 0, 1) + b"x", id="data-on-stream-0"),
        pytest.param(control(3, 0, b"\0\0\0\1"), id="short-rst"),
        pytest.param(control(3, 0, b"\0\0\0\1\0\0\0\0"), id="rst-status-0"),
        pytest.param(control(1, 0, struct.pack(">IIBB", 1, 0, 0, 0) + b"garbage"), id="bad-zlib"),
        pytest.param(control(6, 0, b"\0\0\0\1\0"), id="long-ping"),
    ],
)
def test_malformed_frames_are_protocol_errors(raw: bytes) -> None:
    conn = spdy.SpdyConnection()
    with pytest.raises(spdy.ProtocolError):
        conn.receive_data(raw)
    with pytest.raises(spdy.ProtocolError):
        conn.receive_data(b"")


def test_oversized_frames_are_refused_before_buffering() -> None:
    conn = spdy.SpdyConnection(max_frame=1024)
    with pytest.raises(spdy.ProtocolError):
        conn.receive_data(struct.pack(">II", 1, 4096))


def test_header_bombs_are_refused() -> None:
    compressor = HeaderCompressor()
    huge = compressor.compress((("x", "a" * 300_000),))
    with pytest.raises(HeaderBlockError):
        HeaderDecompressor().decompress(huge)
