"""OCI runtime specs (``config.json``) for a pod's pause process and its containers.

Pure translation: CRI configs, the image's config and facts about the pod
and the node in, a runtime-spec 1.0.2 document for runc 1.1 out. The only
I/O is reading the rootfs' user database, looking at the host paths of
mounts and devices (and, for a privileged container, the host's /dev), and
reading a Localhost seccomp profile. Each part has its module; this one puts
them together with containerd's CRI plugin as the reference, and says in
``notes`` what it had to change for this host (for the log).

The pause process: the image's Entrypoint+Cmd, a read-only rootfs,
``oomScoreAdj`` -998 and 2 CPU shares, the pod's sysctls, the pod's new
namespaces (the network one pinned by the caller). Containers join it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pycrid.adapters.errors import InvalidArgument, Unimplemented
from pycrid.adapters.node import systemdcgroup
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.oci.runtime import mounts, process
from pycrid.adapters.oci.runtime.capabilities import CapabilitySets, capability_sets
from pycrid.adapters.oci.runtime.devices import ALLOW_ALL, DENY_ALL, cri_devices
from pycrid.adapters.oci.runtime.imageconfig import ImageConfig
from pycrid.adapters.oci.runtime.namespaces import (
    container_namespaces,
    same_user_namespace,
    sandbox_namespaces,
    user_namespace,
)
from pycrid.adapters.oci.runtime.nodefacts import CONTAINER_SCOPE_PREFIX, NodeFacts
from pycrid.adapters.oci.runtime.resources import linux_resources
from pycrid.adapters.oci.runtime.seccomp import seccomp_for
from pycrid.adapters.oci.runtime.users import STRICT, ProcessUser, requested_user, resolve_user
from pycrid.api.cri import api_pb2 as cri

OCI_VERSION = "1.0.2-dev"
"""What runc 1.1 itself writes (``runc spec``)."""
SANDBOX_OOM_SCORE_ADJ = -998
SANDBOX_CPU_SHARES = 2
DEFAULT_MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/sys/devices/virtual/powercap", "/proc/scsi",
)  # fmt: skip
"""For the pause process, which the CRI gives no lists (containerd's defaults)."""
DEFAULT_READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)  # fmt: skip

# Annotations, with containerd's names, so that tools that read them work on pycrid's bundles.
CONTAINER_TYPE = "io.kubernetes.cri.container-type"
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
SANDBOX_LOG_DIRECTORY = "io.kubernetes.cri.sandbox-log-directory"
SANDBOX_IMAGE_NAME = "io.kubernetes.cri.podsandbox.image-name"
CONTAINER_NAME = "io.kubernetes.cri.container-name"
IMAGE_NAME = "io.kubernetes.cri.image-name"


@dataclass(frozen=True)
class PodFacts:
    """What the runtime set up for a pod, which its specs refer to."""

    sandbox_id: str
    netns_path: str = ""
    """The pinned network namespace; "" with host networking (or to let runc make one)."""
    pause_pid: int = 0
    """The pause process, whose namespaces containers join (0 before it runs)."""
    shm_path: str = ""
    """A tmpfs for the pod's /dev/shm; "" gives each container its own (unused with host IPC)."""
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""


@dataclass
class GeneratedSpec:
    spec: dict[str, Any]
    user: ProcessUser
    """Who the process runs as (ContainerStatus reports it)."""
    notes: list[str] = field(default_factory=list)
    """What was changed for this host, one sentence each, for the log."""


