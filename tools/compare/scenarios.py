"""The scenario suite: the calls kubelet and crictl make, in the order they make them.

Each scenario is a function of a ``Probe`` and runs once per side with the
same inputs. Everything it creates carries the ``io.pycrid.compare`` label
with the run's ID, and a scenario removes its own pods when it ends, however
it ends. Only calls that change nothing are repeated for the timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from pycrid.api.cri import api_pb2 as cri
from pycrid.tools.compare.observe import CALL_TIMEOUT, LABEL, Abort, Probe
from pycrid.tools.compare.streams import exec_over_websocket, http_get_through_port_forward

UNKNOWN_ID = "f" * 64
NAMESPACE = "pycrid-compare"
WAIT = 60.0


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[Probe], None]


def wait_until(check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _labels(p: Probe) -> dict[str, str]:
    return {LABEL: p.run_id}


def pod_config(p: Probe, name: str) -> cri.PodSandboxConfig:
    # The uid differs per side: two docker adapters on one dockerd share its names.
    uid = p.name(f"{p.run_id}-{p.side.label.lower()}-{name}", "uid")
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace=NAMESPACE, uid=uid),
        log_directory=str(Path(p.log_root) / uid),
        labels=_labels(p),
        linux=cri.LinuxPodSandboxConfig(),
    )


def container_config(
    p: Probe, name: str, command: list[str], image: str = "busybox", **fields: Any
) -> cri.ContainerConfig:
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name),
        image=cri.ImageSpec(image=p.images[image]),
        command=command,
        log_path=f"{name}.log",
        labels=_labels(p),
        **fields,
    )


def run_pod(p: Probe, name: str) -> tuple[str, cri.PodSandboxConfig]:
    config = pod_config(p, name)
    answer = p.call(
        "RunPodSandbox", p.rt.RunPodSandbox, cri.RunPodSandboxRequest(config=config), need=True
    )
    p.pods.append(p.name(answer.pod_sandbox_id, f"pod:{name}"))
    return answer.pod_sandbox_id, config


def pull(p: Probe, image: str, label: str = "") -> None:
    p.call(
        label or f"PullImage({image})",
        p.img.PullImage,
        cri.PullImageRequest(image=cri.ImageSpec(image=p.images[image])),
        need=True,
    )


def start_container(
    p: Probe, pod: str, pod_config: cri.PodSandboxConfig, config: cri.ContainerConfig
) -> str:
    name = config.metadata.name
    request = cri.CreateContainerRequest(
        pod_sandbox_id=pod, config=config, sandbox_config=pod_config
    )
    answer = p.call(f"CreateContainer({name})", p.rt.CreateContainer, request, need=True)
    container = p.name(answer.container_id, f"container:{name}")
    p.call(
        f"StartContainer({name})",
        p.rt.StartContainer,
        cri.StartContainerRequest(container_id=container),
        need=True,
    )
    return container


def status(p: Probe, container: str) -> cri.ContainerStatus:
    answer = p.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=container), timeout=30)
    return answer.status


def wait_exited(p: Probe, container: str) -> None:
    wait_until(lambda: status(p, container).state == cri.CONTAINER_EXITED)


def exec_sync(p: Probe, label: str, container: str, cmd: list[str]) -> None:
    request = cri.ExecSyncRequest(container_id=container, cmd=cmd, timeout=30)
    p.call(f"ExecSync({label})", p.rt.ExecSync, request, repeat=True)


# --- the scenarios -----------------------------------------------------------


def runtime_info(p: Probe) -> None:
    p.call("Version", p.rt.Version, cri.VersionRequest(), repeat=True)
    p.call("Status", p.rt.Status, cri.StatusRequest(), repeat=True)
    p.call("RuntimeConfig", p.rt.RuntimeConfig, cri.RuntimeConfigRequest(), repeat=True)
    p.call("ImageFsInfo", p.img.ImageFsInfo, cri.ImageFsInfoRequest(), repeat=True)


def images(p: Probe) -> None:
    busybox = p.images["busybox"]
    pull(p, "busybox", "PullImage(tag)")
    spec = cri.ImageSpec(image=busybox)
    p.call(
        "ListImages(filter)",
        p.img.ListImages,
        cri.ListImagesRequest(filter=cri.ImageFilter(image=spec)),
        repeat=True,
    )
    found = p.call(
        "ImageStatus(tag)",
        p.img.ImageStatus,
        cri.ImageStatusRequest(image=spec),
        repeat=True,
        need=True,
    )
    image = found.image
    if image.repo_digests:
        by_digest = cri.ImageSpec(image=image.repo_digests[0])
        p.call(
            "ImageStatus(digest)",
            p.img.ImageStatus,
            cri.ImageStatusRequest(image=by_digest),
            repeat=True,
        )
    p.call(
        "ImageStatus(id)",
        p.img.ImageStatus,
        cri.ImageStatusRequest(image=cri.ImageSpec(image=image.id)),
        repeat=True,
    )
    prefix = image.id.removeprefix("sha256:")[:12]
    p.call(
        "ImageStatus(id prefix)",
        p.img.ImageStatus,
        cri.ImageStatusRequest(image=cri.ImageSpec(image=prefix)),
        repeat=True,
    )
    p.call(
        "ImageStatus(missing)",
        p.img.ImageStatus,
        cri.ImageStatusRequest(image=cri.ImageSpec(image=p.images["missing"])),
        repeat=True,
    )

    removable = cri.ImageSpec(image=p.images["removable"])
    before = p.img.ImageStatus(cri.ImageStatusRequest(image=removable), timeout=30)
    if before.HasField("image"):
        # Someone else's image: this run removes only what it pulled itself.
        p.note("RemoveImage(pulled here)", {"skipped": "the image was on the node before the run"})
        return
    pull(p, "removable", "PullImage(removable)")
    p.call("RemoveImage(tag)", p.img.RemoveImage, cri.RemoveImageRequest(image=removable))
    p.call("ImageStatus(removed)", p.img.ImageStatus, cri.ImageStatusRequest(image=removable))
    p.call("RemoveImage(again)", p.img.RemoveImage, cri.RemoveImageRequest(image=removable))


def pod_lifecycle(p: Probe) -> None:
    pull(p, "busybox")
    pod, config = run_pod(p, "lifecycle")
    p.call(
        "PodSandboxStatus",
        p.rt.PodSandboxStatus,
        cri.PodSandboxStatusRequest(pod_sandbox_id=pod),
        repeat=True,
    )
    by_label = cri.PodSandboxFilter(label_selector=_labels(p))
    p.call(
        "ListPodSandbox(label)",
        p.rt.ListPodSandbox,
        cri.ListPodSandboxRequest(filter=by_label),
        repeat=True,
    )
    ready = cri.PodSandboxFilter(
        id=pod[:13], state=cri.PodSandboxStateValue(state=cri.SANDBOX_READY)
    )
    p.call(
        "ListPodSandbox(id prefix, ready)",
        p.rt.ListPodSandbox,
        cri.ListPodSandboxRequest(filter=ready),
        repeat=True,
    )

    writer = start_container(
        p,
        pod,
        config,
        container_config(
            p, "writer", ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exec sleep 3600"]
        ),
    )
    sidecar = start_container(p, pod, config, container_config(p, "sidecar", ["sleep", "3600"]))
    for name, cid in (("writer", writer), ("sidecar", sidecar)):
        p.call(
            f"ContainerStatus({name})",
            p.rt.ContainerStatus,
            cri.ContainerStatusRequest(container_id=cid),
            repeat=True,
        )
    in_pod = cri.ContainerFilter(pod_sandbox_id=pod)
    p.call(
        "ListContainers(pod)",
        p.rt.ListContainers,
        cri.ListContainersRequest(filter=in_pod),
        repeat=True,
    )
    running = cri.ContainerFilter(
        label_selector=_labels(p), state=cri.ContainerStateValue(state=cri.CONTAINER_RUNNING)
    )
    p.call(
        "ListContainers(label, running)",
        p.rt.ListContainers,
        cri.ListContainersRequest(filter=running),
        repeat=True,
    )
    p.call(
        "ListContainers(id prefix)",
        p.rt.ListContainers,
        cri.ListContainersRequest(filter=cri.ContainerFilter(id=writer[:13])),
        repeat=True,
    )

    exec_sync(p, "echo", sidecar, ["echo", "hello"])
    exec_sync(p, "exit 3", sidecar, ["sh", "-c", "exit 3"])
    exec_sync(p, "stderr", sidecar, ["sh", "-c", "echo oops >&2; exit 1"])
    exec_sync(p, "missing binary", sidecar, ["/no/such/binary"])

    log_file = Path(config.log_directory) / "writer.log"
    lines = wait_until(lambda: _log_lines(log_file) if len(_log_lines(log_file)) >= 2 else None, 10)
    p.note("log file read back", {"lines": sorted(lines or _log_lines(log_file))})

    p.call(
        "ContainerStats(sidecar)",
        p.rt.ContainerStats,
        cri.ContainerStatsRequest(container_id=sidecar),
        repeat=True,
    )
    p.call(
        "ListContainerStats(pod)",
        p.rt.ListContainerStats,
        cri.ListContainerStatsRequest(filter=cri.ContainerStatsFilter(pod_sandbox_id=pod)),
        repeat=True,
    )
    p.call(
        "PodSandboxStats",
        p.rt.PodSandboxStats,
        cri.PodSandboxStatsRequest(pod_sandbox_id=pod),
        repeat=True,
    )

    resources = cri.LinuxContainerResources(
        cpu_shares=512, memory_limit_in_bytes=256 << 20, cpu_quota=50000, cpu_period=100000
    )
    p.call(
        "UpdateContainerResources",
        p.rt.UpdateContainerResources,
        cri.UpdateContainerResourcesRequest(container_id=sidecar, linux=resources),
    )
    p.call(
        "ContainerStatus(updated)",
        p.rt.ContainerStatus,
        cri.ContainerStatusRequest(container_id=sidecar),
    )
    exec_sync(
        p, "cgroup memory limit", sidecar, ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    )

    p.call(
        "StopContainer",
        p.rt.StopContainer,
        cri.StopContainerRequest(container_id=writer, timeout=2),
    )
    p.call(
        "ContainerStatus(stopped)",
        p.rt.ContainerStatus,
        cri.ContainerStatusRequest(container_id=writer),
    )
    p.call("RemoveContainer", p.rt.RemoveContainer, cri.RemoveContainerRequest(container_id=writer))
    p.call("StopPodSandbox", p.rt.StopPodSandbox, cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    p.call(
        "PodSandboxStatus(stopped)",
        p.rt.PodSandboxStatus,
        cri.PodSandboxStatusRequest(pod_sandbox_id=pod),
    )
    p.call(
        "RemovePodSandbox", p.rt.RemovePodSandbox, cri.RemovePodSandboxRequest(pod_sandbox_id=pod)
    )
    p.call(
        "PodSandboxStatus(removed)",
        p.rt.PodSandboxStatus,
        cri.PodSandboxStatusRequest(pod_sandbox_id=pod),
    )


def _log_lines(path: Path) -> list[str]:
    """The CRI log's lines without their timestamps: ``stream tag message``."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(" ", 1)[1] if " " in line else line for line in text.splitlines()]


