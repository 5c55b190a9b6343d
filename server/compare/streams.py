"""Drive an exec session at the URL a runtime returned, as ``crictl --transport websocket`` does.

The client asks for ``v5.channel.k8s.io``: each binary message starts with a
channel byte (1 stdout, 2 stderr, 3 the error channel's JSON status). What
comes back is summarised for comparison, not checked.
"""

from __future__ import annotations

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
