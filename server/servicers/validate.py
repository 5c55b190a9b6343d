"""Request checks, once for every adapter, before anything is created.

A request that fails here never reaches an adapter, so it cannot leave a
container, a namespace or a file behind, and the client gets
INVALID_ARGUMENT with a short message. Messages quote at most a bounded
prefix of what was sent (``shown``): a 1 MiB name must not come back as a
1 MiB error.

Two checks walk every message whole: no string field may hold a NUL byte
(the kernel, Docker and runc all cut or refuse such strings) and every enum
field must hold a value the schema names (protobuf keeps unknown numbers).
The rest are per message type: what the CRI and the kernel accept.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pycrid.adapters.config import LimitsConfig
from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node import hostresources
from pycrid.adapters.node.imageref import parse_reference
from pycrid.adapters.node.programs import check_program
from pycrid.api.cri import api_pb2 as cri

SHOWN = 64
"""How many characters of a rejected value an error message quotes."""

MAX_STRING = 16 * 1024
"""Longest string accepted in a field not listed in LONG_FIELDS."""
MAX_LONG_STRING = 128 * 1024
"""Longest argument or environment entry (the kernel's MAX_ARG_STRLEN)."""
LONG_FIELDS = frozenset({"command", "args", "cmd", "value", "annotations"})
MAX_PATH = 4096
MAX_NAME = 253
MAX_ID = 128
MAX_HOSTNAME = 64
MAX_UID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel
MAX_TIMEOUT = 2**31 - 1
MAX_CPU_PERIOD = 1_000_000  # microseconds, the kernel's limit
MIN_CPU_QUOTA = 1000
MAX_CPU_SHARES = 262_144
MAX_BYTES = 2**62
MAX_CPU_QUOTA = hostresources.MAX_CPU_QUOTA
MIN_MEMORY = hostresources.MIN_MEMORY

HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SYSCTL = re.compile(r"^[a-z0-9_]+([./][a-z0-9_-]+)+$")
ENV_NAME = re.compile(r"^[^=]+$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Sysctls in namespaces a pod owns (as kubelet and the runtimes accept them);
# net.* only where the pod has its own network namespace.
NAMESPACED_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.domainname",
        "kernel.hostname",
    }
)
NAMESPACED_SYSCTL_PREFIXES = ("fs.mqueue.",)
NETWORK_SYSCTL_PREFIX = "net."
PROC_MOUNTS_ALLOWED = frozenset(
    {
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
        "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid",
    }
)
"""What runc lets a mount cover in /proc (its checkProcMount)."""
UTS_SYSCTLS = frozenset({"kernel.domainname", "kernel.hostname"})
# The IPC namespace's sysctls take numbers (kernel.sem four of them).
NUMBERS = re.compile(r"^\s*-?\d+(\s+-?\d+)*\s*$")


def shown(value: object) -> str:
    """``value`` quoted for an error message, cut to SHOWN characters."""
    text = str(value)
    return repr(text if len(text) <= SHOWN else text[:SHOWN] + "...")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgument(message)


# Limits on counts and sizes: checked first, before any walk of the message.

DEFAULT_LIMITS = LimitsConfig()


def _count(count: int, limit: int, what: str, key: str) -> None:
    require(
        count <= limit,
        f"{what} has {count} entries, more than the limit of {limit} (limits.{key})",
    )


def sandbox_limits(config: cri.PodSandboxConfig, limits: LimitsConfig) -> None:
    _count(
        len(config.port_mappings), limits.max_port_mappings, "port_mappings", "max_port_mappings"
    )


def container_limits(config: cri.ContainerConfig, limits: LimitsConfig) -> None:
    _count(len(config.envs), limits.max_env_vars, "envs", "max_env_vars")
    _count(len(config.mounts), limits.max_mounts, "mounts", "max_mounts")
    _count(len(config.devices), limits.max_devices, "devices", "max_devices")
    size = sum(len(env.key) + len(env.value) + 2 for env in config.envs)  # "=" and NUL
    require(
        size <= limits.max_env_bytes,
        f"envs total {size} bytes, more than the limit of {limits.max_env_bytes} "
        "(limits.max_env_bytes)",
    )


