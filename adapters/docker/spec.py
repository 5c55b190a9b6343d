"""CRI configs translated into Docker's container create bodies.

Pure functions: a CRI message in, the JSON body of ``POST /containers/create``
(or ``POST /containers/{id}/update``) out, with Docker API field names. Host
facts that change the translation (is AppArmor on, may oom_score_adj go
negative) come in as a ``HostFacts`` value, so the functions test without a
host.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from pycrid.adapters.errors import InvalidArgument, Unimplemented
from pycrid.adapters.node import clientfile, systemdcgroup
from pycrid.adapters.node.hostfacts import CAPABILITY_NAMES, HostFacts
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker")

LOG_CONFIG = {"Type": "json-file", "Config": {"max-size": "16m", "max-file": "2"}}
"""Docker keeps a bounded JSON log that pycrid's copier reads and turns into the CRI log."""

NO_HEALTHCHECK = {"Test": ["NONE"]}
PROPAGATION = {
    cri.PROPAGATION_PRIVATE: "rprivate",
    cri.PROPAGATION_HOST_TO_CONTAINER: "rslave",
    cri.PROPAGATION_BIDIRECTIONAL: "rshared",
}
PROTOCOLS = {cri.TCP: "tcp", cri.UDP: "udp", cri.SCTP: "sctp"}
SECCOMP_UNCONFINED = "seccomp=unconfined"
MAX_SECCOMP_PROFILE_BYTES = clientfile.MIB  # as the oci adapter
DOCKER_20_LAST_CAP = 37  # CAP_AUDIT_READ


def describe_limits(host: HostFacts) -> list[str]:
    """What this host withholds from containers, one sentence each, for the log."""
    limits = []
    if host.bounding_capabilities is not None:
        known = CAPABILITY_NAMES[: DOCKER_20_LAST_CAP + 1]
        missing = sorted(f"CAP_{n}" for n in known if f"CAP_{n}" not in host.bounding_capabilities)
        limits.append(
            f"the capability bounding set lacks {', '.join(missing)}: "
            "privileged containers and ALL get every other capability"
        )
    if not host.negative_oom_score_adj:
        limits.append("without CAP_SYS_RESOURCE, negative oom_score_adj values are raised to 0")
    return limits


def privileged_host_config(host: HostFacts) -> dict[str, Any]:
    """HostConfig fields that make a container privileged on this host.

    Docker's own privileged mode where it works; elsewhere the same minus the
    capabilities the bounding set lacks and the host's devices: every held
    capability, no seccomp or AppArmor confinement, no masked or read-only
    paths, and access to every device node the container creates.
    """
    if host.bounding_capabilities is None:
        return {"Privileged": True}
    return {
        "Privileged": False,
        "CapAdd": sorted(host.bounding_capabilities),
        "CapDrop": [],
        "SecurityOpt": [SECCOMP_UNCONFINED] + (["apparmor=unconfined"] if host.apparmor else []),
        "MaskedPaths": [],
        "ReadonlyPaths": [],
        "DeviceCgroupRules": ["a *:* rwm"],
    }


def added_capabilities(names: list[str], host: HostFacts) -> list[str]:
    """Docker's CapAdd for the CRI's list, with ``ALL`` limited to what the host holds."""
    if host.bounding_capabilities is not None and any(n.upper() == "ALL" for n in names):
        return sorted(host.bounding_capabilities)
    return list(names)


@dataclass
class SandboxPlan:
    """How the pause container of one pod is created."""

    image: str
    name: str
    labels: dict[str, str]
    network_mode: str
    """"none" (CNI sets the network up), "bridge" (Docker's) or "host"."""
    runtime: str = ""
    publish_ports: bool = False
    extra_host_config: dict[str, Any] = field(default_factory=dict)
    host: HostFacts = field(default_factory=HostFacts)
    systemd_cgroups: bool = False
    """dockerd uses the systemd cgroup driver (``docker info``'s CgroupDriver)."""


def sandbox_create_body(config: cri.PodSandboxConfig, plan: SandboxPlan) -> dict[str, Any]:
    """The create body of a pod's pause container."""
    linux = config.linux
    security = linux.security_context
    namespaces = security.namespace_options
    refuse_user_namespace(namespaces)
    host_config: dict[str, Any] = {
        "NetworkMode": plan.network_mode,
        "IpcMode": "host" if namespaces.ipc == cri.NODE else "shareable",
        "RestartPolicy": {"Name": "no"},
        "LogConfig": LOG_CONFIG,
        "ReadonlyRootfs": security.readonly_rootfs,
        "SecurityOpt": [SECCOMP_UNCONFINED],
    }
    if security.privileged:
        host_config.update(privileged_host_config(plan.host))
    if namespaces.pid == cri.NODE:
        host_config["PidMode"] = "host"
    if linux.cgroup_parent:
        host_config["CgroupParent"] = docker_cgroup_parent(
            linux.cgroup_parent, plan.systemd_cgroups
        )
    if linux.sysctls:
        host_config["Sysctls"] = dict(linux.sysctls)
    if plan.runtime:
        host_config["Runtime"] = plan.runtime
    body: dict[str, Any] = {
        "Image": plan.image,
        "Labels": plan.labels,
        "Healthcheck": NO_HEALTHCHECK,
    }
    if config.hostname and plan.network_mode != "host":
        body["Hostname"] = config.hostname
    if plan.publish_ports:
        exposed, bindings = port_bindings(config.port_mappings)
        if exposed:
            body["ExposedPorts"] = exposed
            host_config["PortBindings"] = bindings
    host_config.update(plan.extra_host_config)
    body["HostConfig"] = host_config
    return body


