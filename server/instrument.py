"""The one place where adapter errors become gRPC status codes.

Every CRI handler of the daemon is wrapped here, once, when it is registered:
the call is timed, counted in the Prometheus metrics (server/metrics.py),
logged (debug for success, warning for failure) and the exceptions of
``pycrid.adapters.errors`` are turned into status codes. The call's deadline is
published through ``pycrid.adapters.deadline`` so that backend clients can pass
it down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc

from pycrid.adapters import errors
from pycrid.adapters.deadline import set_call_deadline
from pycrid.server import metrics

log = logging.getLogger("pycrid.calls")


STATUS_CODES: dict[type[errors.CRIError], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    errors.Internal: grpc.StatusCode.INTERNAL,
}


MAX_DETAIL = 1024
"""Longest error message sent to a client: gRPC refuses status metadata over 8 KiB."""


def bounded(detail: str) -> str:
    """``detail`` cut to MAX_DETAIL characters."""
    return detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 3] + "..."


def status_code(error: BaseException) -> grpc.StatusCode:
    """The gRPC code that answers ``error``."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.INTERNAL


AfterCall = Callable[[Any], Awaitable[None]]
"""Called with a successful call's response, after the call was timed and before it is
answered: a figure that needs the response (PullImage's bytes, see daemon.py)."""


class _Outcome:
    """Logs and counts one finished call; counts it in flight until then."""

    __slots__ = ("finished", "in_flight", "method", "started")

    def __init__(self, method: str, in_flight: Any) -> None:
        self.method = method
        self.in_flight = in_flight
        self.started = time.monotonic()
        self.finished = False
        in_flight.inc()

    def record(self, code: grpc.StatusCode) -> float:
        """Count the call once, as answered with ``code``; its seconds."""
        elapsed = time.monotonic() - self.started
        if not self.finished:
            self.finished = True
            self.in_flight.dec()
            metrics.observe_call(self.method, code.name, elapsed)
        return elapsed

    def abandoned(self, context: grpc.aio.ServicerContext) -> None:
        """The call ended without our answer: aborted by its handler, or cancelled."""
        code = getattr(context, "code", lambda: None)()
        self.record(code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.CANCELLED)

    def done(self, code: grpc.StatusCode, detail: str = "") -> None:
        elapsed_ms = self.record(code) * 1000
        if code == grpc.StatusCode.OK:
            log.debug("%s %.1fms %s", self.method, elapsed_ms, code.name)
        elif code == grpc.StatusCode.UNIMPLEMENTED:
            log.debug("%s %.1fms %s: %s", self.method, elapsed_ms, code.name, detail)
        else:
            log.warning("%s %.1fms %s: %s", self.method, elapsed_ms, code.name, detail)


def _enter(context: grpc.aio.ServicerContext) -> None:
    set_call_deadline(context.time_remaining())


async def _fail(outcome: _Outcome, context: grpc.aio.ServicerContext, error: Exception) -> None:
    code = status_code(error)
    detail = bounded(str(error) or type(error).__name__)
    if code == grpc.StatusCode.INTERNAL and not isinstance(error, errors.CRIError):
        log.exception("%s failed unexpectedly", outcome.method)
    outcome.done(code, detail)
    await context.abort(code, detail)


AFTER_CALL_TIMEOUT = 5.0


async def _after_call(method: str, after: AfterCall, response: Any) -> None:
    try:
        await asyncio.wait_for(after(response), AFTER_CALL_TIMEOUT)
    except Exception as error:  # a figure missed is no reason to fail the call
        log.debug("%s: not counted: %s", method, error)


def wrap_unary(
    method: str,
    handler: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
    after: AfterCall | None = None,
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    in_flight = metrics.in_flight(method)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        outcome = _Outcome(method, in_flight)
        _enter(context)
        try:
            response = await handler(request, context)
        except grpc.aio.AbortError:
            outcome.abandoned(context)
            raise
        except asyncio.CancelledError:
            outcome.abandoned(context)
            raise
        except Exception as error:  # every failure is answered, none kills the daemon
            await _fail(outcome, context, error)
        outcome.done(grpc.StatusCode.OK)
        if after is not None:
            await _after_call(method, after, response)
        return response

    return unary


def wrap_stream(
    method: str, handler: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]
) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
    in_flight = metrics.in_flight(method)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        outcome = _Outcome(method, in_flight)
        _enter(context)
        try:
            async for item in handler(request, context):
                yield item
        except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit):
            outcome.abandoned(context)
            raise
        except Exception as error:
            await _fail(outcome, context, error)
        outcome.done(grpc.StatusCode.OK)

    return stream


def wrap_handler(
    method: str, handler: grpc.RpcMethodHandler, after: AfterCall | None = None
) -> grpc.RpcMethodHandler:
    """``handler`` timed, counted, logged and with its errors answered as status codes."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary(method, handler.unary_unary, after),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream(method, handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


class _Registrations:
    """Stands in for a server to collect what a generated ``add_*_to_server`` registers."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """The generated code registers each service twice; the method table is enough."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.services[service] = handlers


def add_instrumented_servicer(
    server: grpc.aio.Server,
    add_to_server: Callable[[Any, Any], None],
    servicer: Any,
    after: Mapping[str, AfterCall] | None = None,
) -> None:
    """Register ``servicer`` as ``add_to_server`` would, with every handler wrapped.

    ``after`` maps a method's full name to what runs after each success of it.

    The handlers are wrapped once here rather than by a server interceptor: an
    interceptor runs Python code to look up the handler on every call, and
    kubelet makes the same few calls every second on every node.
    """
    registrations = _Registrations()
    add_to_server(servicer, registrations)
    for service, handlers in registrations.services.items():
        wrapped = {
            name: wrap_handler(name, handler, (after or {}).get(name))
            for name, handler in handlers.items()
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        server.add_registered_method_handlers(service, wrapped)
