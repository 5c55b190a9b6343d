"""`pycrid compare` end to end, on the docker adapter: against itself, against a
daemon configured differently, and what it leaves behind (nothing), also after
a Ctrl-C in the middle of a run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from crictl_tests import harness
from crictl_tests.harness import Daemon
from pycrid.api.cri import api_pb2 as cri
from pycrid.tools.compare.observe import LABEL

pytestmark = pytest.mark.usefixtures("docker_engine", "test_registry")


@pytest.fixture
def adapter_config(tmp_path: Path) -> Path:
    """The test registry's mirrors, for the daemons compare starts itself."""
    registries = harness.base_config(tmp_path, "docker")["registries"]
    path = tmp_path / "mirrors.toml"
    path.write_text(tomli_w.dumps({"registries": registries}))
    return path


def compare(*args: str, adapter_config: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pycrid.tools.cli", "compare", *args]
    command += ["--repeat", "1", "--format", "json", "--adapter-config", str(adapter_config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def compare_labelled_pods(daemon: Daemon) -> list[str]:
    listed = daemon.runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=30)
    return [p.id for p in listed.items if LABEL in p.labels]


def compare_labelled_docker_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def compare_dirs() -> list[Path]:
    return sorted(Path("/tmp").glob("pycrid-cmp-*"))


def assert_nothing_left(daemon: Daemon, dirs_before: list[Path]) -> None:
    assert compare_labelled_pods(daemon) == []
    assert compare_labelled_docker_containers() == []
    assert [d for d in compare_dirs() if d not in dirs_before] == []


def test_the_docker_adapter_against_itself_differs_in_nothing(
    docker_daemon: Daemon, adapter_config: Path
) -> None:
    before = compare_dirs()
    only = "runtime-info,pod-lifecycle,errors,idempotence,streaming"
    done = compare(
        "adapter:docker", docker_daemon.endpoint, "--only", only, adapter_config=adapter_config
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["differences"] == []
    assert report["scenarios"] == only.split(",")
    calls = {t["call"] for t in report["timings"]}
    assert {"Version", "RunPodSandbox", "ExecSync(exit 3)", "Exec(tty)"} <= calls
    assert "cleaning up" in done.stderr
    assert_nothing_left(docker_daemon, before)


def test_a_daemon_without_a_network_differs_field_by_field(
    daemon_factory: Any, adapter_config: Path, tmp_path: Path
) -> None:
    """CNI mode with no network config: NetworkReady is false and pods cannot run there."""
    empty = tmp_path / "net.d"
    empty.mkdir()
    other = daemon_factory("docker", {"network": {"mode": "cni", "cni_conf_dir": str(empty)}})
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\ncall = "Status"\nfield = "status.conditions*"\n'
        'reason = "B has no CNI network config"\n'
    )
    before = compare_dirs()
    done = compare(
        "adapter:docker",
        other.endpoint,
        "--only",
        "runtime-info,pod-lifecycle,errors",
        "--rules",
        str(rules),
        adapter_config=adapter_config,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    found = {(d["scenario"], d["call"], d["field"]): d for d in report["differences"]}

    status = [d for k, d in found.items() if k[1] == "Status"]
    assert status and all(d["expected"] for d in status)
    reasons = {d["field"]: d["reason"] for d in status}
    assert reasons["status.conditions[type=NetworkReady].status"] == "B has no CNI network config"
    assert "NetworkPluginNotReady" in [d["b"] for d in status]
    # The pod scenario stops on B at its first call and says so; the rest carries on.
    run = found["pod-lifecycle", "RunPodSandbox", "code"]
    assert (run["a"], run["expected"]) == ("OK", False)
    assert run["b"] != "OK"
    outcome = found["pod-lifecycle", "(scenario)", "outcome"]
    assert outcome["a"] == "ran to its end"
    assert outcome["b"].startswith("stopped (") and "RunPodSandbox" in outcome["b"]
    assert report["unexpected"] == sum(not d["expected"] for d in report["differences"])
    assert any(t["scenario"] == "errors" for t in report["timings"])
    assert_nothing_left(other, before)


def test_ctrl_c_in_the_middle_leaves_nothing_behind(
    docker_daemon: Daemon, adapter_config: Path
) -> None:
    before = compare_dirs()
    command = [sys.executable, "-m", "pycrid.tools.cli", "compare", docker_daemon.endpoint]
    command += ["adapter:docker", "--only", "pod-lifecycle,exit-reasons", "--repeat", "1"]
    command += ["--adapter-config", str(adapter_config)]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not compare_labelled_pods(docker_daemon):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "compare made no pod"
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert "interrupted" in err
    assert_nothing_left(docker_daemon, before)