def exit_reasons(p: Probe) -> None:
    pull(p, "busybox")
    pod, config = run_pod(p, "exits")
    limited = cri.LinuxContainerConfig(
        resources=cri.LinuxContainerResources(
            memory_limit_in_bytes=32 << 20, memory_swap_limit_in_bytes=32 << 20
        )
    )
    cases = {
        "completed": container_config(p, "completed", ["sh", "-c", "exit 0"]),
        "error": container_config(p, "error", ["sh", "-c", "exit 3"]),
        # tail keeps a line that never ends in memory until the limit is hit.
        "oom": container_config(p, "oom", ["tail", "/dev/zero"], linux=limited),
    }
    for name, container in cases.items():
        cid = start_container(p, pod, config, container)
        try:
            wait_exited(p, cid)
        except Exception as e:  # the status call failing is recorded below
            raise Abort(f"waiting for {name} to exit: {e}") from e
        p.call(
            f"ContainerStatus({name})",
            p.rt.ContainerStatus,
            cri.ContainerStatusRequest(container_id=cid),
            repeat=True,
        )


def security_context(p: Probe) -> None:
    pull(p, "busybox")
    pod, config = run_pod(p, "security")
    sleep = ["sleep", "3600"]
    cases = {
        "read-only rootfs": (
            cri.LinuxContainerSecurityContext(readonly_rootfs=True),
            ["touch", "/x"],
        ),
        "run as user": (
            cri.LinuxContainerSecurityContext(
                run_as_user=cri.Int64Value(value=1234), run_as_group=cri.Int64Value(value=2345)
            ),
            ["id"],
        ),
        "capabilities": (
            cri.LinuxContainerSecurityContext(
                capabilities=cri.Capability(
                    add_capabilities=["SYS_TIME"], drop_capabilities=["NET_RAW", "CHOWN"]
                )
            ),
            ["grep", "^Cap", "/proc/self/status"],
        ),
        "no new privileges": (
            cri.LinuxContainerSecurityContext(no_new_privs=True),
            ["grep", "NoNewPrivs", "/proc/self/status"],
        ),
    }
    for index, (label, (context, command)) in enumerate(cases.items()):
        container = container_config(
            p, f"sec{index}", sleep, linux=cri.LinuxContainerConfig(security_context=context)
        )
        try:
            cid = start_container(p, pod, config, container)
        except Abort:
            continue
        exec_sync(p, label, cid, command)


