"""Hostile input and races on the docker adapter: each defect a probe once found.

Every bad request must be refused with INVALID_ARGUMENT (never INTERNAL)
before anything is created, identical concurrent calls must be carried out
once, and whatever a test did, nothing may be left behind (``Pods.close``
checks Docker, checkpoints, run files and namespace pins).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from crictl_tests import harness
from crictl_tests.dockerpods import (
    CALL_TIMEOUT,
    Pods,
    cni_conf_dir,
    open_pods,
    pods_fixture,
    rpc_code,
)
from crictl_tests.harness import BUSYBOX_IMAGE
from pycrid.api.cri import api_pb2 as cri

pods = pods_fixture(BUSYBOX_IMAGE, scope="module")

MIB = "x" * (1 << 20)


def refused(pods: Pods, call: Callable[[], object]) -> str:
    """The details of a call that must fail with INVALID_ARGUMENT."""
    try:
        call()
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details()[:200])
        assert len(e.details()) <= 1024
        return e.details()
    raise AssertionError("the call succeeded")


def pod_with(pods: Pods, mutate: Callable[[cri.PodSandboxConfig], None]) -> cri.PodSandboxConfig:
    config = pods.sandbox_config("hostile")
    mutate(config)
    return config


BAD_PODS: dict[str, Callable[[cri.PodSandboxConfig], None]] = {
    "NUL in the name": lambda c: setattr(c.metadata, "name", "a\x00b"),
    "1 MiB name": lambda c: setattr(c.metadata, "name", MIB),
    "1 MiB hostname": lambda c: setattr(c, "hostname", MIB),
    "bad hostname": lambda c: setattr(c, "hostname", "not a host!"),
    "relative log directory": lambda c: setattr(c, "log_directory", "logs/here"),
    "unknown sysctl": lambda c: c.linux.sysctls.update({"no.such.key": "1"}),
    "host-wide sysctl": lambda c: c.linux.sysctls.update({"kernel.panic": "1"}),
    "path as sysctl": lambda c: c.linux.sysctls.update({"../..": "1"}),
    "empty sysctl": lambda c: c.linux.sysctls.update({"": "1"}),
    "1 MiB sysctl value": lambda c: c.linux.sysctls.update({"kernel.shm_rmid_forced": MIB}),
    "net sysctl on the host network": lambda c: (
        c.linux.sysctls.update({"net.ipv4.ip_forward": "1"}),
        setattr(c.linux.security_context.namespace_options, "network", cri.NODE),
    ),
    "host port 65536": lambda c: c.port_mappings.add(container_port=80, host_port=65536),
    "host port -1": lambda c: c.port_mappings.add(container_port=80, host_port=-1),
    "container port 0": lambda c: c.port_mappings.add(container_port=0),
    "container port 70000": lambda c: c.port_mappings.add(container_port=70000),
    "duplicate host ports": lambda c: (
        c.port_mappings.add(container_port=80, host_port=18080),
        c.port_mappings.add(container_port=81, host_port=18080),
    ),
    "protocol 99": lambda c: c.port_mappings.add(container_port=80, protocol=99),
    "host_ip not an IP": lambda c: c.port_mappings.add(container_port=80, host_ip="not-an-ip"),
    "injected resolv.conf line": lambda c: c.dns_config.options.append(
        "ndots:5\nnameserver 6.6.6.6"
    ),
    "unknown namespace mode": lambda c: setattr(
        c.linux.security_context.namespace_options, "pid", 42
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PODS))
def test_bad_pods_are_refused_before_anything_is_made(pods: Pods, case: str) -> None:
    config = pod_with(pods, BAD_PODS[case])
    refused(pods, lambda: pods.run(config))
    assert not [
        p for p in pods.rt.ListPodSandbox(cri.ListPodSandboxRequest()).items
        if p.metadata.uid == config.metadata.uid
    ]  # fmt: skip
    assert pods.leftovers() == {}


@pytest.fixture(scope="module")
def sandbox(pods: Pods) -> str:
    return pods.run(pods.sandbox_config("target"))


def container_with(
    pods: Pods, mutate: Callable[[cri.ContainerConfig], None]
) -> cri.ContainerConfig:
    config = pods.container_config("hostile")
    mutate(config)
    return config


def run_as(field: str, value: int) -> Callable[[cri.ContainerConfig], None]:
    return lambda c: getattr(c.linux.security_context, field).__setattr__("value", value)


BAD_CONTAINERS: dict[str, Callable[[cri.ContainerConfig], None]] = {
    "log path up and out": lambda c: setattr(c, "log_path", "../../etc/x"),
    "absolute log path": lambda c: setattr(c, "log_path", "/etc/passwd"),
    "log path '.'": lambda c: setattr(c, "log_path", "."),
    "NUL in the log path": lambda c: setattr(c, "log_path", "a\x00b"),
    "1 MiB log path": lambda c: setattr(c, "log_path", MIB),
    "1 MiB mount path": lambda c: c.mounts.add(container_path="/" + MIB, host_path="/tmp"),
    "stop signal 999": lambda c: setattr(c, "stop_signal", 999),
    "NUL in an env value": lambda c: c.envs.add(key="A", value=b"a\x00b"),
    "uid -1": run_as("run_as_user", -1),
    "uid 2**62": run_as("run_as_user", 2**62),
    "cpu quota 2**62+1": lambda c: setattr(c.linux.resources, "cpu_quota", 2**62 + 1),
    "negative cpu shares": lambda c: setattr(c.linux.resources, "cpu_shares", -5),
    "missing device": lambda c: c.devices.add(
        container_path="/dev/x", host_path="/dev/no-such-device", permissions="rw"
    ),
    "regular file as device": lambda c: c.devices.add(
        container_path="/dev/x", host_path="/etc/hostname", permissions="rw"
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONTAINERS))
def test_bad_containers_are_refused_before_anything_is_made(
    pods: Pods, sandbox: str, case: str
) -> None:
    config = container_with(pods, BAD_CONTAINERS[case])
    refused(pods, lambda: pods.create(sandbox, config))
    listed = pods.rt.ListContainers(
        cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=sandbox))
    )
    assert [c.metadata.name for c in listed.containers] == []
    assert not Path("/etc/x").exists()


def test_bad_stop_timeouts_and_ids_are_refused_with_short_messages(
    pods: Pods, sandbox: str
) -> None:
    container = pods.create(sandbox, pods.container_config("stoppable"))
    try:
        for timeout in (-1, 2**62):
            refused(
                pods,
                lambda t=timeout: pods.rt.StopContainer(
                    cri.StopContainerRequest(container_id=container, timeout=t),
                    timeout=CALL_TIMEOUT,
                ),
            )
        details = refused(
            pods,
            lambda: pods.rt.ContainerStatus(
                cri.ContainerStatusRequest(container_id=MIB), timeout=CALL_TIMEOUT
            ),
        )
        assert "too long" in details
    finally:
        pods.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=container))


def test_identical_concurrent_creates_name_one_live_container(pods: Pods, sandbox: str) -> None:
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        for attempt in range(5):
            config = pods.container_config("twin")
            config.metadata.attempt = attempt
            answers = set(pool.map(pods.create, [sandbox] * 10, [config] * 10))
            assert len(answers) == 1
            (container,) = answers
            pods.start(container)
            assert pods.status(container).status.state == cri.CONTAINER_RUNNING
            pods.rt.RemoveContainer(
                cri.RemoveContainerRequest(container_id=container), timeout=CALL_TIMEOUT
            )


def test_identical_concurrent_pod_runs_make_one_pod(pods: Pods) -> None:
    config = pods.sandbox_config("twin-pod")
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = set(pool.map(lambda _: pods.run(config), range(10)))
    assert len(answers) == 1
    listed = pods.rt.ListPodSandbox(cri.ListPodSandboxRequest()).items
    assert [p.id for p in listed if p.metadata.uid == config.metadata.uid] == list(answers)


def test_a_second_daemon_on_the_same_state_dir_is_refused(pods: Pods) -> None:
    taken = pods.daemon.config
    for extra in (
        {"state_dir": taken["state_dir"]},
        {"run_dir": taken["run_dir"]},
    ):
        with pytest.raises(RuntimeError, match="another pycrid daemon"):
            harness.start_daemon("docker", extra)


def test_unused_exec_urls_never_lock_out_new_sessions(pods: Pods, sandbox: str) -> None:
    container = pods.create(sandbox, pods.container_config("shell"))
    pods.start(container)
    try:
        request = cri.ExecRequest(container_id=container, cmd=["true"], stdout=True)
        codes = {rpc_code(lambda: pods.rt.Exec(request, timeout=CALL_TIMEOUT)) for _ in range(1100)}
        assert codes == {grpc.StatusCode.OK}
    finally:
        pods.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=container))


def test_create_right_after_run_always_finds_the_pod_ready(pods: Pods) -> None:
    for _ in range(20):
        sandbox_id = pods.run(pods.sandbox_config("quick"))
        pods.create(sandbox_id, pods.container_config("first"))
        pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
        pods.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
        pods.sandboxes.remove(sandbox_id)


def test_a_symlink_at_the_log_path_is_not_followed(pods: Pods, sandbox: str) -> None:
    status = pods.sandbox_status(sandbox, verbose=False).status
    assert status.state == cri.SANDBOX_READY
    log_dir = Path(pods.log_root) / "symlinked"
    log_dir.mkdir(parents=True)
    target = log_dir.parent / "not-a-log"
    target.write_text("untouched\n")
    (log_dir / "c.log").symlink_to(target)
    sandbox_config = pods.sandbox_config("links")
    sandbox_config.log_directory = str(log_dir)
    sandbox_id = pods.run(sandbox_config)
    config = pods.container_config("c", command=["echo", "leaked"])
    config.log_path = "c.log"
    # Refused at CreateContainer, before Docker makes anything.
    code = rpc_code(lambda: pods.create(sandbox_id, config, sandbox_config))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert target.read_text() == "untouched\n"
    assert os.path.islink(log_dir / "c.log")


FAILING_PLUGIN = """#!/bin/sh
# A CNI plugin that refuses every ADD (after the bridge gave the pod an IP).
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then
    echo '{"cniVersion": "1.0.0", "code": 11, "msg": "refused on purpose"}'
    exit 1
