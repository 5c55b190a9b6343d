"""The pycrid daemon: one gRPC server on a Unix socket, one adapter behind it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pycrid.adapters.base import Adapter, StartupError
from pycrid.adapters.config import Config, LimitsConfig
from pycrid.api.cri import api_pb2, api_pb2_grpc
from pycrid.server import sdnotify, statemetrics
from pycrid.server.instancelock import InstanceLock
from pycrid.server.instrument import add_instrumented_servicer
from pycrid.server.listeners import listener_for
from pycrid.server.metrics import PULL_METHOD, PullSizes
from pycrid.server.metricsendpoint import MetricsEndpoint, MetricsFailure
from pycrid.server.servicers.image import ImageServicer
from pycrid.server.servicers.runtime import RuntimeServicer
from pycrid.server.streaming.server import StartupFailure, StreamingServer

log = logging.getLogger("pycrid")

CRI_SERVICES = ("runtime.v1.RuntimeService", "runtime.v1.ImageService")
MAX_MESSAGE_BYTES = 33 * 1024 * 1024  # ExecSync may carry 16 MiB on each of two streams
"""Largest answer; the largest request is ``limits.max_request_bytes``."""


def create_adapter(config: Config) -> Adapter:
    """The adapter named by the configuration."""
    if config.adapter == "docker":
        from pycrid.adapters.docker.adapter import DockerAdapter

        return DockerAdapter(config)
    if config.adapter == "oci":
        from pycrid.adapters.oci.adapter import OciAdapter

        return OciAdapter(config)
    raise StartupError(f"unknown adapter {config.adapter!r}")


def build_server(
    adapter: Adapter, streaming: StreamingServer | None = None, limits: LimitsConfig | None = None
) -> tuple[grpc.aio.Server, health.HealthServicer]:
    limits = limits or LimitsConfig()
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", limits.max_request_bytes),
        ],
    )
    add_instrumented_servicer(
        server,
        api_pb2_grpc.add_RuntimeServiceServicer_to_server,
        RuntimeServicer(adapter, streaming, limits),
    )
    add_instrumented_servicer(
        server,
        api_pb2_grpc.add_ImageServiceServicer_to_server,
        ImageServicer(adapter),
        after={PULL_METHOD: PullSizes(adapter).after_pull},
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        *(api_pb2.DESCRIPTOR.services_by_name[s.split(".")[-1]].full_name for s in CRI_SERVICES),
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    return server, health_servicer


async def _set_health(health_servicer: health.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *CRI_SERVICES):
        await health_servicer.set(name, status)


@contextlib.contextmanager
def children_watched_with_pidfds() -> Iterator[None]:
    """Learn of child exits from pidfds on the event loop, not a thread per child.

    Every pod start runs conmon, runc and the CNI plugins; Python 3.11's
    default watcher starts a thread to wait for each of them. 3.12 and later
    use pidfds by default (and deprecate choosing a watcher). The previous
    watcher is put back at the end (tests serve in their own event loops).
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        yield
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        yield  # a kernel before 5.3
        return
    previous = asyncio.get_child_watcher()
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    try:
        yield
    finally:
        asyncio.set_child_watcher(previous)
        watcher.close()


async def serve(config: Config, adapter: Adapter | None = None) -> None:
    """Run until SIGTERM or SIGINT; raise StartupError when serving cannot begin."""
    lock = InstanceLock()
    try:
        lock.acquire(Path(config.state_dir), "state directory")
        lock.acquire(Path(config.run_dir), "run directory")
        with children_watched_with_pidfds():
            await _serve_locked(config, adapter)
    finally:
        lock.release()


async def _serve_locked(config: Config, adapter: Adapter | None) -> None:
    adapter = adapter or create_adapter(config)
    listener = listener_for(config)
    listener.prepare()
    # The streaming server starts first: a bad address fails before the backend is touched.
    streaming = StreamingServer(config.streaming, runtime=adapter.streaming)
    server, health_servicer = build_server(adapter, streaming, config.limits)
    endpoint = _metrics_endpoint(config, adapter)
    adapter_started = False
    # Signals are caught from here on: one that comes while the daemon starts stops it
    # as soon as it serves, instead of killing it half started.
    stop = _catch_stop_signals()
    try:
        try:
            await streaming.start()
        except StartupFailure as e:
            raise StartupError(str(e)) from None
        if endpoint is not None:
            try:
                await endpoint.start()
            except MetricsFailure as e:
                raise StartupError(str(e)) from None
        await adapter.start()
        adapter_started = True
        try:
            server.add_insecure_port(listener.address)
        except RuntimeError as e:
            raise StartupError(f"cannot listen on {config.listen}: {e}") from None
        await server.start()
        await listener.serving()
        await _set_health(health_servicer, True)
        log.info(
            "serving CRI on %s with the %s adapter (pycrid %s), streaming on %s",
            config.listen,
            adapter.name,
            adapter.runtime_version,
            streaming.base_url,
        )
        sdnotify.ready(f"serving CRI on {config.listen} with the {adapter.name} adapter")
        await stop.wait()
        sdnotify.stopping()
        log.info("shutting down: finishing in-flight calls (at most %.0fs)", config.shutdown_grace)
        listener.stop_accepting()
        await _set_health(health_servicer, False)
        await server.stop(config.shutdown_grace)
    finally:
        _release_stop_signals()
        await server.stop(None)
        await listener.close()
        await streaming.stop()
        if endpoint is not None:
            await endpoint.stop()
        if adapter_started:  # an adapter whose start failed has released what it took
            await adapter.close()
    log.info("stopped")


def _metrics_endpoint(config: Config, adapter: Adapter) -> MetricsEndpoint | None:
    """The Prometheus endpoint, when ``[metrics] address`` asks for one."""
    if not config.metrics.address:
        return None

    async def before_scrape() -> None:
        await statemetrics.refresh(adapter)

    return MetricsEndpoint(config.metrics.address, before_scrape)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _catch_stop_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, handled on the running loop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    return stop


def _release_stop_signals() -> None:
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.remove_signal_handler(signum)
