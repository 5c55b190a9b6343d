"""The Prometheus endpoint: ``GET /metrics`` on ``[metrics] address``, served by aiohttp.

It runs on the daemon's event loop, so that what is counted at scrape time
(pods and containers, through the adapter) is asked for the same way a CRI
call asks; it starts before the CRI socket serves and stops with the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from pycrid.adapters.config import split_host_port

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("pycrid.metrics")

BeforeScrape = Callable[[], Awaitable[None]]


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class MetricsFailure(Exception):
    """The endpoint cannot listen where it was told to."""


class MetricsEndpoint:
    def __init__(
        self,
        address: str,
        before_scrape: BeforeScrape | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.address = address
        self.before_scrape = before_scrape
        self.registry = registry
        self.bound = ""
        """``host:port`` actually listened on, once started."""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        # aiohttp is about 9 MiB of a daemon's memory: only one that serves
        # metrics imports it.
        from aiohttp import web

        host, port = split_host_port(self.address)
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as e:
            await runner.cleanup()
            raise MetricsFailure(f"cannot serve metrics on {self.address}: {e.strerror}") from None
        self._runner = runner
        self.bound = join_host_port(*runner.addresses[0][:2])
        log.info("serving Prometheus metrics on http://%s/metrics", self.bound)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        if self.before_scrape is not None:
            await self.before_scrape()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        response = web.Response(body=encoder(self.registry))
        response.headers["Content-Type"] = content_type
        return response