fi
exit 0
"""


def test_a_pod_whose_network_fails_leaves_nothing(
    daemon_factory: Callable[..., harness.Daemon], tmp_path: Path
) -> None:
    conf_dir, ipam_dir = cni_conf_dir(tmp_path)
    conflist = next(conf_dir.iterdir())
    network = json.loads(conflist.read_text())
    network["plugins"].insert(1, {"type": "refuse"})
    conflist.write_text(json.dumps(network))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "refuse").write_text(FAILING_PLUGIN)
    (bin_dir / "refuse").chmod(0o755)
    daemon = daemon_factory(
        "docker",
        {
            "network": {
                "mode": "cni",
                "cni_conf_dir": str(conf_dir),
                "cni_bin_dirs": [str(bin_dir), "/usr/lib/cni", "/opt/cni/bin"],
            }
        },
    )
    with open_pods(daemon, ipam_dir=ipam_dir) as failing:
        for _ in range(3):
            try:
                failing.run(failing.sandbox_config("unlucky"))
            except grpc.RpcError as e:
                assert e.code() != grpc.StatusCode.UNKNOWN
                assert "refused on purpose" in e.details()
            else:
                raise AssertionError("RunPodSandbox succeeded")
            assert failing.rt.ListPodSandbox(cri.ListPodSandboxRequest()).items == []
            assert failing.leftovers() == {}
