"""Drive streaming sessions at the URLs a runtime returned, as crictl does.

An exec with a tty goes over WebSocket, as ``crictl --transport websocket``:
the client asks for ``v5.channel.k8s.io``, and each binary message starts
with a channel byte (1 stdout, 2 stderr, 3 the error channel's JSON status).
A port-forward goes over SPDY/3.1, crictl's default, with the project's
streaming client. What comes back is summarised for comparison, not checked.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
)

from pycrid.server.streaming.client import SpdyPortForward, UpgradeRefused, read_all

SUBPROTOCOL = "v5.channel.k8s.io"
CHANNELS = {1: "stdout", 2: "stderr", 3: "status"}


def exec_over_websocket(url: str, timeout: float = 20.0) -> dict[str, Any]:
    """Run the session to its end; returns the subprotocol, each stream's text and the status."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        return {"error": f"not a plain http URL: {parts.scheme}"}
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    ws = WSConnection(ConnectionType.CLIENT)
    seen: dict[str, Any] = {"subprotocol": None, "stdout": "", "stderr": "", "status": None}
    pending = b""
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout) as conn:
            conn.sendall(
                ws.send(Request(host=parts.netloc, target=target, subprotocols=[SUBPROTOCOL]))
            )
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        seen["subprotocol"] = event.subprotocol
                    elif isinstance(event, RejectConnection):
                        return {"rejected": event.status_code}
                    elif isinstance(event, Ping):
                        conn.sendall(ws.send(event.response()))
                    elif isinstance(event, BytesMessage):
                        pending += bytes(event.data)
                        if event.message_finished:
                            _take(seen, pending)
                            pending = b""
                    elif isinstance(event, CloseConnection):
                        conn.sendall(ws.send(event.response()))
                        return seen
    except OSError as e:
        seen["error"] = type(e).__name__
    return seen


def _take(seen: dict[str, Any], message: bytes) -> None:
    if not message:
        return
    name = CHANNELS.get(message[0])
    body = message[1:].decode(errors="replace")
    if name == "status":
        try:
            seen["status"] = json.loads(body).get("status")
        except ValueError:
            seen["status"] = body
    elif name is not None:
        seen[name] += body


def http_get_through_port_forward(url: str, port: int, timeout: float = 20.0) -> dict[str, Any]:
    """One HTTP GET to ``port`` in the pod through the port-forward session at ``url``.

    Returns the response's status line and whether the error stream stayed
    empty, or what failed.
    """

    async def session() -> dict[str, Any]:
        forward = await SpdyPortForward.open(url)
        try:
            data, error = await forward.connect(port)
            await data.write(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
            response = await read_all(data)
            data.reset()  # as client-go does once the pod's side has ended
            problem = await read_all(error)
        finally:
            await forward.close()
        status_line = response.split(b"\r\n", 1)[0].decode(errors="replace")
        return {"status_line": status_line, "error_stream": problem.decode(errors="replace")}

    try:
        return asyncio.run(asyncio.wait_for(session(), timeout))
    except UpgradeRefused as e:
        return {"rejected": e.status}
    except (OSError, TimeoutError) as e:
        return {"error": type(e).__name__}