def sandbox_spec(
    config: cri.PodSandboxConfig,
    image: ImageConfig,
    *,
    rootfs: str,
    pod: PodFacts,
    node: NodeFacts,
    image_name: str = "",
) -> GeneratedSpec:
    """The spec of a pod's pause process."""
    notes: list[str] = []
    security = config.linux.security_context
    options = security.namespace_options
    userns = user_namespace(options)
    user = resolve_user(
        rootfs, requested_user(security, image.user), security.supplemental_groups, STRICT
    )
    caps = capability_sets(cri.Capability(), False, node.host.bounding_capabilities)
    spec_process = {
        "terminal": False,
        "user": user.to_oci(),
        "args": process.sandbox_args(image),
        "env": process.merge_env([f"PATH={process.DEFAULT_PATH}"], image.env),
        "cwd": process.working_dir("", image.working_dir),
        "capabilities": caps.to_oci(),
        "noNewPrivileges": True,
        "oomScoreAdj": oom_score_adj(SANDBOX_OOM_SCORE_ADJ, node.host, notes),
    }
    linux: dict[str, Any] = {
        "namespaces": sandbox_namespaces(options, pod.netns_path, userns),
        **(userns or {}),
        "resources": {"devices": [DENY_ALL], "cpu": {"shares": SANDBOX_CPU_SHARES}},
        "cgroupsPath": cgroups_path(config.linux.cgroup_parent, node, pod.sandbox_id),
        "sysctl": dict(config.linux.sysctls),
        "maskedPaths": [] if security.privileged else list(DEFAULT_MASKED_PATHS),
        "readonlyPaths": [] if security.privileged else list(DEFAULT_READONLY_PATHS),
    }
    seccomp = seccomp_for(security, caps.granted, node.arch)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": spec_process,
        "root": {"path": rootfs, "readonly": True},
        "mounts": _sandbox_mounts(config, pod, bind_sys=_bind_sys(userns, options)),
        "linux": linux,
        "annotations": _sandbox_annotations(config, pod.sandbox_id, image_name),
    }
    if options.network != cri.NODE and config.hostname:
        spec["hostname"] = config.hostname
    return GeneratedSpec(spec, user, notes)


def _sandbox_mounts(config: cri.PodSandboxConfig, pod: PodFacts, bind_sys: bool) -> list[Any]:
    extras = []
    if config.linux.security_context.namespace_options.ipc == cri.NODE:
        extras.append(mounts.shm_mount("/dev/shm", readonly=True))
    elif pod.shm_path:
        extras.append(mounts.shm_mount(pod.shm_path, readonly=True))
    if pod.resolv_conf_path:
        extras.append(
            mounts.bind(
                pod.resolv_conf_path, "/etc/resolv.conf", True, extra=mounts.NOSUID_NODEV_NOEXEC
            )
        )
    return mounts.assemble(mounts.default_mounts(bind_sys=bind_sys), extras, [])


def _sandbox_annotations(
    config: cri.PodSandboxConfig, sandbox_id: str, image_name: str
) -> dict[str, str]:
    return {
        CONTAINER_TYPE: "sandbox",
        SANDBOX_ID: sandbox_id,
        SANDBOX_NAME: config.metadata.name,
        SANDBOX_NAMESPACE: config.metadata.namespace,
        SANDBOX_UID: config.metadata.uid,
        SANDBOX_LOG_DIRECTORY: config.log_directory,
        SANDBOX_IMAGE_NAME: image_name,
    }