def errors(p: Probe) -> None:
    unknown = UNKNOWN_ID
    p.call(
        "ContainerStatus(unknown)",
        p.rt.ContainerStatus,
        cri.ContainerStatusRequest(container_id=unknown),
    )
    p.call(
        "PodSandboxStatus(unknown)",
        p.rt.PodSandboxStatus,
        cri.PodSandboxStatusRequest(pod_sandbox_id=unknown),
    )
    p.call(
        "StartContainer(unknown)",
        p.rt.StartContainer,
        cri.StartContainerRequest(container_id=unknown),
    )
    p.call(
        "ExecSync(unknown)", p.rt.ExecSync, cri.ExecSyncRequest(container_id=unknown, cmd=["true"])
    )
    p.call(
        "ContainerStats(unknown)",
        p.rt.ContainerStats,
        cri.ContainerStatsRequest(container_id=unknown),
    )
    p.call(
        "ContainerStatus(empty id)",
        p.rt.ContainerStatus,
        cri.ContainerStatusRequest(container_id=""),
    )
    p.call(
        "PullImage(missing)",
        p.img.PullImage,
        cri.PullImageRequest(image=cri.ImageSpec(image=p.images["missing"])),
    )
    p.call(
        "RunPodSandbox(no metadata)",
        p.rt.RunPodSandbox,
        cri.RunPodSandboxRequest(config=cri.PodSandboxConfig(labels=_labels(p))),
    )
    p.call(
        "CreateContainer(unknown pod)",
        p.rt.CreateContainer,
        cri.CreateContainerRequest(
            pod_sandbox_id=unknown,
            config=container_config(p, "orphan", ["true"]),
            sandbox_config=pod_config(p, "orphan"),
        ),
    )
    pull(p, "busybox")
    pod, config = run_pod(p, "errors")
    missing = container_config(p, "missing-image", ["true"])
    missing.image.image = p.images["missing"]
    p.call(
        "CreateContainer(missing image)",
        p.rt.CreateContainer,
        cri.CreateContainerRequest(pod_sandbox_id=pod, config=missing, sandbox_config=config),
    )
    nameless = container_config(p, "nameless", ["true"])
    nameless.ClearField("metadata")
    p.call(
        "CreateContainer(no metadata)",
        p.rt.CreateContainer,
        cri.CreateContainerRequest(pod_sandbox_id=pod, config=nameless, sandbox_config=config),
    )
    p.call(
        "ContainerStatus(ambiguous prefix)",
        p.rt.ContainerStatus,
        cri.ContainerStatusRequest(container_id=_ambiguous_prefix(p, pod, config)),
    )
    first = container_config(p, "twice", ["sleep", "3600"])
    answer = p.call(
        "CreateContainer(twice: first)",
        p.rt.CreateContainer,
        cri.CreateContainerRequest(pod_sandbox_id=pod, config=first, sandbox_config=config),
    )
    if answer is not None:
        p.name(answer.container_id, "container:twice")
    p.call(
        "CreateContainer(twice: same name)",
        p.rt.CreateContainer,
        cri.CreateContainerRequest(pod_sandbox_id=pod, config=first, sandbox_config=config),
    )
    p.call(
        "ExecSync(timeout)",
        p.rt.ExecSync,
        cri.ExecSyncRequest(
            container_id=answer.container_id if answer else unknown, cmd=["sleep", "10"], timeout=1
        ),
    )


