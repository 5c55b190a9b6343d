"""Running under systemd: readiness notices, socket activation, the unit files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from pycrid.api.cri import api_pb2 as cri
from pycrid.api.cri import api_pb2_grpc
from pycrid.server import sdnotify
from pycrid.tools.installunits import install_units, render_units, unit_text

HERE = Path(__file__).parent
SERVE_FAKE = HERE / "serve_fake.py"


def _write_config(tmp_path: Path, listen: str) -> Path:
    config = tmp_path / "c.toml"
    config.write_text(
        f'listen = "{listen}"\nstate_dir = "{tmp_path}/state"\nrun_dir = "{tmp_path}/run"\n'
    )
    return config


def _version(endpoint: str, timeout: float = 10) -> cri.VersionResponse:
    with grpc.insecure_channel(endpoint) as channel:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        return stub.Version(cri.VersionRequest(), timeout=timeout, wait_for_ready=True)


def _receive(sock: socket.socket, wanted: str, timeout: float = 20) -> str:
    sock.settimeout(timeout)
    while True:
        message = sock.recv(4096).decode()
        if wanted in message.splitlines():
            return message


def test_notify_reaches_an_abstract_socket(monkeypatch):
    name = f"pycrid-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready("serving")
        message = _receive(listener, "READY=1", timeout=2)
        assert "STATUS=serving" in message


def test_notify_without_systemd_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.ready("serving")


def test_ready_once_serving_and_stopping_on_sigterm(tmp_path):
    notify_path = tmp_path / "notify.sock"
    sock = tmp_path / "pycrid.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
        process = subprocess.Popen(
            [sys.executable, str(SERVE_FAKE), str(_write_config(tmp_path, f"unix://{sock}"))],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            message = _receive(notify, "READY=1")
            # READY=1 means the socket already serves: no retry needed.
            with grpc.insecure_channel(f"unix://{sock}") as channel:
                stub = api_pb2_grpc.RuntimeServiceStub(channel)
                assert stub.Version(cri.VersionRequest(), timeout=5).runtime_name == "pycrid"
            assert f"MAINPID={process.pid}" in message
            process.send_signal(signal.SIGTERM)
            _receive(notify, "STOPPING=1")
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()


@pytest.fixture
def socket_activate() -> str:
    path = shutil.which("systemd-socket-activate")
    if path is None:
        pytest.skip("systemd-socket-activate is not installed (Debian package systemd)")
    return path


def _activated(activate: str, sock: Path, config: Path, *extra: str) -> subprocess.Popen[bytes]:
    # systemd-socket-activate gives the child only the variables named with -E.
    env_flags = [
        f"-E{name}" for name in ("PATH", "PYTHONPATH", "VIRTUAL_ENV") if name in os.environ
    ]
    return subprocess.Popen(
        [
            activate,
            "-l",
            str(sock),
            *extra,
            *env_flags,
            sys.executable,
            str(SERVE_FAKE),
            str(config),
        ],
        stderr=subprocess.PIPE,
    )


def _wait_for_path(path: Path, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        assert process.poll() is None
        if path.exists():
            return
        time.sleep(0.05)
    pytest.fail(f"{path} never appeared")


@pytest.mark.parametrize(("listen", "fdname"), [("fd://", ""), ("fd://cri", "cri")])
def test_socket_activation_serves_on_the_passed_socket(tmp_path, socket_activate, listen, fdname):
    sock = tmp_path / "activated.sock"
    config = _write_config(tmp_path, listen)
    extra = [f"--fdname={fdname}"] if fdname else []
    process = _activated(socket_activate, sock, config, *extra)
    try:
        _wait_for_path(sock, process)
        # The first connection is what makes systemd-socket-activate start the daemon.
        assert _version(f"unix://{sock}").runtime_api_version == "v1"
        assert _version(f"unix://{sock}").runtime_name == "pycrid"
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    # The socket belongs to systemd (pycrid.socket): the daemon leaves it in place.
    assert sock.exists()
    assert not (tmp_path / "run" / "grpc" / "pycrid.sock").exists()


def test_socket_activation_with_the_wrong_name_fails_in_one_line(tmp_path, socket_activate):
    sock = tmp_path / "activated.sock"
    process = _activated(
        socket_activate, sock, _write_config(tmp_path, "fd://other"), "--fdname=cri"
    )
    try:
        _wait_for_path(sock, process)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))  # starts the daemon, which refuses
            assert process.wait(20) != 0
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stderr is not None
    assert "systemd passed no socket named 'other' (passed: cri)" in process.stderr.read().decode()


def test_fd_listen_outside_systemd_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    result = subprocess.run(
        [sys.executable, "-m", "pycrid.tools.cli", "serve", "--listen", "fd://",
         "--state-dir", str(tmp_path / "s"), "--run-dir", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pycrid: error: listen is fd:// but systemd")


def test_units_say_what_the_issue_asks():
    service = unit_text("pycrid.service")
    for line in (
        "Type=notify",
        "KillMode=process",
        "Delegate=yes",
        "LimitNOFILE=1048576",
        "Restart=always",
        "Before=kubelet.service",
        "ExecStart=/usr/local/bin/pycrid serve --listen fd://",
    ):
        assert line in service.splitlines()
    assert "ListenStream=/run/pycrid/pycrid.sock" in unit_text("pycrid.socket").splitlines()


def test_units_never_hold_the_boot_nor_drop_queued_connections():
    socket_unit = unit_text("pycrid.socket").splitlines()
    assert not any(line.startswith("PartOf=") for line in socket_unit)
    assert "WantedBy=sockets.target" in socket_unit
    service = render_units("/opt/pycrid/bin/pycrid")["pycrid.service"].splitlines()
    assert "Also=pycrid.socket" in service
    assert not any(line.startswith("WantedBy=") for line in service)


def test_rendered_units_without_socket_activation():
    units = render_units("/opt/pycrid/bin/pycrid", socket_activation=False, group="kube")
    assert list(units) == ["pycrid.service"]
    service = units["pycrid.service"].splitlines()
    assert "ExecStart=/opt/pycrid/bin/pycrid serve --group kube" in service
    assert not any("pycrid.socket" in line for line in service)
    assert "WantedBy=multi-user.target" in service
    with_socket = render_units("/opt/pycrid/bin/pycrid", group="kube")
    assert "SocketGroup=kube" in with_socket["pycrid.socket"].splitlines()


def test_install_units_refuses_to_overwrite(tmp_path):
    written = install_units(tmp_path, command="/bin/true")
    assert sorted(p.name for p in written) == ["pycrid.service", "pycrid.socket"]
    with pytest.raises(FileExistsError, match="--force"):
        install_units(tmp_path, command="/bin/true")
    install_units(tmp_path, command="/bin/true", force=True)


@pytest.mark.parametrize("socket_activation", [True, False])
def test_systemd_analyze_verify_is_clean(tmp_path, socket_activation):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    args = ["install-units", "--dir", str(tmp_path)]
    if not socket_activation:
        args.append("--no-socket")
    done = subprocess.run(
        [sys.executable, "-m", "pycrid.tools.cli", *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    units = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and "pycrid" not in output:
        pytest.skip(f"systemd-analyze verify cannot run here: {output[:200]}")
    assert result.returncode == 0 and not output, output
