"""The streaming HTTP server: tokens in, upgraded sessions out.

``get_exec``, ``get_attach`` and ``get_port_forward`` cache a CRI request
under a single-use token and return the absolute URL the client connects to.
A connection to ``/exec/<token>``, ``/attach/<token>`` or
``/portforward/<token>`` (GET or POST) is upgraded to SPDY/3.1 or to a
WebSocket, whichever the client asked for; the token is spent once the
handshake is accepted (``_claim``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from pycrid.adapters import errors
from pycrid.adapters.config import StreamingConfig
from pycrid.adapters.streaming import SessionIO, Streaming
from pycrid.api.cri import api_pb2 as cri
from pycrid.server import metrics
from pycrid.server.streaming import portforward, rcsession
from pycrid.server.streaming import remotecommand as rc
from pycrid.server.streaming.httpupgrade import BadRequest, HttpExchange, UpgradeRequest
from pycrid.server.streaming.session import SpdySession, SpdyStream
from pycrid.server.streaming.tokens import TokenCache
from pycrid.server.streaming.transport import ByteTransport, StreamTransport
from pycrid.server.streaming.websocket import (
    HandshakeError,
    TunnelTransport,
    WebSocket,
    handshake_headers,
    offered_subprotocols,
)

log = logging.getLogger("pycrid.streaming")

ROUTES = ("exec", "attach", "portforward")
SPDY_UPGRADE = "SPDY/3.1"
TUNNEL_PROTOCOL = portforward.TUNNEL_PREFIX + portforward.PROTOCOL

CachedRequest = cri.ExecRequest | cri.AttachRequest | cri.PortForwardRequest


class StartupFailure(Exception):
    """The server cannot listen (address in use, unreadable certificate)."""


@dataclass(frozen=True)
class _Pending:
    route: str
    request: Any  # the CRI request message


class StreamingServer:
    """See the module docstring; one per daemon, shared by whatever adapter runs."""

    def __init__(
        self,
        config: StreamingConfig,
        runtime: Streaming | None = None,
        tokens: TokenCache[_Pending] | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self._tokens: TokenCache[_Pending] = tokens if tokens is not None else TokenCache()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.base_url = ""

    # Lifecycle.

    async def start(self) -> None:
        context = self._tls_context()
        try:
            self._server = await asyncio.start_server(
                self._on_connection, self.config.address, self.config.port, ssl=context
            )
        except OSError as e:
            raise StartupFailure(
                f"cannot listen on {self.config.address}:{self.config.port}: {e.strerror}"
            ) from None
        port = self._server.sockets[0].getsockname()[1]
        scheme = "https" if context else "http"
        self.base_url = f"{scheme}://{_url_host(self.config.address)}:{port}"
        log.debug("streaming server listening on %s", self.base_url)

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.config.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise StartupFailure(f"cannot load the streaming TLS certificate: {e}") from None
        return context

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    # Sessions, prepared by the CRI calls.

    def _url(self, route: str, request: Any) -> str:
        if not self.base_url:
            raise errors.Unavailable("the streaming server is not running")
        token = self._tokens.insert(_Pending(route, request))
        return f"{self.base_url}/{route}/{token}"

    def get_exec(self, request: cri.ExecRequest) -> cri.ExecResponse:
        return cri.ExecResponse(url=self._url("exec", request))

    def get_attach(self, request: cri.AttachRequest) -> cri.AttachResponse:
        return cri.AttachResponse(url=self._url("attach", request))

    def get_port_forward(self, request: cri.PortForwardRequest) -> cri.PortForwardResponse:
        return cri.PortForwardResponse(url=self._url("portforward", request))

    # Connections.

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve_connection(reader, writer)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("streaming connection failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        http = HttpExchange(reader, writer)
        try:
            request = await http.read_request()
        except (BadRequest, TimeoutError) as e:
            await http.refuse(400, f"bad request: {e}")
            return
        route, _, token = request.path.partition("?")[0].lstrip("/").partition("/")
        if route not in ROUTES or not token or "/" in token:
            await http.refuse(404, "not found")
            return
        if request.method not in ("GET", "POST"):
            await http.refuse(405, "method not allowed", [("Allow", "GET, POST")])
            return
        pending = self._tokens.get(token)
        if pending is None or pending.route != route:
            await http.refuse(404, "session not found: unknown, used or expired token")
            return
        if self.runtime is None:
            await http.refuse(503, "no runtime serves streaming sessions")
            return
        with metrics.streaming_session(route):
            if request.is_websocket:
                await self._serve_websocket(http, request, token, pending)
            else:
                await self._serve_spdy(http, request, token, pending)

    async def _claim(self, http: HttpExchange, token: str) -> bool:
        """Spend the token as its session starts; False (refused) if another request did."""
        if self._tokens.consume(token) is None:
            await http.refuse(404, "session not found: unknown, used or expired token")
            return False
        return True

    async def _serve_spdy(
        self, http: HttpExchange, request: UpgradeRequest, token: str, pending: _Pending
    ) -> None:
        server_protocols = (
            (portforward.PROTOCOL,) if pending.route == "portforward" else rc.SPDY_PROTOCOLS
        )
        offered = rc.split_header_values(request.values("x-stream-protocol-version"))
        if not offered:
            await http.refuse(400, "unable to upgrade: X-Stream-Protocol-Version is missing")
            return
        protocol = rc.negotiate(offered, server_protocols)
        if protocol is None:
            await http.refuse(
                403,
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server accepts {list(server_protocols)}",
                [("X-Accepted-Stream-Protocol-Versions", p) for p in server_protocols],
            )
            return
        if not request.is_spdy:
            await http.refuse(400, "unable to upgrade: missing upgrade headers in request")
            return
        if not await self._claim(http, token):
            return
        trailing = await http.switch(
            [
                ("Connection", "Upgrade"),
                ("Upgrade", SPDY_UPGRADE),
                ("X-Stream-Protocol-Version", protocol),
            ]
        )
        transport = StreamTransport(http.reader, http.writer, trailing)
        await self._run_spdy(transport, pending, protocol)

    async def _run_spdy(self, transport: ByteTransport, pending: _Pending, protocol: str) -> None:
        forwarding = pending.route == "portforward"
        session = SpdySession(transport, accept=portforward.acceptable if forwarding else None)
        reader = asyncio.ensure_future(session.run())
        try:
            if forwarding:
                await portforward.serve(
                    session, self._forwarder(pending.request), tuple(pending.request.port)
                )
            else:
                await rcsession.serve_spdy(
                    session, protocol, _options(pending.request), self._runner(pending)
                )
                # Closing first could cut off output the client has not read yet.
                await session.wait_closed(rcsession.CLIENT_CLOSE_TIMEOUT)
        except TimeoutError as e:
            log.info("ending a streaming session: %s", e)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await transport.close()

    async def _serve_websocket(
        self, http: HttpExchange, request: UpgradeRequest, token: str, pending: _Pending
    ) -> None:
        wanted = TUNNEL_PROTOCOL if pending.route == "portforward" else rc.PROTOCOL_V5
        offered = offered_subprotocols(request)
        try:
            if wanted not in offered:
                raise HandshakeError(
                    403, f"unable to upgrade: no supported subprotocol in {offered} ({wanted})"
                )
            headers = handshake_headers(request, wanted)
        except HandshakeError as e:
            await http.refuse(e.status, str(e))
            return
        if not await self._claim(http, token):
            return
        trailing = await http.switch(headers)
        ws = WebSocket(http.reader, http.writer, trailing)
        if pending.route == "portforward":
            await self._run_spdy(TunnelTransport(ws), pending, portforward.PROTOCOL)
        else:
            await rcsession.serve_websocket(ws, _options(pending.request), self._runner(pending))

    # The runtime's side.

    def _runner(self, pending: _Pending) -> rcsession.Runner:
        runtime = self.runtime
        assert runtime is not None
        request = pending.request

        async def run(io: SessionIO) -> rc.Outcome:
            try:
                if pending.route == "exec":
                    code = await runtime.run_exec(request.container_id, list(request.cmd), io)
                    return rc.Outcome(exit_code=code)
                await runtime.run_attach(request.container_id, io)
                return rc.Outcome()
            except errors.CRIError as e:
                return rc.Outcome(error=str(e))
            except Exception as e:  # a bug or an unexpected backend failure
                log.exception("%s session in %s failed", pending.route, request.container_id[:13])
                return rc.Outcome(error=f"{type(e).__name__}: {e}")

        return run

    def _forwarder(self, request: cri.PortForwardRequest) -> portforward.Forwarder:
        runtime = self.runtime
        assert runtime is not None
        sandbox_id = request.pod_sandbox_id

        async def forward(port: int, data: SpdyStream) -> None:
            await runtime.run_port_forward(sandbox_id, port, data, data)

        return forward


def _options(request: cri.ExecRequest | cri.AttachRequest) -> rc.StreamOptions:
    return rc.StreamOptions(
        stdin=request.stdin, stdout=request.stdout, stderr=request.stderr, tty=request.tty
    )


def _url_host(address: str) -> str:
    """The host part of the URL for a bind address (wildcards become loopback)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return f"[{ip}]" if ip.version == 6 else str(ip)