def _ambiguous_prefix(p: Probe, pod: str, config: cri.PodSandboxConfig) -> str:
    """One hex digit that starts the IDs of two containers in ``pod``.

    Containers are made (not started) until two IDs share their first digit:
    at most 17 on any runtime. These calls are not compared, since each side
    needs its own number of them.
    """
    by_digit: dict[str, str] = {}
    for index in range(17):
        request = cri.CreateContainerRequest(
            pod_sandbox_id=pod,
            config=container_config(p, f"prefix-{index}", ["true"]),
            sandbox_config=config,
        )
        try:
            answer = p.rt.CreateContainer(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as e:
            raise Abort(f"CreateContainer(prefix-{index}): {e.code().name}: {e.details()}") from e
        digit = answer.container_id[:1]
        if digit in by_digit:
            return digit
        by_digit[digit] = answer.container_id
    raise Abort("17 containers and no two IDs start alike: the IDs are not hexadecimal")


def idempotence(p: Probe) -> None:
    pull(p, "busybox")
    pod, config = run_pod(p, "idempotence")
    cid = start_container(p, pod, config, container_config(p, "sleeper", ["sleep", "3600"]))
    for attempt in ("first", "again"):
        p.call(
            f"StopContainer({attempt})",
            p.rt.StopContainer,
            cri.StopContainerRequest(container_id=cid, timeout=1),
        )
    for attempt in ("first", "again"):
        p.call(
            f"RemoveContainer({attempt})",
            p.rt.RemoveContainer,
            cri.RemoveContainerRequest(container_id=cid),
        )
    for attempt in ("first", "again"):
        p.call(
            f"StopPodSandbox({attempt})",
            p.rt.StopPodSandbox,
            cri.StopPodSandboxRequest(pod_sandbox_id=pod),
        )
    for attempt in ("first", "again"):
        p.call(
            f"RemovePodSandbox({attempt})",
            p.rt.RemovePodSandbox,
            cri.RemovePodSandboxRequest(pod_sandbox_id=pod),
        )
    p.call(
        "StopContainer(unknown)",
        p.rt.StopContainer,
        cri.StopContainerRequest(container_id=UNKNOWN_ID),
    )
    p.call(
        "RemoveContainer(unknown)",
        p.rt.RemoveContainer,
        cri.RemoveContainerRequest(container_id=UNKNOWN_ID),
    )
    p.call(
        "StopPodSandbox(unknown)",
        p.rt.StopPodSandbox,
        cri.StopPodSandboxRequest(pod_sandbox_id=UNKNOWN_ID),
    )
    p.call(
        "RemovePodSandbox(unknown)",
        p.rt.RemovePodSandbox,
        cri.RemovePodSandboxRequest(pod_sandbox_id=UNKNOWN_ID),
    )


def streaming(p: Probe) -> None:
    pull(p, "busybox")
    pull(p, "web")
    pod, config = run_pod(p, "streaming")
    shell = start_container(p, pod, config, container_config(p, "shell", ["sleep", "3600"]))
    start_container(p, pod, config, container_config(p, "web", [], image="web"))
    tty = p.call(
        "Exec(tty)",
        p.rt.Exec,
        cri.ExecRequest(
            container_id=shell, cmd=["sh", "-c", "tty; echo done"], tty=True, stdout=True
        ),
    )
    if tty is not None:
        p.note("exec session (tty)", exec_over_websocket(tty.url))
    forward = p.call(
        "PortForward(80)", p.rt.PortForward, cri.PortForwardRequest(pod_sandbox_id=pod, port=[80])
    )
    if forward is not None:
        p.note(
            "port-forward session (GET / on port 80)",
            http_get_through_port_forward(forward.url, 80),
        )


SCENARIOS = (
    Scenario("runtime-info", "Version, Status, RuntimeConfig, ImageFsInfo", runtime_info),
    Scenario("images", "pull, list, status by tag, digest, ID and prefix; remove", images),
    Scenario("pod-lifecycle", "a pod with two containers from run to remove", pod_lifecycle),
    Scenario("exit-reasons", "Completed, Error and OOMKilled", exit_reasons),
    Scenario("security-context", "read-only rootfs, users, capabilities", security_context),
    Scenario(
        "errors",
        "unknown IDs, an ambiguous prefix, missing image, invalid configs: their codes",
        errors,
    ),
    Scenario("idempotence", "stop and remove twice, and of unknown IDs", idempotence),
    Scenario("streaming", "exec with a tty and port-forward through the URLs", streaming),
)
NAMES = tuple(s.name for s in SCENARIOS)


def select(only: list[str], skip: list[str]) -> list[Scenario]:
    """The scenarios to run, in suite order; unknown names are a ValueError."""
    for name in (*only, *skip):
        if name not in NAMES:
            raise ValueError(f"no scenario {name!r}; the scenarios are {', '.join(NAMES)}")
    return [s for s in SCENARIOS if (not only or s.name in only) and s.name not in skip]
