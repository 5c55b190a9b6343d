"""The streaming server with TLS from the configuration."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from pycrid.adapters.config import StreamingConfig
from pycrid.api.cri import api_pb2 as cri
from pycrid.server.streaming.client import SpdyExec
from pycrid.server.streaming.server import StartupFailure, StreamingServer

from .test_streaming_server import FakeRuntime


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_sessions(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    config = StreamingConfig(port=0, tls_cert=str(cert), tls_key=str(key))
    server = StreamingServer(config, FakeRuntime())
    await server.start()
    try:
        request = cri.ExecRequest(container_id="c1", cmd=["echo", "secret"], stdout=True)
        url = server.get_exec(request).url
        assert url.startswith("https://127.0.0.1:")
        client_tls = ssl.create_default_context(cafile=str(cert))
        session = await SpdyExec.open(url, stderr=False, tls=client_tls)
        assert (await session.wait()).stdout == b"secret"
    finally:
        await server.stop()


async def test_unreadable_certificate_fails_at_start(tmp_path: Path) -> None:
    config = StreamingConfig(
        port=0, tls_cert=str(tmp_path / "no.pem"), tls_key=str(tmp_path / "no.key")
    )
    with pytest.raises(StartupFailure, match="certificate"):
        await StreamingServer(config).start()
