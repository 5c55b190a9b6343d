"""dockerd's streamed answers read on the event loop, against a socket that plays dockerd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.docker.httpstream import HttpStream, get_stream

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Start = Callable[[Serve], Awaitable[str]]


@pytest.fixture
async def dockerd(tmp_path: Path) -> AsyncIterator[Start]:
    servers: list[asyncio.Server] = []

    async def start(serve: Serve) -> str:
        path = tmp_path / f"docker{len(servers)}.sock"

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            try:
                await serve(reader, writer)
            finally:
                writer.close()

        servers.append(await asyncio.start_unix_server(handle, path=str(path)))
        return f"unix://{path}"

    yield start
    for server in servers:
        server.close()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"


async def read_all(stream: HttpStream) -> bytes:
    data = b""
    while piece := await stream.read():
        data += piece
    return data


async def test_a_chunked_body_arrives_whole_however_it_is_cut(dockerd: Start) -> None:
    body = b"".join(chunk(f"line {i}\n".encode()) for i in range(50)) + b"0\r\n\r\n"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = HEAD + body
        for start in range(0, len(data), 7):  # cut anywhere, even inside chunk sizes
            writer.write(data[start : start + 7])
            await writer.drain()

    endpoint = await dockerd(serve)
    stream = await get_stream(endpoint, "/v1.41/containers/c/logs", {"follow": 1}, call="x")
    assert await read_all(stream) == b"".join(f"line {i}\n".encode() for i in range(50))
    await stream.close()


async def test_a_cancelled_read_loses_nothing(dockerd: Start) -> None:
    go_on = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + chunk(b"first"))
        await writer.drain()
        await go_on.wait()
        writer.write(chunk(b"second") + b"0\r\n\r\n")
        await writer.drain()

    endpoint = await dockerd(serve)
    stream = await get_stream(endpoint, "/logs", {}, call="x")
    assert await stream.read() == b"first"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stream.read(), 0.1)
    go_on.set()
    assert await read_all(stream) == b"second"


async def test_an_error_answer_is_the_cri_error_of_its_status(dockerd: Start) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        message = b'{"message":"No such container: c"}'
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(message))
        writer.write(message)
        await writer.drain()

    endpoint = await dockerd(serve)
    with pytest.raises(errors.NotFound, match="No such container"):
        await get_stream(endpoint, "/logs", {}, call="stream_logs")


async def test_a_stream_cut_mid_body_is_an_oserror(dockerd: Start) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + chunk(b"partial")[:-4])
        await writer.drain()

    endpoint = await dockerd(serve)
    stream = await get_stream(endpoint, "/logs", {}, call="x")
    with pytest.raises(OSError, match="broke off"):
        await read_all(stream)


async def test_abort_ends_a_waiting_read(dockerd: Start) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD)
        await writer.drain()
        await asyncio.sleep(30)

    endpoint = await dockerd(serve)
    stream = await get_stream(endpoint, "/logs", {}, call="x")
    reading = asyncio.ensure_future(stream.read())
    await asyncio.sleep(0.05)
    stream.abort()
    assert await asyncio.wait_for(reading, 5) == b""


async def test_no_dockerd_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(errors.Unavailable):
        await get_stream(f"unix://{tmp_path}/none.sock", "/logs", {}, call="x")
