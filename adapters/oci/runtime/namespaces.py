"""The namespaces of a pod's pause process and of the containers that join it.

The pause process owns the pod's namespaces: a new PID, IPC and UTS
namespace unless the pod uses the node's, the pinned network namespace (none
of its own, and the node's UTS, with host networking) and, in user namespace
mode POD, a new user namespace with the CRI's single ID mapping. Containers
join those through ``/proc/<pause pid>/ns/...``; each gets its own mount
namespace, its own PID namespace in mode CONTAINER, the target's in mode
TARGET, and a cgroup namespace on cgroup v2 unless privileged (containerd's
rules).
"""

from __future__ import annotations

from typing import Any

from pycrid.adapters.errors import FailedPrecondition, InvalidArgument
from pycrid.api.cri import api_pb2 as cri

MAX_HOST_ID = 1 << 32


def user_namespace(options: cri.NamespaceOption) -> dict[str, list[dict[str, int]]] | None:
    """``{"uidMappings", "gidMappings"}`` for mode POD; None for the node's user namespace."""
    if not options.HasField("userns_options"):
        return None
    userns = options.userns_options
    if userns.mode == cri.NODE:
        if userns.uids or userns.gids:
            raise InvalidArgument("user namespace mode NODE takes no ID mappings")
        return None
    if userns.mode != cri.POD:
        name = cri.NamespaceMode.Name(userns.mode)
        raise InvalidArgument(f"user namespace mode {name} is not supported")
    return {
        "uidMappings": _mapping(userns.uids, "UID"),
        "gidMappings": _mapping(userns.gids, "GID"),
    }


def _mapping(mappings: list[cri.IDMapping], kind: str) -> list[dict[str, int]]:
    if len(mappings) != 1:
        raise InvalidArgument(f"user namespaces take one {kind} mapping, got {len(mappings)}")
    mapping = mappings[0]
    if mapping.container_id != 0:
        raise InvalidArgument(f"the {kind} mapping must start at container ID 0")
    if mapping.host_id == 0:
        raise InvalidArgument(
            f"the {kind} mapping's host_id 0 would make the container's root the host's root"
        )
    if not 1 <= mapping.length < MAX_HOST_ID:
        raise InvalidArgument(f"the {kind} mapping's length {mapping.length} is out of range")
    if mapping.host_id + mapping.length > MAX_HOST_ID - 1:  # (uid_t)-1 is no ID
        raise InvalidArgument(
            f"the {kind} mapping's host_id {mapping.host_id} with length {mapping.length} "
            f"reaches beyond host ID {MAX_HOST_ID - 2}"
        )
    return [{"containerID": 0, "hostID": mapping.host_id, "size": mapping.length}]


UTS_SYSCTLS = frozenset({"kernel.hostname", "kernel.domainname"})


def check_sysctls(config: cri.PodSandboxConfig) -> None:
    """A pod on the host network shares the node's UTS namespace: its name sysctls
    would rename the node (runc refuses them)."""
    if config.linux.security_context.namespace_options.network != cri.NODE:
        return
    for key in config.linux.sysctls:
        if key.replace("/", ".") in UTS_SYSCTLS:
            raise InvalidArgument(
                f"sysctl {key!r} would change the node's names: a pod on the host network "
                "shares the node's UTS namespace"
            )


def sandbox_namespaces(
    options: cri.NamespaceOption, netns_path: str, userns: dict[str, Any] | None
) -> list[dict[str, str]]:
    """``linux.namespaces`` of a pause process."""
    namespaces: list[dict[str, str]] = [{"type": "mount"}]
    if options.pid != cri.NODE:
        namespaces.append({"type": "pid"})
    if options.ipc != cri.NODE:
        namespaces.append({"type": "ipc"})
    if options.network != cri.NODE:
        namespaces.append({"type": "uts"})
        namespaces.append(_namespace("network", netns_path))
    if userns is not None:
        namespaces.append({"type": "user"})
    return namespaces


def container_namespaces(
    options: cri.NamespaceOption,
    pod_options: cri.NamespaceOption,
    *,
    pause_pid: int,
    netns_path: str = "",
    target_pid: int = 0,
    userns: dict[str, Any] | None = None,
    cgroup_namespace: bool = False,
) -> list[dict[str, str]]:
    """``linux.namespaces`` of an app container in a pod whose pause process is ``pause_pid``."""
    if pause_pid <= 0:
        raise FailedPrecondition("the pod sandbox has no running pause process")
    namespaces: list[dict[str, str]] = [{"type": "mount"}]
    if pod_options.network != cri.NODE:
        namespaces.append(_namespace("network", netns_path or _proc(pause_pid, "net")))
        namespaces.append(_namespace("uts", _proc(pause_pid, "uts")))
    if pod_options.ipc != cri.NODE:
        namespaces.append(_namespace("ipc", _proc(pause_pid, "ipc")))
    pid = _pid_namespace(options, pod_options, pause_pid, target_pid)
    if pid is not None:
        namespaces.append(pid)
    if userns is not None:
        namespaces.append(_namespace("user", _proc(pause_pid, "user")))
    if cgroup_namespace:
        namespaces.append({"type": "cgroup"})
    return namespaces


def _pid_namespace(
    options: cri.NamespaceOption, pod_options: cri.NamespaceOption, pause_pid: int, target_pid: int
) -> dict[str, str] | None:
    if options.pid == cri.NODE:
        return None
    if options.pid == cri.CONTAINER:
        return {"type": "pid"}
    if options.pid == cri.TARGET:
        if target_pid <= 0:
            raise InvalidArgument(f"PID namespace target {options.target_id[:64]!r} is not running")
        return _namespace("pid", _proc(target_pid, "pid"))
    if pod_options.pid == cri.NODE:
        return None  # the pod's PID namespace is the node's
    return _namespace("pid", _proc(pause_pid, "pid"))


def _namespace(kind: str, path: str) -> dict[str, str]:
    return {"type": kind, "path": path} if path else {"type": kind}


def _proc(pid: int, kind: str) -> str:
    return f"/proc/{pid}/ns/{kind}"


def same_user_namespace(a: cri.NamespaceOption, b: cri.NamespaceOption) -> bool:
    """Whether a container asks for the user namespace its pod has (the kubelet's promise);
    no options and mode NODE are the same thing."""
    return user_namespace(a) == user_namespace(b)
