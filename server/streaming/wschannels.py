"""The channel framing of ``v5.channel.k8s.io`` inside WebSocket binary messages, sans-IO.

Every message starts with a channel byte (0 stdin, 1 stdout, 2 stderr,
3 error, 4 resize); a message ``[255, n]`` says the sender has closed
channel n. Messages may arrive in fragments, so the decoder is fed each
fragment with a flag saying whether it ends the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from pycrid.server.streaming.remotecommand import CHANNEL_CLOSE


@dataclass(frozen=True)
class ChannelData:
    channel: int
    data: bytes


@dataclass(frozen=True)
class ChannelClosed:
    channel: int


ChannelEvent = ChannelData | ChannelClosed


class ChannelError(Exception):
    """A message that breaks the channel framing."""


def encode(channel: int, data: bytes) -> bytes:
    return bytes([channel]) + data


def encode_close(channel: int) -> bytes:
    return bytes([CHANNEL_CLOSE, channel])


class ChannelDecoder:
    def __init__(self) -> None:
        self._channel: int | None = None  # of the message in progress
        self._close_body = b""

    def feed(self, fragment: bytes, message_finished: bool) -> list[ChannelEvent]:
        events: list[ChannelEvent] = []
        if self._channel is None and fragment:
            self._channel, fragment = fragment[0], fragment[1:]
        if self._channel == CHANNEL_CLOSE:
            self._close_body += fragment
            if len(self._close_body) > 1:
                raise ChannelError("close signal longer than one byte")
        elif self._channel is not None and fragment:
            events.append(ChannelData(self._channel, bytes(fragment)))
        if message_finished:
            if self._channel is None:
                raise ChannelError("empty message has no channel")
            if self._channel == CHANNEL_CLOSE:
                if len(self._close_body) != 1:
                    raise ChannelError("close signal without a channel")
                events.append(ChannelClosed(self._close_body[0]))
            self._channel = None
            self._close_body = b""
        return events
