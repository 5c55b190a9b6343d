"""Requests that name hostile files, ask for huge counts or reach into another pod.

On both adapters: a FIFO or a device where a log file or a seccomp profile
should be is refused at once (the daemon never waits on it, so Version keeps
answering within a second), ``/dev/zero`` as a profile is refused without the
daemon's memory growing, a symlinked log directory is not followed, a PID
namespace target in another pod is refused, each limit of ``[limits]`` is
refused before any work, and an ExecSync whose command leaves a background
child holding its output answers when the command exits.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from crictl_tests import harness
from crictl_tests.dockerpods import CALL_TIMEOUT, Pods, open_pods
from crictl_tests.harness import BUSYBOX_IMAGE, Daemon
from pycrid.api.cri import api_pb2 as cri

FAST = 1.0
"""Seconds within which Version must answer while a hostile call is in flight."""
REFUSED_WITHIN = 5.0
"""Seconds within which a hostile request must be refused."""


@pytest.fixture(scope="module", params=["docker", "oci"])
def daemon(request: pytest.FixtureRequest, test_registry: None) -> Iterator[Daemon]:
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    started = harness.start_daemon(request.param)
    try:
        yield started
    finally:
        started.stop()
        harness.remove_root(started)


@pytest.fixture(scope="module")
def pods(daemon: Daemon) -> Iterator[Pods]:
    with open_pods(daemon, BUSYBOX_IMAGE) as pods:
        yield pods


@pytest.fixture(scope="module")
def pod(pods: Pods) -> tuple[str, cri.PodSandboxConfig]:
    config = pods.sandbox_config("hostile-io")
    return pods.run(config), config


def rss_kib(daemon: Daemon) -> tuple[int, int]:
    """(VmRSS, VmHWM) of the daemon in KiB."""
    assert daemon.process is not None
    fields = {}
    for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def refused_meanwhile(
    daemon: Daemon,
    call: Callable[[], Any],
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
) -> tuple[str, float, float]:
    """Run ``call`` while Version is asked again and again; (details, call's seconds,
    slowest Version in seconds). ``call`` must fail with ``code``."""
    slowest = 0.0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        began = time.monotonic()
        future = pool.submit(call)
        while True:
            asked = time.monotonic()
            daemon.runtime.Version(cri.VersionRequest(), timeout=10)
            slowest = max(slowest, time.monotonic() - asked)
            if future.done() or time.monotonic() - began > REFUSED_WITHIN:
                break
            time.sleep(0.05)
        try:
            future.result(timeout=30)
        except grpc.RpcError as e:
            took = time.monotonic() - began
            assert e.code() == code, (e.code(), e.details())
            return e.details() or "", took, slowest
    raise AssertionError("the call succeeded")


def create_request(
    pods: Pods, pod: tuple[str, cri.PodSandboxConfig], config: cri.ContainerConfig
) -> Callable[[], Any]:
    sandbox_id, sandbox = pod
    request = cri.CreateContainerRequest(
        pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox
    )
    return lambda: pods.rt.CreateContainer(request, timeout=30)


def localhost_seccomp(path: str) -> cri.LinuxContainerConfig:
    profile = cri.SecurityProfile(profile_type=cri.SecurityProfile.Localhost, localhost_ref=path)
    return cri.LinuxContainerConfig(
        security_context=cri.LinuxContainerSecurityContext(seccomp=profile)
    )


def no_containers_named(pods: Pods, sandbox_id: str, name: str) -> None:
    listed = pods.rt.ListContainers(
        cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=sandbox_id)),
        timeout=CALL_TIMEOUT,
    )
    assert [c.id for c in listed.containers if c.metadata.name == name] == []


def test_a_fifo_at_the_log_path_is_refused_and_version_answers(
    pods: Pods, pod: tuple[str, cri.PodSandboxConfig]
) -> None:
    log_dir = Path(pod[1].log_directory)
    log_dir.mkdir(parents=True, exist_ok=True)
    os.mkfifo(log_dir / "fifo.log")
    config = pods.container_config("fifo-log")
    config.log_path = "fifo.log"
    details, took, slowest = refused_meanwhile(pods.daemon, create_request(pods, pod, config))
    print(f"FIFO log path: refused in {took:.3f}s, slowest Version {slowest:.3f}s")
    assert "FIFO" in details
    assert took < REFUSED_WITHIN and slowest < FAST
    no_containers_named(pods, pod[0], "fifo-log")


def test_a_fifo_as_seccomp_profile_is_refused_and_version_answers(
    pods: Pods, pod: tuple[str, cri.PodSandboxConfig], tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "profile.json")
    config = pods.container_config(
        "fifo-seccomp", linux=localhost_seccomp(str(tmp_path / "profile.json"))
    )
    details, took, slowest = refused_meanwhile(pods.daemon, create_request(pods, pod, config))
    print(f"FIFO seccomp profile: refused in {took:.3f}s, slowest Version {slowest:.3f}s")
    assert "FIFO" in details and "seccomp" in details
    assert took < REFUSED_WITHIN and slowest < FAST
    no_containers_named(pods, pod[0], "fifo-seccomp")


def test_dev_zero_as_seccomp_profile_is_refused_with_flat_memory(
    pods: Pods, pod: tuple[str, cri.PodSandboxConfig]
) -> None:
    before = rss_kib(pods.daemon)
    for _ in range(5):
        config = pods.container_config("zero-seccomp", linux=localhost_seccomp("/dev/zero"))
        details, took, slowest = refused_meanwhile(pods.daemon, create_request(pods, pod, config))
        assert "character device" in details
        assert took < REFUSED_WITHIN and slowest < FAST
    after = rss_kib(pods.daemon)
    print(f"/dev/zero seccomp profile: RSS {before[0]} -> {after[0]} KiB, peak {after[1]} KiB")
    assert after[1] - before[1] < 16 * 1024  # the peak grew by less than 16 MiB


def test_a_symlinked_log_directory_is_not_followed(pods: Pods, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    config = pods.sandbox_config("symlinked-logs")
    Path(config.log_directory).parent.mkdir(parents=True, exist_ok=True)
    Path(config.log_directory).symlink_to(target)
    try:
        sandbox_id = pods.run(config)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    else:
        details, _, _ = refused_meanwhile(
            pods.daemon, create_request(pods, (sandbox_id, config), pods.container_config("c"))
        )
        assert "symlink" in details
    assert list(target.iterdir()) == []


def test_a_fifo_at_the_log_path_on_reopen_is_refused(
    pods: Pods, pod: tuple[str, cri.PodSandboxConfig]
) -> None:
    container_id = pods.run_container(pod[0], pods.container_config("reopened"))
    log_file = Path(pod[1].log_directory) / "reopened.log"
    log_file.rename(log_file.with_suffix(".log.1"))  # as kubelet rotates it
    os.mkfifo(log_file)
    request = cri.ReopenContainerLogRequest(container_id=container_id)
    details, took, slowest = refused_meanwhile(
        pods.daemon, lambda: pods.rt.ReopenContainerLog(request, timeout=30)
    )
    print(f"FIFO on ReopenContainerLog: refused in {took:.3f}s, slowest Version {slowest:.3f}s")
    assert "FIFO" in details
    assert took < REFUSED_WITHIN and slowest < FAST
    log_file.unlink()
    pods.rt.ReopenContainerLog(request, timeout=30)
    assert log_file.is_file()


def test_a_pid_target_in_another_pod_is_refused(
    pods: Pods, pod: tuple[str, cri.PodSandboxConfig]
) -> None:
    other = pods.run(pods.sandbox_config("other-pod"))
    foreign = pods.run_container(other, pods.container_config("foreign"))
    own = pods.run_container(pod[0], pods.container_config("own"))
    for target, allowed in (
        (foreign, False),
        (foreign[:13], False),
        ("0" * 64, False),
        (own, True),
    ):
        config = pods.container_config(f"debug-{allowed}-{len(target)}")
        options = config.linux.security_context.namespace_options
        options.pid, options.target_id = cri.TARGET, target
        if allowed:
            created = create_request(pods, pod, config)().container_id
            pods.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=created), timeout=60)
            continue
        details, _, _ = refused_meanwhile(pods.daemon, create_request(pods, pod, config))
        assert "target_id" in details


LIMITED: dict[str, Callable[[cri.ContainerConfig], None]] = {
    "100,000 variables": lambda c: c.envs.extend(
        cri.KeyValue(key=f"V{i}", value=b"x" * 100) for i in range(100_000)
    ),
    "9 MiB of environment": lambda c: c.envs.extend(
        cri.KeyValue(key=f"V{i}", value=b"x" * 100_000) for i in range(95)
    ),
    "2,000 mounts": lambda c: c.mounts.extend(
        cri.Mount(container_path=f"/m{i}", host_path="/etc/hostname") for i in range(2000)
    ),
    "2,000 devices": lambda c: c.devices.extend(
        cri.Device(container_path=f"/dev/d{i}", host_path="/dev/null", permissions="r")
        for i in range(2000)
    ),
}


@pytest.mark.parametrize("case", sorted(LIMITED))
def test_container_limits_are_refused_at_once(
    pods: Pods, pod: tuple[str, cri.PodSandboxConfig], case: str
) -> None:
    config = pods.container_config("limited")
    LIMITED[case](config)
    details, took, slowest = refused_meanwhile(pods.daemon, create_request(pods, pod, config))
    print(f"{case}: refused in {took:.3f}s, slowest Version {slowest:.3f}s")
    assert "limits.max_" in details
    assert took < 2.0 and slowest < FAST


def test_port_mappings_above_the_limit_are_refused_at_once(pods: Pods) -> None:
    config = pods.sandbox_config("many-ports")
    config.port_mappings.extend(cri.PortMapping(container_port=1 + i) for i in range(1000))
    request = cri.RunPodSandboxRequest(config=config)
    details, took, _ = refused_meanwhile(
        pods.daemon, lambda: pods.rt.RunPodSandbox(request, timeout=60)
    )
    print(f"1,000 port mappings: refused in {took:.3f}s")
    assert "limits.max_port_mappings" in details and took < 2.0


def test_a_request_above_max_request_bytes_is_not_read(pods: Pods) -> None:
    config = pods.sandbox_config("huge")
    config.annotations.update({f"a{i}": "x" * 100_000 for i in range(170)})  # 17 MB
    request = cri.RunPodSandboxRequest(config=config)
    _, took, _ = refused_meanwhile(
        pods.daemon,
        lambda: pods.rt.RunPodSandbox(request, timeout=60),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert took < 2.0


def test_exec_sync_answers_when_the_command_exits(
    pods: Pods, pod: tuple[str, cri.PodSandboxConfig]
) -> None:
    container_id = pods.run_container(pod[0], pods.container_config("execsync"))
    for timeout in (0, 10):
        began = time.monotonic()
        response = pods.rt.ExecSync(
            cri.ExecSyncRequest(
                container_id=container_id,
                cmd=["sh", "-c", "sleep 40 & echo started"],
                timeout=timeout,
            ),
            timeout=60,
        )
        took = time.monotonic() - began
        print(f"ExecSync of a command leaving a background child (timeout {timeout}): {took:.2f}s")
        assert (response.exit_code, response.stdout) == (0, b"started\n")
        assert took < 8.0  # Docker itself answers 2 to 4 s after the command exits


def test_user_namespaces_as_the_docs_say(pods: Pods) -> None:
    """docker: anything but NODE is UNIMPLEMENTED; oci: a mapping onto host root is refused."""
    docker = pods.daemon.config["adapter"] == "docker"
    mapping = [cri.IDMapping(host_id=0 if not docker else 1, container_id=0, length=65536)]
    config = pods.sandbox_config("userns")
    config.linux.security_context.namespace_options.userns_options.CopyFrom(
        cri.UserNamespace(mode=cri.POD, uids=mapping, gids=mapping)
    )
    request = cri.RunPodSandboxRequest(config=config)
    code = grpc.StatusCode.UNIMPLEMENTED if docker else grpc.StatusCode.INVALID_ARGUMENT
    details, _, _ = refused_meanwhile(
        pods.daemon, lambda: pods.rt.RunPodSandbox(request, timeout=60), code
    )
    assert "user namespace" in details or "host_id 0" in details


def test_reopen_never_writes_through_a_symlink_planted_beside_the_log(
    pods: Pods, pod: tuple[str, cri.PodSandboxConfig], tmp_path: Path
) -> None:
    """conmon writes the new file under ``<log>.tmp`` first; a symlink there is not followed."""
    container_id = pods.run_container(pod[0], pods.container_config("planted"))
    victim = tmp_path / "victim"
    victim.write_text("keep")
    log_file = Path(pod[1].log_directory) / "planted.log"
    log_file.rename(log_file.with_suffix(".log.1"))
    Path(f"{log_file}.tmp").symlink_to(victim)
    pods.rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=container_id), timeout=30)
    assert victim.read_text() == "keep"
    assert log_file.is_file() and not log_file.is_symlink()