def container_spec(
    config: cri.ContainerConfig,
    sandbox: cri.PodSandboxConfig,
    image: ImageConfig,
    *,
    container_id: str,
    rootfs: str,
    pod: PodFacts,
    node: NodeFacts,
    image_name: str = "",
    volumes: Mapping[str, str] | None = None,
    target_pid: int = 0,
    idmapped_sources: Mapping[int, str] | None = None,
) -> GeneratedSpec:
    """The spec of an app container in a running pod.

    ``volumes`` maps each image VOLUME that needs one (``mounts.image_volumes``)
    to the empty host directory made for it; ``target_pid`` is the main
    process of the container whose PID namespace a TARGET-mode container joins;
    ``idmapped_sources`` maps the index of a CRI mount to the ID-mapped copy
    of its host path that pycrid mounted (``userns.stage_cri_mounts``).
    """
    _check_supported(config)
    notes: list[str] = []
    security = config.linux.security_context
    pod_security = sandbox.linux.security_context
    if security.privileged and not pod_security.privileged:
        raise InvalidArgument("a privileged container needs a privileged pod sandbox")
    pod_options = pod_security.namespace_options
    if not same_user_namespace(security.namespace_options, pod_options):
        raise InvalidArgument("the container's user namespace differs from its pod's")
    userns = user_namespace(pod_options)
    user = resolve_user(
        rootfs,
        requested_user(security, image.user),
        security.supplemental_groups,
        security.supplemental_groups_policy,
    )
    caps = capability_sets(
        security.capabilities, security.privileged, node.host.bounding_capabilities
    )
    if caps.withheld:
        notes.append(f"not in this host's bounding set, not granted: {', '.join(caps.withheld)}")
    spec_process = _container_process(config, sandbox, image, user, caps, node, notes)
    spec_mounts, propagation = _container_mounts(
        config,
        pod_options,
        pod,
        node,
        volumes or {},
        bind_sys=_bind_sys(userns, pod_options),
        idmapped_sources=idmapped_sources or {},
    )
    linux: dict[str, Any] = {
        "namespaces": container_namespaces(
            security.namespace_options,
            pod_options,
            pause_pid=pod.pause_pid,
            netns_path=pod.netns_path,
            target_pid=target_pid,
            userns=userns,
            cgroup_namespace=node.cgroup_v2 and not security.privileged,
        ),
        **(userns or {}),
        **_devices(config, security.privileged, node),
        "cgroupsPath": cgroups_path(sandbox.linux.cgroup_parent, node, container_id),
        "maskedPaths": [] if security.privileged else list(security.masked_paths),
        "readonlyPaths": [] if security.privileged else list(security.readonly_paths),
    }
    linux["resources"].update(linux_resources(config.linux.resources, node, notes))
    seccomp = seccomp_for(security, caps.granted, node.arch)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    if propagation:
        linux["rootfsPropagation"] = propagation
    spec = {
        "ociVersion": OCI_VERSION,
        "process": spec_process,
        "root": {"path": rootfs, "readonly": security.readonly_rootfs},
        "mounts": spec_mounts,
        "linux": linux,
        "annotations": {
            CONTAINER_TYPE: "container",
            SANDBOX_ID: pod.sandbox_id,
            SANDBOX_NAME: sandbox.metadata.name,
            SANDBOX_NAMESPACE: sandbox.metadata.namespace,
            SANDBOX_UID: sandbox.metadata.uid,
            CONTAINER_NAME: config.metadata.name,
            IMAGE_NAME: image_name or config.image.user_specified_image or config.image.image,
        },
    }
    return GeneratedSpec(spec, user, notes)


def _check_supported(config: cri.ContainerConfig) -> None:
    if config.HasField("windows"):
        raise InvalidArgument("a Windows container config cannot run on Linux")
    if config.CDI_devices:
        raise Unimplemented("CDI devices are not supported by the oci adapter")


def _container_process(
    config: cri.ContainerConfig,
    sandbox: cri.PodSandboxConfig,
    image: ImageConfig,
    user: ProcessUser,
    caps: CapabilitySets,
    node: NodeFacts,
    notes: list[str],
) -> dict[str, Any]:
    security = config.linux.security_context
    spec_process: dict[str, Any] = {
        "terminal": config.tty,
        "user": user.to_oci(),
        "args": process.container_args(config, image),
        "env": process.container_env(config, image, sandbox.hostname or node.hostname, user.home),
        "cwd": process.working_dir(config.working_dir, image.working_dir),
        "capabilities": caps.to_oci(),
        "noNewPrivileges": security.no_new_privs,
        "oomScoreAdj": oom_score_adj(config.linux.resources.oom_score_adj, node.host, notes),
    }
    profile = apparmor_profile(security, node.host.apparmor, notes)
    if profile:
        spec_process["apparmorProfile"] = profile
    return spec_process