def port_bindings(
    mappings: list[cri.PortMapping],
) -> tuple[dict[str, dict], dict[str, list[dict[str, str]]]]:
    """Docker's ExposedPorts and PortBindings for the pod's port mappings."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for mapping in mappings:
        if not 0 < mapping.container_port <= 65535:
            raise InvalidArgument(f"container port {mapping.container_port} is out of range")
        if not 0 <= mapping.host_port <= 65535:
            raise InvalidArgument(f"host port {mapping.host_port} is out of range")
        key = f"{mapping.container_port}/{PROTOCOLS.get(mapping.protocol, 'tcp')}"
        exposed[key] = {}
        if mapping.host_port:
            bindings.setdefault(key, []).append(
                {"HostIp": mapping.host_ip, "HostPort": str(mapping.host_port)}
            )
    return exposed, bindings


def docker_cgroup_parent(cgroup_parent: str, systemd: bool) -> str:
    """The CRI's cgroup parent as dockerd's cgroup driver takes it.

    Docker's systemd driver wants a slice's unit name and refuses a path; kubelet
    gives the slice's full path (``/kubepods.slice/.../kubepods-besteffort-pod<uid>.slice``),
    so only its last component is passed, as cri-dockerd does. The container then
    runs in ``docker-<id>.scope`` inside that slice.
    """
    if not systemd:
        return cgroup_parent
    return systemdcgroup.slice_name(cgroup_parent, systemdcgroup.ROOT_SLICE)


def resolv_conf(dns: cri.DNSConfig) -> str:
    """The text of a resolv.conf for the pod's DNS config."""
    lines = [f"nameserver {server}" for server in dns.servers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def wants_own_resolv_conf(config: cri.PodSandboxConfig) -> bool:
    dns = config.dns_config
    return bool(dns.servers or dns.searches or dns.options)


@dataclass
class ContainerPlan:
    """Facts the container translation needs beyond the CRI config."""

    image_id: str
    name: str
    labels: dict[str, str]
    sandbox_id: str
    sandbox_config: cri.PodSandboxConfig
    runtime: str = ""
    resolv_conf_path: str = ""
    pid_target_id: str = ""
    """The full ID of the container whose PID namespace a TARGET-mode container joins."""
    host: HostFacts = field(default_factory=HostFacts)
    systemd_cgroups: bool = False


def container_create_body(config: cri.ContainerConfig, plan: ContainerPlan) -> dict[str, Any]:
    """The create body of an app container in a pod."""
    if config.CDI_devices:
        raise Unimplemented("CDI devices are not supported by the docker adapter")
    if config.HasField("windows"):
        raise InvalidArgument("windows container config is not supported on Linux")
    linux = config.linux
    security = linux.security_context
    sandbox_security = plan.sandbox_config.linux.security_context
    if security.privileged and not sandbox_security.privileged:
        raise InvalidArgument("a privileged container needs a privileged pod sandbox")
    body: dict[str, Any] = {
        "Image": plan.image_id,
        "Labels": plan.labels,
        "Env": [environment_entry(kv) for kv in config.envs],
        "Tty": config.tty,
        "OpenStdin": config.stdin,
        "StdinOnce": config.stdin and config.stdin_once,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Healthcheck": NO_HEALTHCHECK,
    }
    if config.command:
        body["Entrypoint"] = list(config.command)
    if config.args:
        body["Cmd"] = list(config.args)
    if config.working_dir:
        body["WorkingDir"] = config.working_dir
    user = container_user(security)
    if user:
        body["User"] = user
    if config.stop_signal != cri.RUNTIME_DEFAULT:
        body["StopSignal"] = cri.Signal.Name(config.stop_signal)

    host_config: dict[str, Any] = {
        "RestartPolicy": {"Name": "no"},
        "LogConfig": LOG_CONFIG,
        "Mounts": mounts(config.mounts, plan.resolv_conf_path),
        "Devices": devices(config.devices),
        "ReadonlyRootfs": security.readonly_rootfs,
        "SecurityOpt": security_options(security, plan.host),
    }
    host_config.update(namespace_modes(security.namespace_options, plan))
    host_config.update(resources(linux.resources, plan.host))
    if security.capabilities.add_capabilities:
        host_config["CapAdd"] = added_capabilities(
            list(security.capabilities.add_capabilities), plan.host
        )
    if security.capabilities.drop_capabilities:
        host_config["CapDrop"] = list(security.capabilities.drop_capabilities)
    if security.supplemental_groups:
        host_config["GroupAdd"] = [str(g) for g in security.supplemental_groups]
    if security.masked_paths:
        host_config["MaskedPaths"] = list(security.masked_paths)
    if security.readonly_paths:
        host_config["ReadonlyPaths"] = list(security.readonly_paths)
    if security.privileged:
        host_config.update(privileged_host_config(plan.host))
    cgroup_parent = plan.sandbox_config.linux.cgroup_parent
    if cgroup_parent:
        host_config["CgroupParent"] = docker_cgroup_parent(cgroup_parent, plan.systemd_cgroups)
    if plan.runtime:
        host_config["Runtime"] = plan.runtime
    body["HostConfig"] = host_config
    return body


def environment_entry(kv: cri.KeyValue) -> str:
    """``KEY=value``; the CRI carries values as bytes, Docker's API as text."""
    value = kv.value.decode(errors="replace") if isinstance(kv.value, bytes) else kv.value
    return f"{kv.key}={value}"


def container_user(security: cri.LinuxContainerSecurityContext) -> str:
    """Docker's ``User``: ``uid[:gid]`` or ``name[:gid]``."""
    if security.HasField("run_as_user"):
        user = str(security.run_as_user.value)
    elif security.run_as_username:
        user = security.run_as_username
    else:
        user = ""
    if security.HasField("run_as_group"):
        if not user:
            raise InvalidArgument("run_as_group needs run_as_user or run_as_username")
        user += f":{security.run_as_group.value}"
    return user


def namespace_modes(options: cri.NamespaceOption, plan: ContainerPlan) -> dict[str, str]:
    """Network and IPC joined from the pause container; PID as the options say."""
    pod_options = plan.sandbox_config.linux.security_context.namespace_options
    sandbox = f"container:{plan.sandbox_id}"
    modes = {
        "NetworkMode": sandbox,
        "IpcMode": "host" if pod_options.ipc == cri.NODE else sandbox,
    }
    if pod_options.network == cri.NODE:
        modes["UTSMode"] = "host"
    if options.pid == cri.POD:
        modes["PidMode"] = "host" if pod_options.pid == cri.NODE else sandbox
    elif options.pid == cri.NODE:
        modes["PidMode"] = "host"
    elif options.pid == cri.TARGET:
        if not plan.pid_target_id:
            raise InvalidArgument("PID namespace mode TARGET needs a target_id")
        modes["PidMode"] = f"container:{plan.pid_target_id}"
    refuse_user_namespace(options)
    return modes


def refuse_user_namespace(options: cri.NamespaceOption) -> None:
    """Docker runs every container in the node's user namespace; any other mode,
    whatever its mappings, is UNIMPLEMENTED (the pod's and each container's)."""
    if options.HasField("userns_options") and options.userns_options.mode != cri.NODE:
        raise Unimplemented(
            "user namespaces other than NODE are not supported by the docker adapter"
        )


def mounts(cri_mounts: list[cri.Mount], resolv_conf_path: str = "") -> list[dict[str, Any]]:
    """Docker bind mounts; host paths must exist and have their symlinks resolved."""
    result = []
    targets = set()
    for mount in cri_mounts:
        if mount.HasField("image") and mount.image.image:
            raise Unimplemented("image volumes are not supported by the docker adapter")
        if mount.recursive_read_only:
            raise InvalidArgument("recursive read-only mounts are not supported by this Docker")
        if mount.uidMappings or mount.gidMappings:
            raise Unimplemented("ID-mapped mounts are not supported by the docker adapter")
        if not mount.host_path:
            raise InvalidArgument(f"mount at {mount.container_path} has no host_path")
        if not os.path.exists(mount.host_path):
            raise InvalidArgument(f"mount source {mount.host_path} does not exist")
        entry: dict[str, Any] = {
            "Type": "bind",
            "Source": os.path.realpath(mount.host_path),
            "Target": mount.container_path,
            "ReadOnly": mount.readonly,
            "BindOptions": {"Propagation": PROPAGATION.get(mount.propagation, "rprivate")},
        }
        result.append(entry)
        targets.add(os.path.normpath(mount.container_path))
    if resolv_conf_path and "/etc/resolv.conf" not in targets:
        result.append(
            {
                "Type": "bind",
                "Source": resolv_conf_path,
                "Target": "/etc/resolv.conf",
                "ReadOnly": False,
            }
        )
    return result


def devices(cri_devices: list[cri.Device]) -> list[dict[str, str]]:
    return [
        {
            "PathOnHost": d.host_path,
            "PathInContainer": d.container_path or d.host_path,
            "CgroupPermissions": d.permissions or "rwm",
        }
        for d in cri_devices
    ]


def security_options(security: cri.LinuxContainerSecurityContext, host: HostFacts) -> list[str]:
    options = []
    seccomp = seccomp_option(security)
    if seccomp:
        options.append(seccomp)
    apparmor = apparmor_option(security, host)
    if apparmor:
        options.append(apparmor)
    if security.no_new_privs:
        options.append("no-new-privileges")
    return options


def _profile(
    message: cri.LinuxContainerSecurityContext, name: str, legacy_path: str
) -> tuple[str, str]:
    """(type, localhost path) of a security profile, from the field or its deprecated form.

    type is one of "", "runtime/default", "unconfined", "localhost".
    """
    if message.HasField(name):
        profile = getattr(message, name)
        if profile.profile_type == cri.SecurityProfile.RuntimeDefault:
            return "runtime/default", ""
        if profile.profile_type == cri.SecurityProfile.Unconfined:
            return "unconfined", ""
        return "localhost", profile.localhost_ref
    if legacy_path in ("runtime/default", "docker/default"):
        return "runtime/default", ""
    if legacy_path == "unconfined":
        return "unconfined", ""
    if legacy_path.startswith("localhost/"):
        return "localhost", legacy_path.removeprefix("localhost/")
    if legacy_path:
        raise InvalidArgument(f"unknown security profile {legacy_path!r}")
    return "", ""


def seccomp_option(security: cri.LinuxContainerSecurityContext) -> str:
    """Docker's seccomp option; an unset profile is unconfined, as the CRI defines it."""
    kind, path = _profile(security, "seccomp", security.seccomp_profile_path)
    if kind == "runtime/default":
        return ""  # Docker's own default profile
    if kind == "localhost":
        return "seccomp=" + _read_seccomp_profile(path)
    return SECCOMP_UNCONFINED


def _read_seccomp_profile(path: str) -> str:
    what = f"seccomp profile {path[:64]!r}"
    data = clientfile.read_regular(path, MAX_SECCOMP_PROFILE_BYTES, what)
    try:
        profile = json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"{what} is not JSON: {e}") from None
    return json.dumps(profile, separators=(",", ":"))


