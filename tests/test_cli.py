"""The pycrid command: its output, and failing fast with one clear line."""

from __future__ import annotations

import grp
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import grpc
import pytest

from pycrid.api.cri import api_pb2 as cri
from pycrid.api.cri import api_pb2_grpc

HERE = Path(__file__).parent


def pycrid(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pycrid.tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_fails_with(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pycrid: error: ")
    assert fragment in lines[0]


def test_version():
    result = pycrid("version")
    assert result.returncode == 0
    assert result.stdout.startswith("pycrid 0.1.0")


def test_config_prints_the_effective_configuration(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('log_level = "debug"\n[registries."registry.k8s.io"]\nmirrors = ["http://m"]\n')
    result = pycrid("config", "--config", str(path), "--adapter", "oci")
    assert result.returncode == 0, result.stderr
    printed = tomllib.loads(result.stdout)
    assert printed["adapter"] == "oci"
    assert printed["log_level"] == "debug"
    assert printed["registries"]["registry.k8s.io"]["mirrors"] == ["http://m"]
    assert printed["listen"] == "unix:///run/pycrid/pycrid.sock"


def test_malformed_config_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("adapter = [unterminated\n")
    assert_fails_with(pycrid("serve", "--config", str(path)), "is not valid TOML")


def test_unknown_adapter(tmp_path):
    result = pycrid("serve", "--config", str(tmp_path / "none.toml"), "--adapter", "podman")
    assert_fails_with(result, "does not exist")
    result = pycrid("serve", "--adapter", "podman", "--listen", f"unix://{tmp_path}/s.sock")
    assert_fails_with(result, "unknown adapter 'podman'")


def test_docker_that_never_answers(tmp_path):
    """A socket that accepts connections but never replies, like a hung dockerd."""
    hung = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(hung))
    listener.listen(16)
    try:
        started = time.monotonic()
        result = pycrid(
            "serve",
            "--listen", f"unix://{tmp_path}/pycrid.sock",
            "--state-dir", str(tmp_path / "state"),
            "--docker-endpoint", f"unix://{hung}",
            "--docker-startup-timeout", "1.5",
        )  # fmt: skip
        assert time.monotonic() - started < 25
    finally:
        listener.close()
    assert_fails_with(result, f"docker at unix://{hung} did not answer within 1.5s")
    assert not (tmp_path / "pycrid.sock").exists()


def test_docker_socket_that_does_not_exist(tmp_path):
    result = pycrid(
        "serve",
        "--listen", f"unix://{tmp_path}/pycrid.sock",
        "--docker-endpoint", f"unix://{tmp_path}/missing.sock",
        "--docker-startup-timeout", "1",
    )  # fmt: skip
    assert_fails_with(result, "did not answer within 1s")


def test_socket_path_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = pycrid("serve", "--listen", f"unix://{blocker}/sub/pycrid.sock")
    assert_fails_with(result, f"cannot create socket directory {blocker}/sub")


def test_socket_path_taken_by_a_regular_file(tmp_path):
    taken = tmp_path / "pycrid.sock"
    taken.write_text("")
    result = pycrid("serve", "--listen", f"unix://{taken}")
    assert_fails_with(result, "exists and is not a socket")


def _start_fake_daemon(
    tmp_path: Path,
    listen: str,
    name: str = "c",
    run_dir: str = "run-dir",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f'listen = "{listen}"\nstate_dir = "{tmp_path}/state"\nrun_dir = "{tmp_path}/{run_dir}"\n'
    )
    return subprocess.Popen(
        [sys.executable, str(HERE / "serve_fake.py"), str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def _wait_for_socket(path: Path, process: subprocess.Popen[bytes]) -> None:
    for _ in range(400):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
            with grpc.insecure_channel(f"unix://{path}") as channel:
                try:
                    api_pb2_grpc.RuntimeServiceStub(channel).Version(
                        cri.VersionRequest(), timeout=1
                    )
                    return
                except grpc.RpcError:
                    pass
        time.sleep(0.05)
    pytest.fail("daemon did not start")


def test_serve_lifecycle_socket_mode_and_clean_exit(tmp_path):
    sock = tmp_path / "run" / "pycrid.sock"  # the parent directory does not exist yet
    process = _start_fake_daemon(tmp_path, f"unix://{sock}")
    try:
        _wait_for_socket(sock, process)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        second = pycrid("serve", "--listen", f"unix://{sock}", "--adapter", "oci")
        assert_fails_with(second, "another daemon is serving")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    assert not sock.exists()


def test_stale_socket_is_replaced(tmp_path):
    sock = tmp_path / "pycrid.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()  # bound, never listening: what a killed daemon leaves
    process = _start_fake_daemon(tmp_path, f"unix://{sock}")
    try:
        _wait_for_socket(sock, process)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    assert not os.path.exists(sock)


def test_a_signal_while_starting_stops_the_daemon_cleanly(tmp_path):
    sock = tmp_path / "pycrid.sock"
    gate = tmp_path / "gate"
    process = _start_fake_daemon(
        tmp_path, f"unix://{sock}", env={"PYCRID_FAKE_START_GATE": str(gate)}
    )
    try:
        for _ in range(400):
            if (tmp_path / "gate.waiting").exists() or process.poll() is not None:
                break
            time.sleep(0.05)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        gate.touch()
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert not sock.exists()


def test_one_daemon_per_state_dir_and_per_run_dir(tmp_path):
    first_sock = tmp_path / "first.sock"
    first = _start_fake_daemon(tmp_path, f"unix://{first_sock}", name="first")
    try:
        _wait_for_socket(first_sock, first)
        for run_dir in ("run-dir", "other-run-dir"):
            second = _start_fake_daemon(
                tmp_path, f"unix://{tmp_path}/second.sock", name="second", run_dir=run_dir
            )
            assert second.wait(20) != 0
            assert second.stderr is not None
            message = second.stderr.read().decode()
            assert f"another pycrid daemon (pid {first.pid}) uses" in message
            assert not (tmp_path / "second.sock").exists()
        # The run directory is locked too, whatever the state directory.
        result = pycrid(
            "serve",
            "--listen",
            f"unix://{tmp_path}/third.sock",
            "--state-dir",
            str(tmp_path / "state3"),
            "--run-dir",
            str(tmp_path / "run-dir"),
        )
        assert_fails_with(result, "uses run directory")
        assert not (tmp_path / "state3").exists()  # the refused daemon made it, and took it back
        # The same state directory through the command: one line naming the holder.
        result = pycrid(
            "serve",
            "--listen",
            f"unix://{tmp_path}/fourth.sock",
            "--state-dir",
            str(tmp_path / "state"),
            "--run-dir",
            str(tmp_path / "run4"),
        )
        assert result.returncode == 1
        assert_fails_with(
            result, f"another pycrid daemon (pid {first.pid}) uses state directory {tmp_path}/state"
        )
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0
    # A killed daemon leaves no lock behind: the kernel drops it.
    again = _start_fake_daemon(tmp_path, f"unix://{first_sock}", name="first")
    try:
        _wait_for_socket(first_sock, again)
        again.kill()
        again.wait(20)
        after_kill = _start_fake_daemon(tmp_path, f"unix://{first_sock}", name="first")
        _wait_for_socket(first_sock, after_kill)
        after_kill.send_signal(signal.SIGTERM)
        assert after_kill.wait(20) == 0
    finally:
        if again.poll() is None:
            again.kill()


def test_top_level_version_flag_and_bare_command():
    result = pycrid("--version")
    assert (result.returncode, result.stdout.strip()) == (0, "pycrid 0.1.0")
    bare = pycrid()
    assert bare.returncode == 0
    assert bare.stdout.startswith("usage: pycrid") and "install-units" in bare.stdout


def test_version_names_each_part(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[docker]\nendpoint = "unix://{tmp_path}/no-docker.sock"\n')
    result = pycrid("version", "--config", str(config))
    assert result.returncode == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.startswith("pycrid 0.1.0")
    keys = [line.split(":", 1)[0] for line in rest]
    for key in ("CRI API", "Python", "grpcio", "protobuf", "adapter", "docker"):
        assert key in keys
    assert "CRI API: runtime.v1 (the Version RPC reports 0.1.0" in result.stdout
    assert "docker: unknown (docker at unix://" in result.stdout


def test_unknown_flag_of_a_command_is_one_line_with_status_2():
    result = pycrid("serve", "--bogus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pycrid serve: error: unrecognized arguments: --bogus (see pycrid serve --help)"
    ]
    result = pycrid("serve", "--streaming-port", "many")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid int value: 'many'" in result.stderr


def test_serve_help_shows_defaults_and_the_docs():
    result = pycrid("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "(default: unix:///run/pycrid/pycrid.sock)" in text
    assert "(default: /var/lib/pycrid)" in text
    assert "docs/configuration.md" in text


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("shutdown_grace = -5", "shutdown_grace -5 is out of range"),
        ("[docker]\nstartup_timeout = -1", "docker.startup_timeout -1 is out of range"),
        ('[streaming]\naddress = "999.1.1.1"', "streaming.address '999.1.1.1' is not an IP"),
    ],
)
def test_config_refuses_bad_values_in_one_line(tmp_path, toml, fragment):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    for command in ("config", "serve"):
        result = pycrid(command, "--config", str(path))
        assert result.returncode == 3
        assert_fails_with(result, fragment)


def test_log_level_in_any_case():
    result = pycrid("config", "--log-level", "DEBUG", "--config", os.devnull)
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout)["log_level"] == "debug"


def test_streaming_address_fails_before_the_backend_is_asked(tmp_path):
    """192.0.2.1 (TEST-NET-1) is a valid address that no interface here has."""
    config = tmp_path / "c.toml"
    config.write_text('[streaming]\naddress = "192.0.2.1"\n')
    result = pycrid(
        "serve",
        "--config", str(config),
        "--listen", f"unix://{tmp_path}/pycrid.sock",
        "--state-dir", str(tmp_path / "state"),
        "--docker-endpoint", f"unix://{tmp_path}/missing.sock",
        "--docker-startup-timeout", "30",
    )  # fmt: skip
    # Within seconds, not after docker's 30 s: the streaming server starts first.
    assert result.returncode == 1
    assert_fails_with(result, "cannot listen on 192.0.2.1")


def test_group_of_the_socket(tmp_path):
    sock = tmp_path / "pycrid.sock"
    config = tmp_path / "g.toml"
    gid = next((g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getgid()), os.getgid())
    config.write_text(
        f'listen = "unix://{sock}"\nsocket_group = "{gid}"\n'
        f'state_dir = "{tmp_path}/state"\nrun_dir = "{tmp_path}/run"\n'
    )
    process = subprocess.Popen(
        [sys.executable, str(HERE / "serve_fake.py"), str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_socket(sock, process)
        assert sock.stat().st_gid == gid
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
