"""CRI v1alpha2 to v1, byte for byte, for kubelets older than 1.26 (run as a script).

``runtime.v1`` was copied from ``runtime.v1alpha2``: every message kubelet 1.20
sends or reads has the same names, field numbers and types in both. So each
unary call to ``/runtime.v1alpha2.<Service>/<Method>`` is forwarded unchanged to
``/runtime.v1.<Service>/<Method>``, and the answer's bytes or status go back.

    python relay.py LISTEN_SOCKET TARGET_SOCKET
"""

from __future__ import annotations

import os
import sys
from concurrent import futures
from typing import Any

import grpc

OLD = "/runtime.v1alpha2."
NEW = "/runtime.v1."
MAX_TIMEOUT = 86400.0


class Forward(grpc.GenericRpcHandler):
    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        if not method.startswith(OLD):
            return None
        call = self.channel.unary_unary(NEW + method[len(OLD) :])

        def handle(request: bytes, context: grpc.ServicerContext) -> Any:
            # A call without a deadline (kubelet's ImageFsInfo) shows a remaining
            # time of centuries, which must not become a timeout of its own.
            remaining = context.time_remaining()
            timeout = remaining if remaining is not None and remaining < MAX_TIMEOUT else None
            try:
                return call(request, timeout=timeout)
            except grpc.RpcError as e:
                context.abort(e.code(), e.details() or "")

        return grpc.unary_unary_rpc_method_handler(handle)


def main(listen: str, target: str) -> None:
    channel = grpc.insecure_channel(f"unix://{target}")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers([Forward(channel)])
    if os.path.exists(listen):
        os.unlink(listen)
    server.add_insecure_port(f"unix://{listen}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
