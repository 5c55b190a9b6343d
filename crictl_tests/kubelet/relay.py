"""A byte-forwarding relay from CRI ``runtime.v1alpha2`` to ``runtime.v1``.

kubelet 1.20 speaks only ``runtime.v1alpha2``. Every message it sends or reads
has the same name, field numbers and types in ``runtime.v1``, so a call to
``/runtime.v1alpha2.<Service>/<Method>`` is forwarded, request bytes unchanged,
to ``/runtime.v1.<Service>/<Method>`` on pycrid's socket, and the reply bytes
(or the status) come back unchanged. The relay knows no message and fixes
nothing: a defect kubelet finds must be fixed in pycrid.

Run as a script, so that it needs nothing but grpcio:

    python relay.py --listen unix:///tmp/relay.sock --target unix:///run/pycrid/pycrid.sock
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

OLD_PACKAGE = "/runtime.v1alpha2."
NEW_PACKAGE = "/runtime.v1."
# kubelet 1.20 accepts replies of up to 16 MiB (its maxMsgSize).
MAX_MESSAGE = 16 * 1024 * 1024
NO_DEADLINE = 86400.0
"""A remaining time above this (a day) means the caller set no deadline."""


def _identity(data: bytes) -> bytes:
    return data


class Relay(grpc.GenericRpcHandler):
    """Forwards every unary v1alpha2 call to the v1 method of the same name."""

    def __init__(self, target: grpc.aio.Channel) -> None:
        self.target = target

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if not method.startswith(OLD_PACKAGE):
            return None
        forward = self.target.unary_unary(
            NEW_PACKAGE + method.removeprefix(OLD_PACKAGE),
            request_serializer=_identity,
            response_deserializer=_identity,
        )

        async def relay(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            # A call without a deadline (kubelet's ImageFsInfo) shows centuries
            # remaining, which must not become a deadline of its own.
            remaining = context.time_remaining()
            timeout = remaining if remaining is not None and remaining < NO_DEADLINE else None
            try:
                return await forward(request, timeout=timeout)
            except grpc.aio.AioRpcError as error:
                await context.abort(error.code(), error.details() or "")
                raise  # not reached: abort raises

        return grpc.unary_unary_rpc_method_handler(
            relay, request_deserializer=_identity, response_serializer=_identity
        )


async def serve(listen: str, target: str) -> None:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]
    channel = grpc.aio.insecure_channel(target, options=options)
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((Relay(channel),))
    server.add_insecure_port(listen)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="unix:///path of the relay's socket")
    parser.add_argument("--target", required=True, help="unix:///path of pycrid's socket")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.target))


if __name__ == "__main__":
    main()