# Whole-message checks.


def message(msg: Message, where: str = "") -> None:
    """No NUL in any string and no unknown enum number, anywhere in ``msg``."""
    for field, value in msg.ListFields():
        path = f"{where}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                _scalar(field, key, f"{path}[{shown(key)}] key", key_of_map=True)
                if value_field.message_type is not None:
                    message(item, f"{path}[{shown(key)}].")
                else:
                    _scalar(value_field, item, f"{path}[{shown(key)}]", map_field=field)
            continue
        repeated = field.is_repeated
        for index, item in enumerate(value if repeated else [value]):
            item_path = f"{path}[{index}]" if repeated else path
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                message(item, item_path + ".")
            else:
                _scalar(field, item, item_path)


def _scalar(
    field: FieldDescriptor,
    value: object,
    path: str,
    key_of_map: bool = False,
    map_field: FieldDescriptor | None = None,
) -> None:
    if isinstance(value, str | bytes):
        has_nul = "\x00" in value if isinstance(value, str) else b"\x00" in value
        require(not has_nul, f"{path} must not contain a NUL byte")
        name = (map_field or field).name
        limit = MAX_LONG_STRING if name in LONG_FIELDS and not key_of_map else MAX_STRING
        require(len(value) <= limit, f"{path} is longer than {limit} characters")
    elif field.type == FieldDescriptor.TYPE_ENUM and not key_of_map:
        known = field.enum_type.values_by_number
        require(value in known, f"{path} has no value numbered {value}")


# Identifiers and names.


def object_id(value: str, what: str) -> None:
    """A sandbox or container ID (or a prefix of one)."""
    require(len(value) <= MAX_ID, f"{what} ID {shown(value)} is too long")
    require("\x00" not in value, f"{what} ID {shown(value)} must not contain a NUL byte")


def name(value: str, what: str, limit: int = MAX_NAME) -> None:
    require(bool(value), f"{what} must not be empty")
    require(len(value) <= limit, f"{what} {shown(value)} is longer than {limit} characters")
    require(not CONTROL.search(value), f"{what} {shown(value)} contains a control character")
    require("/" not in value, f"{what} {shown(value)} must not contain '/'")


def path_lengths(value: str, what: str) -> None:
    """What the kernel takes as a path: PATH_MAX bytes, NAME_MAX per component."""
    require(len(value.encode()) <= MAX_PATH, f"{what} is longer than {MAX_PATH} bytes")
    require(
        all(len(part.encode()) <= 255 for part in value.split("/")),
        f"{what} {shown(value)} has a component longer than 255 bytes",
    )


def absolute_path(value: str, what: str) -> None:
    require(os.path.isabs(value), f"{what} {shown(value)} must be an absolute path")
    path_lengths(value, what)


def relative_log_path(value: str) -> None:
    """A container's log path: relative, inside the pod's log directory."""
    require(not os.path.isabs(value), f"log_path {shown(value)} must be relative")
    require(len(value.encode()) <= MAX_PATH, f"log_path is longer than {MAX_PATH} bytes")
    parts = value.split("/")
    require(
        ".." not in parts and os.path.normpath(value) not in (".", ""),
        f"log_path {shown(value)} must name a file inside the pod's log directory",
    )
    require(not value.endswith("/"), f"log_path {shown(value)} must name a file")


def hostname(value: str) -> None:
    require(
        len(value) <= MAX_HOSTNAME and bool(HOSTNAME.match(value)),
        f"hostname {shown(value)} is not an RFC 1123 name of at most {MAX_HOSTNAME} characters",
    )


