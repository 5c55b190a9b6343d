"""Exec, attach and port-forward sessions on the oci runtime.

Exec runs ``runc exec`` with the container's own process settings (user,
capabilities, environment) and the client's command; attach connects to
conmon's attach socket; port-forward dials into the pod's network namespace
through the pause process.
"""

from __future__ import annotations

from collections.abc import Sequence

from pycrid.adapters.errors import FailedPrecondition
from pycrid.adapters.node import netnsdial
from pycrid.adapters.oci.runtime import attach as conmon_attach
from pycrid.adapters.oci.runtime import podstate
from pycrid.adapters.oci.runtime.containers import OciContainers
from pycrid.adapters.oci.runtime.execsession import run_exec_session
from pycrid.adapters.streaming import ForwardOutput, InputStream, SessionIO
from pycrid.api.cri import api_pb2 as cri


class OciStreaming:
    def __init__(self, containers: OciContainers) -> None:
        self.containers = containers
        self.ctx = containers.ctx

    # Before a session.

    async def exec(self, request: cri.ExecRequest) -> None:
        await self.containers.running(request.container_id)

    async def attach(self, request: cri.AttachRequest) -> None:
        await self.containers.running(request.container_id)

    async def port_forward(self, request: cri.PortForwardRequest) -> None:
        self._pause_pid(request.pod_sandbox_id)

    def _pause_pid(self, sandbox_id: str) -> int:
        sandbox = self.ctx.store.sandbox(sandbox_id)
        podstate.refresh(self.ctx, sandbox)
        if not sandbox.ready or sandbox.pid <= 0:
            raise FailedPrecondition(f"pod sandbox {sandbox_id[:13]} is not ready")
        return sandbox.pid

    # The sessions.

    async def run_exec(self, container_id: str, cmd: Sequence[str], io: SessionIO) -> int:
        record = await self.containers.running(container_id)
        process = self.containers.exec_process(record, list(cmd), io.tty)
        return await run_exec_session(self.ctx.runc, record.id, process, io)

    async def run_attach(self, container_id: str, io: SessionIO) -> None:
        record = await self.containers.running(container_id)
        await conmon_attach.attach(
            self.ctx.bundle(record.id), io, leave_stdin_open=not record.config.stdin_once
        )

    async def run_port_forward(
        self, sandbox_id: str, port: int, reader: InputStream, writer: ForwardOutput
    ) -> None:
        await netnsdial.forward(self._pause_pid(sandbox_id), port, reader, writer)
