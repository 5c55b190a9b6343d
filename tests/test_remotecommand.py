"""The remotecommand protocol's rules, without I/O."""

from __future__ import annotations

import json

import pytest

from pycrid.server.streaming import remotecommand as rc
from pycrid.server.streaming import wschannels


def test_negotiation_takes_the_clients_first_supported_protocol() -> None:
    offered = rc.split_header_values(["v5.channel.k8s.io", "v4.channel.k8s.io, v3.channel.k8s.io"])
    assert offered == ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io"]
    assert rc.negotiate(offered, rc.SPDY_PROTOCOLS) == rc.PROTOCOL_V4
    assert rc.negotiate(["channel.k8s.io"], rc.SPDY_PROTOCOLS) == rc.PROTOCOL_V1
    assert rc.negotiate(["v5.channel.k8s.io"], rc.SPDY_PROTOCOLS) is None


@pytest.mark.parametrize(
    ("flags", "protocol", "expected"),
    [
        ((False, True, True, False), rc.PROTOCOL_V4, {"error", "stdout", "stderr"}),
        ((True, True, False, True), rc.PROTOCOL_V4, {"error", "stdin", "stdout", "resize"}),
        ((True, True, False, True), rc.PROTOCOL_V2, {"error", "stdin", "stdout"}),
        ((True, True, True, True), rc.PROTOCOL_V3, {"error", "stdin", "stdout", "resize"}),
    ],
)
def test_expected_streams(flags: tuple[bool, ...], protocol: str, expected: set[str]) -> None:
    assert rc.StreamOptions(*flags).expected(protocol) == expected


def test_v4_status_success_and_exit_code() -> None:
    assert json.loads(rc.status_v4(rc.Outcome())) == {"metadata": {}, "status": "Success"}
    failed = json.loads(rc.status_v4(rc.Outcome(exit_code=42)))
    assert failed["status"] == "Failure" and failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "42"}]
    error = json.loads(rc.status_v4(rc.Outcome(error="no such container")))
    assert error["reason"] == "InternalError" and error["code"] == 500
    assert error["message"] == "Internal error occurred: no such container"


def test_text_status_of_older_protocols() -> None:
    assert rc.encode_status(rc.PROTOCOL_V3, rc.Outcome()) == b""
    assert b"exit status 2" in rc.encode_status(rc.PROTOCOL_V2, rc.Outcome(exit_code=2))
    assert rc.encode_status(rc.PROTOCOL_V5, rc.Outcome()).startswith(b"{")


def test_resize_decoder_handles_split_and_joined_messages() -> None:
    decoder = rc.ResizeDecoder()
    assert decoder.feed(b'{"Width":80,') == []
    assert decoder.feed(b'"Height":24}\n{"Width":100,"Height":40}\n') == [
        rc.TerminalSize(80, 24),
        rc.TerminalSize(100, 40),
    ]
    assert decoder.feed(b'{"Width":1,"Height":2}') == [rc.TerminalSize(1, 2)]


@pytest.mark.parametrize("bad", [b"hello", b'{"Width":-1,"Height":2}', b"[1,2]"])
def test_resize_decoder_refuses_garbage(bad: bytes) -> None:
    with pytest.raises(rc.ResizeError):
        rc.ResizeDecoder().feed(bad)


def test_websocket_channels_in_fragments() -> None:
    decoder = wschannels.ChannelDecoder()
    assert decoder.feed(b"\x00ab", False) == [wschannels.ChannelData(0, b"ab")]
    assert decoder.feed(b"cd", True) == [wschannels.ChannelData(0, b"cd")]
    assert decoder.feed(b"\xff", False) == []
    assert decoder.feed(b"\x00", True) == [wschannels.ChannelClosed(0)]
    assert decoder.feed(b"\x04{}", True) == [wschannels.ChannelData(4, b"{}")]
    assert wschannels.encode(1, b"x") == b"\x01x"
    assert wschannels.encode_close(0) == b"\xff\x00"


@pytest.mark.parametrize("fragments", [[(b"", True)], [(b"\xff", True)], [(b"\xff\x00\x01", True)]])
def test_websocket_channel_errors(fragments: list[tuple[bytes, bool]]) -> None:
    decoder = wschannels.ChannelDecoder()
    with pytest.raises(wschannels.ChannelError):
        for data, last in fragments:
            decoder.feed(data, last)