def apparmor_option(security: cri.LinuxContainerSecurityContext, host: HostFacts) -> str:
    """Docker's apparmor option; nothing on hosts without AppArmor."""
    kind, name = _profile(security, "apparmor", security.apparmor_profile)
    if not host.apparmor or not kind:
        if kind and kind != "unconfined":
            log.debug("AppArmor is not enabled on this host: profile %s ignored", kind)
        return ""
    if kind == "runtime/default":
        return ""
    if kind == "unconfined":
        return "apparmor=unconfined"
    return f"apparmor={name}"


RESOURCE_FIELDS = (
    ("cpu_shares", "CpuShares"),
    ("cpu_period", "CpuPeriod"),
    ("cpu_quota", "CpuQuota"),
    ("cpuset_cpus", "CpusetCpus"),
    ("cpuset_mems", "CpusetMems"),
)
"""CRI resource fields that Docker takes as they are, and Docker's names for them."""


def resources(res: cri.LinuxContainerResources, host: HostFacts) -> dict[str, Any]:
    """Docker's resource fields for the CRI's Linux resources (create and update)."""
    fields: dict[str, Any] = {
        docker_name: getattr(res, cri_name)
        for cri_name, docker_name in RESOURCE_FIELDS
        if getattr(res, cri_name)
    }
    if res.memory_limit_in_bytes:
        fields["Memory"] = res.memory_limit_in_bytes
        fields["MemorySwap"] = res.memory_swap_limit_in_bytes or res.memory_limit_in_bytes
    if res.oom_score_adj:
        fields["OomScoreAdj"] = oom_score_adj(res.oom_score_adj, host)
    if any(limit.limit for limit in res.hugepage_limits):
        log.debug("hugepage limits are not supported by Docker's API; ignored")
    return fields


def oom_score_adj(value: int, host: HostFacts) -> int:
    if value < 0 and not host.negative_oom_score_adj:
        log.info(
            "oom_score_adj %d clamped to 0: CAP_SYS_RESOURCE is not in this host's bounding set",
            value,
        )
        return 0
    return value


def update_body(res: cri.LinuxContainerResources, host: HostFacts) -> dict[str, Any]:
    """The body of ``POST /containers/{id}/update``; Docker cannot change oom_score_adj live."""
    fields = resources(res, host)
    fields.pop("OomScoreAdj", None)
    return fields
