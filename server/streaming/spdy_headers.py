"""SPDY/3 header blocks: name/value pairs, zlib-compressed with a fixed dictionary.

Each direction of a connection is one continuous zlib stream: every header
block is compressed with a sync flush and decompressed in order, so blocks
must be put on the wire in the order they were compressed.
"""

from __future__ import annotations

import struct
import zlib

_WORDS = (
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
)

_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)

DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()
"""The header compression dictionary of SPDY/3 (its specification, section 2.6.10.1)."""

MAX_HEADER_BLOCK = 256 * 1024
"""Largest decompressed header block accepted; real clients send a few dozen bytes."""

Headers = tuple[tuple[str, str], ...]


class HeaderBlockError(Exception):
    """A header block that cannot be decompressed or parsed."""


def encode_block(headers: Headers) -> bytes:
    """The uncompressed block: a count, then length-prefixed names and values.

    Names are lower-cased, as SPDY/3 requires; repeated names are joined with
    NUL into one value.
    """
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.lower(), []).append(value)
    out = [struct.pack(">I", len(merged))]
    for name, values in merged.items():
        raw_name = name.encode()
        raw_value = "\x00".join(values).encode()
        out.append(struct.pack(">I", len(raw_name)) + raw_name)
        out.append(struct.pack(">I", len(raw_value)) + raw_value)
    return b"".join(out)


def decode_block(block: bytes) -> Headers:
    """Parse an uncompressed block; NUL-separated values become repeated pairs."""
    view = memoryview(block)
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(view):
            raise HeaderBlockError("header block is truncated")
        chunk = bytes(view[pos : pos + n])
        pos += n
        return chunk

    (count,) = struct.unpack(">I", take(4))
    pairs: list[tuple[str, str]] = []
    for _ in range(count):
        (name_len,) = struct.unpack(">I", take(4))
        name = take(name_len).decode("utf-8", "replace").lower()
        (value_len,) = struct.unpack(">I", take(4))
        value = take(value_len).decode("utf-8", "replace")
        if not name:
            raise HeaderBlockError("header block has an empty name")
        pairs.extend((name, v) for v in value.split("\x00"))
    if pos != len(view):
        raise HeaderBlockError("header block has trailing bytes")
    return tuple(pairs)


class HeaderCompressor:
    """One direction's zlib stream for header blocks."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, zdict=DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        block = encode_block(headers)
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The peer's zlib stream for header blocks, fed one frame's block at a time."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, zdict=DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._z.decompress(data, MAX_HEADER_BLOCK + 1)
        except zlib.error as e:
            raise HeaderBlockError(f"header block does not decompress: {e}") from None
        if len(block) > MAX_HEADER_BLOCK or self._z.unconsumed_tail:
            raise HeaderBlockError("header block is too large")
        return decode_block(block)


def header(headers: Headers, name: str) -> str:
    """The first value of ``name`` (lower-case), or ""."""
    for key, value in headers:
        if key == name:
            return value
    return ""