def uid(value: int, what: str) -> None:
    require(0 <= value <= MAX_UID, f"{what} {value} is not within 0..{MAX_UID}")


# Parts of configs.


def port_mappings(mappings: Iterable[cri.PortMapping]) -> None:
    seen: set[tuple[int, int, str]] = set()
    for mapping in mappings:
        require(
            1 <= mapping.container_port <= 65535,
            f"container port {mapping.container_port} is not within 1..65535",
        )
        require(
            0 <= mapping.host_port <= 65535,
            f"host port {mapping.host_port} is not within 0..65535 (0: none)",
        )
        if mapping.host_ip:
            ip_address(mapping.host_ip, "host_ip")
        if mapping.host_port:
            key = (mapping.host_port, mapping.protocol, mapping.host_ip)
            require(key not in seen, f"host port {mapping.host_port} is mapped twice")
            seen.add(key)


def ip_address(value: str, what: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgument(f"{what} {shown(value)} is not an IP address") from None


def dns_config(dns: cri.DNSConfig) -> None:
    for server in dns.servers:
        ip_address(server, "DNS server")
    for search in dns.searches:
        require(
            bool(search) and len(search) <= MAX_NAME and not re.search(r"[\s\x00-\x1f]", search),
            f"DNS search domain {shown(search)} is not a domain name",
        )
    for option in dns.options:
        require(
            bool(option) and not re.search(r"[\s\x00-\x1f]", option),
            f"DNS option {shown(option)} must be one word without control characters",
        )


def sysctls(values: dict[str, str], host_network: bool, host_ipc: bool = False) -> None:
    for key, value in values.items():
        normalized = key.replace("/", ".")
        require(bool(SYSCTL.match(key)), f"sysctl {shown(key)} is not a sysctl name")
        if normalized.startswith(NETWORK_SYSCTL_PREFIX):
            require(
                not host_network,
                f"sysctl {shown(key)} would change the host's network: "
                "the pod uses the host network",
            )
        else:
            require(
                normalized in NAMESPACED_SYSCTLS
                or normalized.startswith(NAMESPACED_SYSCTL_PREFIXES),
                f"sysctl {shown(key)} is not namespaced: it would change the whole host",
            )
            if normalized not in UTS_SYSCTLS:
                require(
                    not host_ipc,
                    f"sysctl {shown(key)} would change the host's IPC limits: "
                    "the pod uses the host IPC namespace",
                )
                require(
                    bool(NUMBERS.match(value)),
                    f"sysctl {shown(key)} value {shown(value)} is not a number",
                )
        require(
            hostresources.sysctl_exists(normalized),
            f"sysctl {shown(key)} does not exist on this node",
        )
        require(
            len(value) <= 4096 and not CONTROL.search(value.replace("\t", " ")),
            f"sysctl {shown(key)} has a value that is too long or has control characters",
        )


def resources(res: cri.LinuxContainerResources, what: str = "resources") -> None:
    require(res.cpu_period >= 0, f"{what}.cpu_period must not be negative")
    require(
        res.cpu_period == 0 or 1000 <= res.cpu_period <= MAX_CPU_PERIOD,
        f"{what}.cpu_period {res.cpu_period} is not within 1000..{MAX_CPU_PERIOD} microseconds",
    )
    require(
        res.cpu_quota in (0, -1) or MIN_CPU_QUOTA <= res.cpu_quota <= MAX_CPU_QUOTA,
        f"{what}.cpu_quota {res.cpu_quota} is not -1, 0 or within "
        f"{MIN_CPU_QUOTA}..{MAX_CPU_QUOTA} microseconds (the kernel's limit)",
    )
    require(
        0 <= res.cpu_shares <= MAX_CPU_SHARES,
        f"{what}.cpu_shares {res.cpu_shares} is not within 0..{MAX_CPU_SHARES}",
    )
    for field in ("memory_limit_in_bytes", "memory_swap_limit_in_bytes"):
        value = getattr(res, field)
        require(
            -1 <= value <= MAX_BYTES,
            f"{what}.{field} {value} is not -1, 0 or a size up to 2^62",
        )
    require(
        res.memory_swap_limit_in_bytes <= 0
        or 0 < res.memory_limit_in_bytes <= res.memory_swap_limit_in_bytes,
        f"{what}.memory_swap_limit_in_bytes {res.memory_swap_limit_in_bytes} needs a "
        f"memory_limit_in_bytes no larger than it (memory plus swap includes the memory)",
    )
    require(
        res.memory_limit_in_bytes <= 0 or res.memory_limit_in_bytes >= MIN_MEMORY,
        f"{what}.memory_limit_in_bytes {res.memory_limit_in_bytes} is below the minimum "
        f"of {MIN_MEMORY} bytes (6 MiB)",
    )
    require(
        -1000 <= res.oom_score_adj <= 1000,
        f"{what}.oom_score_adj {res.oom_score_adj} is not within -1000..1000",
    )
    cpuset(res.cpuset_cpus, f"{what}.cpuset_cpus", "CPU", hostresources.online_cpus)
    cpuset(res.cpuset_mems, f"{what}.cpuset_mems", "memory node", hostresources.online_memory_nodes)
    sizes: dict[int, str] | None = None
    for limit in res.hugepage_limits:
        require(limit.limit >= 0, f"{what}.hugepage_limits must not be negative")
        size = hostresources.page_size_bytes(limit.page_size)
        require(
            size is not None,
            f"{what}.hugepage_limits page_size {shown(limit.page_size)} is not a size "
            "such as 2MB or 1GB",
        )
        sizes = hostresources.huge_page_sizes() if sizes is None else sizes
        require(
            size in sizes,
            f"{what}.hugepage_limits page_size {shown(limit.page_size)} is not a huge page "
            f"size of this node ({', '.join(sorted(sizes.values())) or 'it has none'})",
        )


def cpuset(value: str, what: str, kind: str, available: Callable[[], set[int]]) -> None:
    """A CPU or memory node list, every member of which the node has."""
    if not value:
        return
    try:
        wanted = hostresources.parse_list(value)
    except hostresources.ListError as e:
        raise InvalidArgument(f"{what} {shown(value)} is not a list such as 0-3,7: {e}") from None
    have = available()
    missing = sorted(wanted - have) if have else []
    require(
        not missing,
        f"{what} {shown(value)} names {kind} {missing[0] if missing else ''} that this node "
        f"does not have (it has {_ranges(have)})",
    )


def _ranges(numbers: set[int]) -> str:
    """{0, 1, 2, 5} -> "0-2,5"."""
    parts: list[str] = []
    for n in sorted(numbers):
        if parts and parts[-1].endswith(f"-{n - 1}"):
            parts[-1] = parts[-1].rsplit("-", 1)[0] + f"-{n}"
        elif parts and parts[-1] == str(n - 1):
            parts[-1] = f"{n - 1}-{n}"
        else:
            parts.append(str(n))
    return ",".join(parts)


def linux_user(security: cri.LinuxContainerSecurityContext, what: str) -> None:
    if security.HasField("run_as_user"):
        uid(security.run_as_user.value, f"{what}.run_as_user")
    if security.HasField("run_as_group"):
        uid(security.run_as_group.value, f"{what}.run_as_group")
    for gid in security.supplemental_groups:
        uid(gid, f"{what}.supplemental_groups")
    if security.run_as_username:
        name(security.run_as_username, f"{what}.run_as_username", limit=256)


def capabilities(caps: cri.Capability) -> None:
    for cap in [*caps.add_capabilities, *caps.drop_capabilities, *caps.add_ambient_capabilities]:
        require(
            re.fullmatch(r"(CAP_)?[A-Z_]+|ALL", cap.upper()) is not None,
            f"capability {shown(cap)} is not a capability name",
        )


def namespace_options(options: cri.NamespaceOption, what: str) -> None:
    if options.HasField("userns_options"):
        userns = options.userns_options
        for mapping in [*userns.uids, *userns.gids]:
            require(mapping.length > 0, f"{what} user namespace mapping needs a length")


# Whole requests.


def sandbox_config(config: cri.PodSandboxConfig, limits: LimitsConfig = DEFAULT_LIMITS) -> None:
    sandbox_limits(config, limits)
    message(config, "config.")
    meta = config.metadata
    require(config.HasField("metadata"), "sandbox config must have metadata")
    for field in ("name", "namespace", "uid"):
        value = getattr(meta, field)
        name(value, f"sandbox metadata.{field}")
        # CNI_ARGS carries them as K8S_POD_NAME=...;K8S_POD_UID=...: no separators.
        require(
            not (set(value) & set(";=")),
            f"sandbox metadata.{field} {shown(value)} must not contain ';' or '='",
        )
    if config.hostname:
        hostname(config.hostname)
    if config.log_directory:
        absolute_path(config.log_directory, "log_directory")
    dns_config(config.dns_config)
    port_mappings(config.port_mappings)
    linux = config.linux
    if linux.cgroup_parent:
        require(
            ".." not in linux.cgroup_parent.split("/"),
            f"cgroup_parent {shown(linux.cgroup_parent)} must not contain '..'",
        )
        path_lengths(linux.cgroup_parent, "cgroup_parent")
    security = linux.security_context
    host_network = security.namespace_options.network == cri.NODE
    host_ipc = security.namespace_options.ipc == cri.NODE
    sysctls(dict(linux.sysctls), host_network, host_ipc)
    if security.HasField("run_as_user"):
        uid(security.run_as_user.value, "sandbox run_as_user")
    if security.HasField("run_as_group"):
        uid(security.run_as_group.value, "sandbox run_as_group")
    for gid in security.supplemental_groups:
        uid(gid, "sandbox supplemental_groups")
    namespace_options(security.namespace_options, "sandbox")
    if linux.HasField("overhead"):
        resources(linux.overhead, "overhead")
    if linux.HasField("resources"):
        resources(linux.resources, "sandbox resources")


def container_config(config: cri.ContainerConfig, limits: LimitsConfig = DEFAULT_LIMITS) -> None:
    container_limits(config, limits)
    message(config, "config.")
    require(config.HasField("metadata"), "container config must have metadata")
    name(config.metadata.name, "container metadata.name")
    image_name(config.image.image, "container config image")
    if config.command:
        # args[0] is no program when the image has an ENTRYPOINT: only the adapter knows.
        program(config.command[0], "command[0]")
    if config.working_dir:
        absolute_path(config.working_dir, "working_dir")
        kernel_dir = next((d for d in KERNEL_FILESYSTEMS if under(config.working_dir, d)), "")
        require(
            not kernel_dir,
            f"working_dir {shown(config.working_dir)} is inside {kernel_dir}, a kernel file "
            "system where no directory can be made for it",
        )
        require(
            posixpath.normpath(config.working_dir) not in POD_FILES,
            f"working_dir {shown(config.working_dir)} is a file the pod provides, not a directory",
        )
    for env in config.envs:
        require(bool(ENV_NAME.match(env.key)), f"environment variable {shown(env.key)} has no name")
    for mount in config.mounts:
        require(bool(mount.container_path), "every mount needs a container_path")
        absolute_path(mount.container_path, "mount container_path")
        proc_mount(mount.container_path)
        if mount.host_path:
            absolute_path(mount.host_path, "mount host_path")
    for device in config.devices:
        device_mapping(device)
    if config.log_path:
        relative_log_path(config.log_path)
    linux = config.linux
    if linux.HasField("resources"):
        resources(linux.resources)
    security = linux.security_context
    linux_user(security, "security_context")
    capabilities(security.capabilities)
    namespace_options(security.namespace_options, "container")
    for path in [*security.masked_paths, *security.readonly_paths]:
        absolute_path(path, "masked or read-only path")


KERNEL_FILESYSTEMS = ("/proc", "/sys")
"""Mounted by the runtime in every container: nothing below them can be made."""
POD_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
"""Files the pod mounts into each of its containers."""


def under(path: str, directory: str) -> bool:
    """Whether ``path`` is strictly below ``directory``."""
    return posixpath.normpath(path).startswith(directory + "/")


def proc_mount(container_path: str) -> None:
    """runc refuses mounts over /proc but for a few files that tools such as lxcfs
    replace; refused here, before anything is made."""
    path = posixpath.normpath(container_path)
    require(
        path != "/proc" and (not path.startswith("/proc/") or path in PROC_MOUNTS_ALLOWED),
        f"mount container_path {shown(container_path)} is in /proc, where only "
        f"{', '.join(sorted(PROC_MOUNTS_ALLOWED))} may be mounted",
    )


def device_mapping(device: cri.Device) -> None:
    absolute_path(device.container_path, "device container_path")
    absolute_path(device.host_path, "device host_path")
    require(
        set(device.permissions) <= set("rwm"),
        f"device permissions {shown(device.permissions)} must be letters of 'rwm'",
    )
    try:
        mode = os.stat(device.host_path).st_mode
    except OSError:
        raise InvalidArgument(f"device {shown(device.host_path)} does not exist") from None
    require(
        stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode),
        f"device {shown(device.host_path)} is not a device node",
    )


