"""A stand-in dockerd on a Unix socket, for testing the real client's HTTP side.

Each route answers a status and a JSON document, a chunked stream of JSON
events, or nothing at all (``HANG``): the request then waits, its connection
open, until the client gives up and closes it (counted in ``abandoned``) or
the server stops.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

API_VERSION = "1.41"
VERSION = {"ApiVersion": API_VERSION, "Version": "20.10.fake", "MinAPIVersion": "1.12"}


@dataclass(frozen=True)
class Answer:
    status: int
    body: object


@dataclass(frozen=True)
class Stream:
    """A chunked answer: ``events`` one by one, ``interval`` seconds apart, then more forever."""

    events: list[dict[str, object]]
    interval: float = 0.05
    forever: bool = False


@dataclass(frozen=True)
class Upgrade:
    """``101 UPGRADED``, then ``data`` after ``delay`` seconds of silence, then the end."""

    data: bytes
    delay: float = 0.0


HANG = object()


class FakeDockerd:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.routes: dict[tuple[str, str], object] = {
            ("GET", "/version"): Answer(200, VERSION),
            ("GET", f"/v{API_VERSION}/_ping"): Answer(200, "OK"),
        }
        self.requests: list[tuple[str, str]] = []
        self.abandoned = 0
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(64)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"unix://{self.path}"

    def route(self, method: str, path: str, answer: object) -> None:
        """``path`` without the version prefix, e.g. ``/containers/x/json``."""
        self.routes[(method, f"/v{API_VERSION}{path}")] = answer

    def start(self) -> FakeDockerd:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go away: no more connections, and the open ones end."""
        self._stopping.set()
        self._listener.close()
        self.path.unlink(missing_ok=True)
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ValueError):
            reader = conn.makefile("rb")
            while not self._stopping.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                method, target = request
                path = target.split("?", 1)[0]
                with self._lock:
                    self.requests.append((method, path))
                answer = self.routes.get((method, path), Answer(404, {"message": "page not found"}))
                if answer is HANG:
                    self._hold(conn)
                    return
                if isinstance(answer, Stream):
                    self._stream(conn, answer)
                    return
                if isinstance(answer, Upgrade):
                    head = "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                    conn.sendall(head.encode())
                    time.sleep(answer.delay)
                    conn.sendall(answer.data)
                    return
                assert isinstance(answer, Answer)
                _send(conn, answer)

    def _hold(self, conn: socket.socket) -> None:
        """Never answer; note when the client closes the connection."""
        while not self._stopping.is_set():
            readable, _, _ = select.select([conn], [], [], 0.02)
            if readable and not conn.recv(1024):
                with self._lock:
                    self.abandoned += 1
                return

    def _stream(self, conn: socket.socket, answer: Stream) -> None:
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        conn.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
        try:
            for event in _events(answer):
                if self._stopping.is_set():
                    return
                data = json.dumps(event).encode() + b"\r\n"
                conn.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                time.sleep(answer.interval)
            conn.sendall(b"0\r\n\r\n")
        except OSError:
            with self._lock:
                self.abandoned += 1


def _events(answer: Stream) -> Iterator[dict[str, object]]:
    yield from answer.events
    while answer.forever:
        yield {"status": "Downloading", "progressDetail": {}}


def _read_request(reader: BinaryIO) -> tuple[str, str] | None:
    line = reader.readline()
    if not line:
        return None
    method, target, _ = line.decode().split(" ", 2)
    length = 0
    while (header := reader.readline().decode()) not in ("\r\n", "\n", ""):
        name, _, value = header.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        reader.read(length)
    return method, target


def _send(conn: socket.socket, answer: Answer) -> None:
    body = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
    data = body.encode()
    reason = {200: "OK", 201: "Created", 204: "No Content"}.get(answer.status, "Error")
    head = (
        f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    conn.sendall(head.encode() + data)
