"""The streaming server: exec, attach and port-forward sessions behind URLs.

Exec, Attach and PortForward calls answer with a URL on this server; the
client (crictl, critest, kubelet's proxy) then upgrades an HTTP request on
that URL to SPDY/3.1 or WebSocket. Wire formats live in sans-IO modules
(``spdy``, ``spdy_headers``, ``remotecommand``, ``wschannels``); the asyncio
modules only move bytes between them, the client and a ``Streaming``
that an adapter implements (``backend``).
"""