def _container_mounts(
    config: cri.ContainerConfig,
    pod_options: cri.NamespaceOption,
    pod: PodFacts,
    node: NodeFacts,
    volumes: Mapping[str, str],
    bind_sys: bool,
    idmapped_sources: Mapping[int, str],
) -> tuple[list[Any], str]:
    """The mounts and the rootfs propagation they need."""
    security = config.linux.security_context
    readonly = security.readonly_rootfs
    extras = [
        mounts.bind(source, destination, readonly)
        for source, destination in (
            (pod.hostname_path, "/etc/hostname"),
            (pod.hosts_path, "/etc/hosts"),
            (pod.resolv_conf_path, "/etc/resolv.conf"),
        )
        if source
    ]
    if pod_options.ipc == cri.NODE:
        extras.append(mounts.shm_mount("/dev/shm"))
    elif pod.shm_path:
        extras.append(mounts.shm_mount(pod.shm_path))
    extras += mounts.volume_mounts(volumes)
    translated = [
        mounts.cri_mount(m, node.recursive_read_only, idmapped_sources.get(number, ""))
        for number, m in enumerate(config.mounts)
    ]
    spec_mounts = mounts.assemble(
        mounts.default_mounts(security.privileged, bind_sys),
        extras,
        [m for m, _ in translated],
    )
    return spec_mounts, mounts.rootfs_propagation(p for _, p in translated)


def _devices(config: cri.ContainerConfig, privileged: bool, node: NodeFacts) -> dict[str, Any]:
    """``linux.devices`` and ``linux.resources.devices``."""
    nodes, rules = cri_devices(list(config.devices))
    if not privileged:
        return {"devices": nodes, "resources": {"devices": [DENY_ALL, *rules]}}
    requested = {n["path"] for n in nodes}
    host = [n for n in node.list_host_devices() if n["path"] not in requested]
    return {"devices": host + nodes, "resources": {"devices": [ALLOW_ALL]}}


def _bind_sys(userns: dict[str, Any] | None, pod_options: cri.NamespaceOption) -> bool:
    """A user namespace without a network namespace of its own may not mount sysfs."""
    return userns is not None and pod_options.network == cri.NODE


def cgroups_path(parent: str, node: NodeFacts, container_id: str) -> str:
    """``<parent>/<id>`` for runc's cgroupfs driver, always absolute; the CRI's
    parent, else the node's default one. Under the systemd driver:
    ``<slice>:pycrid:<id>``, the container's scope in the pod's slice."""
    if node.systemd_cgroups:
        return systemdcgroup.runc_cgroups_path(
            parent, node.cgroup_parent, CONTAINER_SCOPE_PREFIX, container_id
        )
    parent = parent or node.cgroup_parent
    if ".." in parent.split("/"):
        raise InvalidArgument(f"cgroup parent {parent[:64]!r} has '..'")
    return posixpath.join(posixpath.normpath("/" + parent.lstrip("/")), container_id)


def oom_score_adj(value: int, host: HostFacts, notes: list[str]) -> int:
    """``value``, raised to 0 where runc cannot lower it (no CAP_SYS_RESOURCE)."""
    if not -1000 <= value <= 1000:
        raise InvalidArgument(f"oom_score_adj {value} is not between -1000 and 1000")
    if value < 0 and not host.negative_oom_score_adj:
        notes.append(
            f"oom_score_adj {value} raised to 0: CAP_SYS_RESOURCE is not in the bounding set"
        )
        return 0
    return value


def apparmor_profile(
    security: cri.LinuxContainerSecurityContext, host_apparmor: bool, notes: list[str]
) -> str:
    """``process.apparmorProfile``: a Localhost profile's name, "unconfined", or ""."""
    if not host_apparmor or security.privileged:
        return ""
    if security.HasField("apparmor"):
        kind, name = security.apparmor.profile_type, security.apparmor.localhost_ref
    elif security.apparmor_profile.startswith("localhost/"):
        kind, name = cri.SecurityProfile.Localhost, security.apparmor_profile
    elif security.apparmor_profile == "unconfined":
        kind, name = cri.SecurityProfile.Unconfined, ""
    else:
        kind, name = cri.SecurityProfile.RuntimeDefault, ""
    if kind == cri.SecurityProfile.Localhost:
        return name.removeprefix("localhost/")
    if kind == cri.SecurityProfile.Unconfined:
        return "unconfined"
    notes.append("pycrid has no default AppArmor profile: the container runs unconfined")
    return ""
