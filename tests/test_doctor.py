"""pycrid doctor: each check says pass or fail, and a failure comes with its fix."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from pathlib import Path

from pycrid.adapters.config import parse_config
from pycrid.server import exitcodes
from pycrid.tools.doctor.network import check_cni, check_mirrors
from pycrid.tools.doctor.node import cgroup_version, check_socket_dir
from pycrid.tools.doctor.report import run_doctor


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _config_values(tmp_path: Path) -> dict:
    """The oci adapter (no Docker asked), with only loopback registries to talk to."""
    mirror = f"http://127.0.0.1:{_closed_port()}"
    return {
        "adapter": "oci",
        "listen": f"unix://{tmp_path}/run/pycrid.sock",
        "state_dir": str(tmp_path / "state"),
        "run_dir": str(tmp_path / "run"),
        "network": {"cni_conf_dir": str(tmp_path / "net.d"), "cni_bin_dirs": [str(tmp_path)]},
        "registries": {"registry.k8s.io": {"mirrors": [mirror], "upstream": False}},
    }


def test_a_missing_cni_config_fails_with_its_fix(tmp_path):
    config = parse_config(_config_values(tmp_path))
    out = io.StringIO()
    assert run_doctor(config, out) == exitcodes.CHECKS_FAILED
    lines = out.getvalue().splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("[FAIL] CNI config"))
    assert f"no CNI network config found in {tmp_path}/net.d" in lines[failed]
    assert "fix: put a network config (.conflist) into" in lines[failed + 1]
    assert any(line.startswith("[FAIL] mirror of registry.k8s.io") for line in lines)
    assert lines[-1].endswith("warnings")


def test_cni_config_and_plugins_present(tmp_path):
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    conflist = {"cniVersion": "1.0.0", "name": "t", "plugins": [{"type": "loopback"}]}
    (conf_dir / "10-t.conflist").write_text(json.dumps(conflist))
    config = parse_config(_config_values(tmp_path))
    first, plugins = check_cni(config)
    assert first.ok and not plugins.ok and "loopback not found" in plugins.detail
    assert "containernetworking-plugins" in plugins.fix
    plugin = tmp_path / "loopback"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    assert all(r.ok for r in check_cni(config))


def test_socket_directory_and_cgroups(tmp_path):
    config = parse_config(_config_values(tmp_path))
    assert check_socket_dir(config).ok
    (tmp_path / "file").write_text("")
    config.listen = f"unix://{tmp_path}/file/sub/pycrid.sock"
    assert not check_socket_dir(config).ok
    assert cgroup_version(tmp_path / "absent") == ""


def test_mirror_that_answers(tmp_path):
    import http.server
    import threading

    class V2(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/v2/" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), V2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        values = _config_values(tmp_path)
        values["registries"]["registry.k8s.io"]["mirrors"] = [
            f"http://127.0.0.1:{server.server_address[1]}"
        ]
        (result,) = check_mirrors(parse_config(values))
        assert result.ok, result.detail
    finally:
        server.shutdown()


def test_doctor_command_exit_status(tmp_path):
    values = _config_values(tmp_path)
    mirror = values["registries"]["registry.k8s.io"]["mirrors"][0]
    config = tmp_path / "c.toml"
    config.write_text(
        f'adapter = "oci"\nstate_dir = "{tmp_path}/state"\nrun_dir = "{tmp_path}/run"\n'
        f'[network]\ncni_conf_dir = "{tmp_path}/net.d"\n'
        f'[registries."registry.k8s.io"]\nmirrors = ["{mirror}"]\nupstream = false\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "pycrid.tools.cli", "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == exitcodes.CHECKS_FAILED, result.stderr
    assert "[FAIL] CNI config" in result.stdout
    assert "fix: " in result.stdout