def stop_timeout(timeout: int) -> None:
    require(0 <= timeout <= MAX_TIMEOUT, f"timeout {timeout} is not within 0..{MAX_TIMEOUT}")


def exec_command(cmd: Iterable[str]) -> None:
    cmd = list(cmd)
    require(len(cmd) > 0, "cmd must not be empty")
    require(bool(cmd[0]), "cmd[0] must name a program")
    program(cmd[0], "cmd[0]")


def program(value: str, what: str) -> None:
    """A program to run: a name that execve can take (see ``node.programs``)."""
    check_program(value, what)


def pod_cidr(value: str) -> None:
    for cidr in value.split(","):
        try:
            ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise InvalidArgument(f"pod_cidr {shown(value)} is not a CIDR") from None


def image_spec(spec: cri.ImageSpec, what: str = "image") -> None:
    message(spec, f"{what}.")
    image_name(spec.image, what)


def image_name(value: str, what: str = "image") -> None:
    """A name that can name an image: a reference or an image ID (or a prefix of one).

    References are ``busybox``, ``registry.k8s.io/pause:3.10``, ``x@sha256:...``;
    IDs and their prefixes parse as references too. Anything else names no
    image, and backends must not see it: Docker's API takes the name as a path
    segment, where ``.`` or ``../containers/ID`` would reach other endpoints.
    """
    require(bool(value.strip()), f"{what} must not be empty")
    require(not re.search(r"\s", value), f"{what} {shown(value)} must not contain spaces")
    try:
        parse_reference(value)
    except InvalidArgument:
        raise InvalidArgument(
            f"{what} {shown(value)} is neither an image reference nor an image ID"
        ) from None


def auth_config(auth: cri.AuthConfig) -> None:
    """Registry credentials: ``auth`` is base64 of ``user:password``, as in Docker's config."""
    if not auth.auth:
        return
    try:
        base64.b64decode(auth.auth.encode("ascii")).decode()
    except (UnicodeError, binascii.Error):  # not ASCII, not base64, or not UTF-8 inside
        raise InvalidArgument("auth.auth is not base64 of user:password") from None


def image_filter(image_filter: cri.ImageFilter) -> None:
    """ListImages' filter: an unset image selects every image."""
    message(image_filter, "filter.")
    if image_filter.image.image:
        image_name(image_filter.image.image, "filter image")
