"""Whole OCI specs for pause processes and app containers, from CRI configs."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

import pytest

from pycrid.adapters.errors import FailedPrecondition, InvalidArgument, Unimplemented
from pycrid.adapters.node.hostfacts import HostFacts
from pycrid.adapters.oci.runtime import spec
from pycrid.adapters.oci.runtime.capabilities import DEFAULT_CAPABILITIES, KNOWN
from pycrid.adapters.oci.runtime.imageconfig import ImageConfig
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.api.cri import api_pb2 as cri

SANDBOX_ID = "s" * 64
CONTAINER_ID = "c" * 64
NO_RESOURCE = frozenset(KNOWN) - {"CAP_SYS_RESOURCE"}
HOST_NULL = {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666,
             "uid": 0, "gid": 0}  # fmt: skip
HOST_SDA = {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 0o660,
            "uid": 0, "gid": 6}  # fmt: skip
PAUSE = ImageConfig(entrypoint=("/pause",))
BUSYBOX = ImageConfig(cmd=("sh",), env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",))
NAMESPACE_TYPES = {"pid", "network", "mount", "ipc", "uts", "user", "cgroup"}


DEFAULTS = {"rootfs": ""}


@pytest.fixture(autouse=True)
def empty_rootfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image without /etc/passwd, where helpers do not name a rootfs."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setitem(DEFAULTS, "rootfs", str(tmp_path / "empty"))


def node(**fields: Any) -> NodeFacts:
    values: dict[str, Any] = {
        "host": HostFacts(negative_oom_score_adj=True),
        "hostname": "node-1",
        "list_host_devices": lambda: [HOST_NULL, HOST_SDA],
    }
    values.update(fields)
    return NodeFacts(**values)


def this_host() -> NodeFacts:
    """Like the build machines: no CAP_SYS_RESOURCE, no hugetlb, cgroup v1."""
    host = HostFacts(negative_oom_score_adj=False, bounding_capabilities=NO_RESOURCE)
    return node(host=host, hugetlb_controller=False)


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
    )
    (etc / "group").write_text("root:x:0:\nwheel:x:10:root\nextra:x:3000:user\n")
    return str(tmp_path / "rootfs")


def pod_config(
    namespaces: cri.NamespaceOption | None = None, **security: Any
) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="pod", namespace="ns", uid="uid-1"),
        hostname="pod-host",
        log_directory="/var/log/pods/x",
        linux=cri.LinuxPodSandboxConfig(
            security_context=cri.LinuxSandboxSecurityContext(
                namespace_options=namespaces or cri.NamespaceOption(), **security
            )
        ),
    )


def pod_facts(**fields: Any) -> spec.PodFacts:
    values: dict[str, Any] = {
        "sandbox_id": SANDBOX_ID,
        "netns_path": "/run/netns/cni-1",
        "pause_pid": 4242,
        "shm_path": "/run/pycrid/sandboxes/s/shm",
        "hostname_path": "/run/pycrid/sandboxes/s/hostname",
        "hosts_path": "/run/pycrid/sandboxes/s/hosts",
        "resolv_conf_path": "/run/pycrid/sandboxes/s/resolv.conf",
    }
    values.update(fields)
    return spec.PodFacts(**values)


def check_structure(document: dict[str, Any]) -> None:
    """The fields runc 1.1 needs, with the runtime-spec's types."""
    json.dumps(document)
    assert document["ociVersion"] == "1.0.2-dev"
    assert isinstance(document["root"]["path"], str) and document["root"]["path"]
    assert isinstance(document["root"]["readonly"], bool)
    proc = document["process"]
    assert proc["args"] and all(isinstance(a, str) for a in proc["args"])
    assert posixpath.isabs(proc["cwd"])
    assert all("=" in e for e in proc["env"])
    user = proc["user"]
    assert isinstance(user["uid"], int) and isinstance(user["gid"], int)
    assert user["gid"] in user["additionalGids"]
    for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        assert set(proc["capabilities"][key]) <= set(KNOWN), key
    assert isinstance(proc["oomScoreAdj"], int)
    for mount in document["mounts"]:
        assert posixpath.isabs(mount["destination"])
        assert mount["type"] and mount["source"]
        assert all(isinstance(o, str) for o in mount["options"])
    linux = document["linux"]
    types = [ns["type"] for ns in linux["namespaces"]]
    assert set(types) <= NAMESPACE_TYPES and len(types) == len(set(types))
    assert linux["cgroupsPath"].startswith("/")
    assert linux["resources"]["devices"][0]["access"] == "rwm"
    assert all(k.startswith("io.kubernetes.cri.") for k in document["annotations"])


def sandbox(config: cri.PodSandboxConfig | None = None, **kwargs: Any) -> spec.GeneratedSpec:
    args: dict[str, Any] = {"rootfs": DEFAULTS["rootfs"], "pod": pod_facts(), "node": node()}
    args.update(kwargs)
    image = args.pop("image", PAUSE)
    result = spec.sandbox_spec(config or pod_config(), image, **args)
    check_structure(result.spec)
    return result


def mounted(document: dict[str, Any], destination: str) -> dict[str, Any] | None:
    found = [m for m in document["mounts"] if m["destination"] == destination]
    assert len(found) <= 1
    return found[0] if found else None


# The pause process.


def test_sandbox_spec(rootfs: str) -> None:
    config = pod_config()
    config.linux.sysctls["kernel.shm_rmid_forced"] = "1"
    config.linux.cgroup_parent = "/kubepods/besteffort/poduid-1"
    result = sandbox(config, rootfs=rootfs)
    document = result.spec
    assert document["process"]["args"] == ["/pause"]
    assert document["process"]["env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    assert document["process"]["cwd"] == "/"
    assert document["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert document["process"]["oomScoreAdj"] == -998
    assert document["process"]["noNewPrivileges"] is True
    assert set(document["process"]["capabilities"]["bounding"]) == DEFAULT_CAPABILITIES
    assert "rlimits" not in document["process"] and "apparmorProfile" not in document["process"]
    assert document["root"] == {"path": rootfs, "readonly": True}
    assert document["hostname"] == "pod-host"
    linux = document["linux"]
    assert linux["namespaces"] == [
        {"type": "mount"},
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "network", "path": "/run/netns/cni-1"},
    ]
    assert linux["resources"] == {
        "devices": [{"allow": False, "access": "rwm"}],
        "cpu": {"shares": 2},
    }
    assert linux["cgroupsPath"] == f"/kubepods/besteffort/poduid-1/{SANDBOX_ID}"
    assert linux["sysctl"] == {"kernel.shm_rmid_forced": "1"}
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert "seccomp" not in linux and "uidMappings" not in linux
    assert document["annotations"] == {
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-id": SANDBOX_ID,
        "io.kubernetes.cri.sandbox-name": "pod",
        "io.kubernetes.cri.sandbox-namespace": "ns",
        "io.kubernetes.cri.sandbox-uid": "uid-1",
        "io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/x",
        "io.kubernetes.cri.podsandbox.image-name": "",
    }
    assert result.notes == []


def test_sandbox_mounts() -> None:
    document = sandbox().spec
    assert mounted(document, "/dev/shm") == {
        "destination": "/dev/shm",
        "type": "bind",
        "source": "/run/pycrid/sandboxes/s/shm",
        "options": ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"],
    }
    resolv = mounted(document, "/etc/resolv.conf")
    assert resolv is not None and resolv["options"][:3] == ["rbind", "rprivate", "ro"]
    assert mounted(document, "/etc/hosts") is None
    assert mounted(document, "/run") is None
    sys = mounted(document, "/sys")
    assert sys is not None and sys["options"][-1] == "ro"


def test_sandbox_on_this_host_clamps_oom_score_adj_and_caps() -> None:
    result = sandbox(node=this_host())
    assert result.spec["process"]["oomScoreAdj"] == 0
    assert result.notes == [
        "oom_score_adj -998 raised to 0: CAP_SYS_RESOURCE is not in the bounding set"
    ]


def test_sandbox_cgroup_parent_defaults_to_pycrid() -> None:
    assert sandbox().spec["linux"]["cgroupsPath"] == f"/pycrid/{SANDBOX_ID}"
    assert sandbox(node=node(cgroup_parent="elsewhere")).spec["linux"]["cgroupsPath"] == (
        f"/elsewhere/{SANDBOX_ID}"
    )
    config = pod_config()
    config.linux.cgroup_parent = "/a/../b"
    with pytest.raises(InvalidArgument, match=r"'\.\.'"):
        sandbox(config)


def test_sandbox_with_host_namespaces() -> None:
    host = cri.NamespaceOption(network=cri.NODE, pid=cri.NODE, ipc=cri.NODE)
    document = sandbox(pod_config(host), pod=pod_facts(netns_path="")).spec
    assert document["linux"]["namespaces"] == [{"type": "mount"}]
    assert "hostname" not in document
    shm = mounted(document, "/dev/shm")
    assert shm is not None and shm["source"] == "/dev/shm"


def test_sandbox_without_a_pod_shm_keeps_a_private_tmpfs() -> None:
    shm = mounted(sandbox(pod=pod_facts(shm_path="")).spec, "/dev/shm")
    assert shm is not None and shm["type"] == "tmpfs"


def test_sandbox_user_and_groups(rootfs: str) -> None:
    config = pod_config(run_as_user=cri.Int64Value(value=1000), supplemental_groups=[7])
    result = sandbox(config, rootfs=rootfs)
    # No image groups for the pause process (containerd's rule).
    assert result.spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [7, 1000]}
    image_user = sandbox(pod_config(), rootfs=rootfs, image=ImageConfig(cmd=("/p",), user="65535"))
    assert image_user.user.uid == 65535
    with pytest.raises(InvalidArgument, match="run_as_group"):
        sandbox(pod_config(run_as_group=cri.Int64Value(value=1)), rootfs=rootfs)


def test_sandbox_env_and_workdir_from_the_image() -> None:
    image = ImageConfig(entrypoint=("/pause",), cmd=("-v",), env=("A=1",), working_dir="/w")
    document = sandbox(image=image).spec
    assert document["process"]["args"] == ["/pause", "-v"]
    assert document["process"]["env"][-1] == "A=1"
    assert document["process"]["cwd"] == "/w"


def test_pause_image_needs_a_command() -> None:
    with pytest.raises(InvalidArgument, match="no entrypoint or cmd"):
        sandbox(image=ImageConfig())


def test_sandbox_seccomp() -> None:
    default = sandbox(pod_config(seccomp=cri.SecurityProfile())).spec["linux"]["seccomp"]
    assert default["defaultAction"] == "SCMP_ACT_ERRNO"
    privileged = pod_config(privileged=True, seccomp=cri.SecurityProfile())
    document = sandbox(privileged).spec
    assert "seccomp" not in document["linux"]
    assert document["linux"]["maskedPaths"] == document["linux"]["readonlyPaths"] == []


MAPPING = [cri.IDMapping(host_id=1000, container_id=0, length=100000)]


def userns_options(**fields: Any) -> cri.NamespaceOption:
    users = cri.UserNamespace(mode=cri.POD, uids=MAPPING, gids=MAPPING)
    return cri.NamespaceOption(userns_options=users, **fields)


def test_sandbox_user_namespace() -> None:
    document = sandbox(pod_config(userns_options())).spec
    assert {"type": "user"} in document["linux"]["namespaces"]
    mapping = [{"containerID": 0, "hostID": 1000, "size": 100000}]
    assert document["linux"]["uidMappings"] == document["linux"]["gidMappings"] == mapping
    sys = mounted(document, "/sys")
    assert sys is not None and sys["type"] == "sysfs"
    host_net = sandbox(pod_config(userns_options(network=cri.NODE))).spec
    sys = mounted(host_net, "/sys")
    assert sys is not None and sys["type"] == "bind" and "rro" in sys["options"]


@pytest.mark.parametrize("mode", [cri.CONTAINER, cri.TARGET])
def test_sandbox_user_namespace_modes_container_and_target_are_invalid(mode: int) -> None:
    options = cri.NamespaceOption(userns_options=cri.UserNamespace(mode=mode))
    with pytest.raises(InvalidArgument, match="is not supported"):
        sandbox(pod_config(options))


# App containers.


def container_config(**fields: Any) -> cri.ContainerConfig:
    security = fields.pop("security", {})
    resources = fields.pop("resources", {})
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="app"),
        image=cri.ImageSpec(image="busybox:1", user_specified_image="busybox"),
        linux=cri.LinuxContainerConfig(
            security_context=cri.LinuxContainerSecurityContext(**security),
            resources=cri.LinuxContainerResources(**resources),
        ),
        **fields,
    )


def container(
    config: cri.ContainerConfig | None = None,
    sandbox_config: cri.PodSandboxConfig | None = None,
    **kwargs: Any,
) -> spec.GeneratedSpec:
    """``kwargs`` override container_spec's: pod (PodFacts), node, volumes, target_pid..."""
    args: dict[str, Any] = {
        "container_id": CONTAINER_ID,
        "rootfs": kwargs.pop("rootfs", DEFAULTS["rootfs"]),
        "pod": pod_facts(),
        "node": node(),
    }
    args.update(kwargs)
    image = args.pop("image", BUSYBOX)
    result = spec.container_spec(
        config or container_config(), sandbox_config or pod_config(), image, **args
    )
    check_structure(result.spec)
    return result


def test_container_spec(rootfs: str) -> None:
    config = container_config(
        command=["/bin/sh", "-c", "id"],
        working_dir="/tmp",
        envs=[cri.KeyValue(key="A", value=b"1")],
        security={"run_as_user": cri.Int64Value(value=1000), "supplemental_groups": [55]},
    )
    result = container(config, rootfs=rootfs)
    document = result.spec
    proc = document["process"]
    assert proc["terminal"] is False
    assert proc["args"] == ["/bin/sh", "-c", "id"]
    assert proc["cwd"] == "/tmp"
    assert proc["env"] == [
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "HOSTNAME=pod-host",
        "A=1",
        "HOME=/home/user",
    ]
    assert proc["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [55, 1000, 3000]}
    assert result.user.home == "/home/user"
    assert proc["noNewPrivileges"] is False
    assert proc["oomScoreAdj"] == 0
    assert set(proc["capabilities"]["bounding"]) == DEFAULT_CAPABILITIES
    assert proc["capabilities"]["ambient"] == []
    assert "rlimits" not in proc
    assert document["root"] == {"path": rootfs, "readonly": False}
    assert "hostname" not in document
    linux = document["linux"]
    assert linux["namespaces"] == [
        {"type": "mount"},
        {"type": "network", "path": "/run/netns/cni-1"},
        {"type": "uts", "path": "/proc/4242/ns/uts"},
        {"type": "ipc", "path": "/proc/4242/ns/ipc"},
        {"type": "pid", "path": "/proc/4242/ns/pid"},
    ]
    assert linux["cgroupsPath"] == f"/pycrid/{CONTAINER_ID}"
    assert linux["devices"] == []
    assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert linux["maskedPaths"] == linux["readonlyPaths"] == []
    assert "seccomp" not in linux and "rootfsPropagation" not in linux
    assert document["annotations"] == {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-id": SANDBOX_ID,
        "io.kubernetes.cri.sandbox-name": "pod",
        "io.kubernetes.cri.sandbox-namespace": "ns",
        "io.kubernetes.cri.sandbox-uid": "uid-1",
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.image-name": "busybox",
    }
    assert result.notes == []


def test_container_defaults_from_the_image() -> None:
    image = ImageConfig(entrypoint=("/e",), cmd=("c",), working_dir="/srv", user="0")
    document = container(image=image).spec
    assert document["process"]["args"] == ["/e", "c"]
    assert document["process"]["cwd"] == "/srv"
    with pytest.raises(InvalidArgument, match="no command"):
        container(image=ImageConfig())


def test_hostname_env_falls_back_to_the_node() -> None:
    pod = pod_config()
    pod.hostname = ""
    env = container(sandbox_config=pod).spec["process"]["env"]
    assert "HOSTNAME=node-1" in env


def test_tty_sets_terminal_and_term() -> None:
    document = container(container_config(tty=True)).spec
    assert document["process"]["terminal"] is True
    assert "TERM=xterm" in document["process"]["env"]


def test_container_mounts(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    config = container_config(
        mounts=[
            cri.Mount(host_path=str(tmp_path / "data"), container_path="/data", readonly=True),
            cri.Mount(host_path=str(tmp_path / "data"), container_path="/etc/hosts"),
        ]
    )
    document = container(config, volumes={"/cache": "/c/volumes/cache"}).spec
    destinations = [m["destination"] for m in document["mounts"]]
    assert destinations == [
        "/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
        "/data", "/cache", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/shm",
    ]  # fmt: skip
    hosts = mounted(document, "/etc/hosts")
    assert hosts is not None and hosts["source"] == str(tmp_path / "data")
    assert mounted(document, "/data")["options"] == ["rbind", "rprivate", "ro"]  # type: ignore[index]
    assert mounted(document, "/cache")["source"] == "/c/volumes/cache"  # type: ignore[index]
    assert mounted(document, "/dev/shm") == {
        "destination": "/dev/shm",
        "type": "bind",
        "source": "/run/pycrid/sandboxes/s/shm",
        "options": ["rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"],
    }
    resolv = mounted(document, "/etc/resolv.conf")
    assert resolv is not None and resolv["options"] == ["rbind", "rprivate", "rw"]


def test_termination_log_and_shm_mounts_from_the_cri(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    log.touch()
    (tmp_path / "shm").mkdir()
    config = container_config(
        mounts=[
            cri.Mount(host_path=str(log), container_path="/dev/termination-log"),
            cri.Mount(host_path=str(tmp_path / "shm"), container_path="/dev/shm"),
        ]
    )
    document = container(config).spec
    destinations = [m["destination"] for m in document["mounts"]]
    assert destinations.index("/dev") < destinations.index("/dev/termination-log")
    assert mounted(document, "/dev/shm")["source"] == str(tmp_path / "shm")  # type: ignore[index]


def test_pod_files_are_read_only_with_a_read_only_rootfs() -> None:
    document = container(container_config(security={"readonly_rootfs": True})).spec
    assert document["root"]["readonly"] is True
    for path in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
        assert mounted(document, path)["options"][2] == "ro", path  # type: ignore[index]


def test_host_ipc_binds_the_hosts_dev_shm() -> None:
    pod = pod_config(cri.NamespaceOption(ipc=cri.NODE))
    document = container(sandbox_config=pod).spec
    assert mounted(document, "/dev/shm")["source"] == "/dev/shm"  # type: ignore[index]
    assert not any(ns["type"] == "ipc" for ns in document["linux"]["namespaces"])


def test_propagation_sets_the_rootfs_propagation(tmp_path: Path) -> None:
    config = container_config(
        mounts=[
            cri.Mount(host_path=str(tmp_path), container_path="/a", propagation=1),
            cri.Mount(host_path=str(tmp_path), container_path="/b"),
        ]
    )
    assert container(config).spec["linux"]["rootfsPropagation"] == "rslave"
    config.mounts[1].propagation = cri.PROPAGATION_BIDIRECTIONAL
    assert container(config).spec["linux"]["rootfsPropagation"] == "rshared"


def test_recursive_read_only_mounts(tmp_path: Path) -> None:
    rro = cri.Mount(
        host_path=str(tmp_path), container_path="/mnt", readonly=True, recursive_read_only=True
    )
    document = container(container_config(mounts=[rro])).spec
    assert mounted(document, "/mnt")["options"] == ["rbind", "rprivate", "rro"]  # type: ignore[index]
    rro.propagation = cri.PROPAGATION_HOST_TO_CONTAINER
    with pytest.raises(InvalidArgument, match="private propagation"):
        container(container_config(mounts=[rro]))


def test_missing_mount_source_is_invalid(tmp_path: Path) -> None:
    config = container_config(
        mounts=[cri.Mount(host_path=str(tmp_path / "nope"), container_path="/x")]
    )
    with pytest.raises(InvalidArgument, match="does not exist"):
        container(config)


def test_devices() -> None:
    config = container_config(
        devices=[cri.Device(host_path="/dev/null", container_path="/dev/xnull", permissions="r")]
    )
    linux = container(config).spec["linux"]
    assert [d["path"] for d in linux["devices"]] == ["/dev/xnull"]
    assert linux["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
    ]


def test_capabilities_on_this_host_are_limited_with_a_note() -> None:
    config = container_config(
        security={"capabilities": cri.Capability(add_capabilities=["SYS_RESOURCE", "NET_ADMIN"])}
    )
    result = container(config, node=this_host())
    bounding = result.spec["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in bounding and "CAP_SYS_RESOURCE" not in bounding
    assert result.notes == ["not in this host's bounding set, not granted: CAP_SYS_RESOURCE"]


def test_ambient_capabilities() -> None:
    caps = cri.Capability(add_ambient_capabilities=["NET_BIND_SERVICE"])
    document = container(container_config(security={"capabilities": caps})).spec
    assert document["process"]["capabilities"]["ambient"] == ["CAP_NET_BIND_SERVICE"]
    assert document["process"]["capabilities"]["inheritable"] == ["CAP_NET_BIND_SERVICE"]


def test_masked_and_readonly_paths_are_exactly_the_cris() -> None:
    security = {"masked_paths": ["/proc/kcore"], "readonly_paths": ["/proc/sys", "/proc/bus"]}
    linux = container(container_config(security=security)).spec["linux"]
    assert linux["maskedPaths"] == ["/proc/kcore"]
    assert linux["readonlyPaths"] == ["/proc/sys", "/proc/bus"]


def test_no_new_privs_and_oom_score_adj() -> None:
    config = container_config(security={"no_new_privs": True}, resources={"oom_score_adj": -500})
    assert container(config).spec["process"]["noNewPrivileges"] is True
    assert container(config).spec["process"]["oomScoreAdj"] == -500
    result = container(config, node=this_host())
    assert result.spec["process"]["oomScoreAdj"] == 0
    assert "oom_score_adj -500 raised to 0" in result.notes[0]
    config.linux.resources.oom_score_adj = 1001
    with pytest.raises(InvalidArgument, match="oom_score_adj"):
        container(config)


def test_resources_and_cgroup_parent() -> None:
    config = container_config(
        resources={"cpu_shares": 256, "cpu_quota": 20000, "memory_limit_in_bytes": 1 << 24}
    )
    pod = pod_config()
    pod.linux.cgroup_parent = "kubepods/pod1"
    linux = container(config, pod).spec["linux"]
    assert linux["cgroupsPath"] == f"/kubepods/pod1/{CONTAINER_ID}"
    assert linux["resources"]["cpu"] == {"shares": 256, "quota": 20000}
    assert linux["resources"]["memory"] == {"limit": 1 << 24, "swap": 1 << 24}
    assert linux["resources"]["devices"] == [{"allow": False, "access": "rwm"}]


def test_unified_on_cgroup_v1_is_invalid() -> None:
    config = container_config(resources={"unified": {"memory.high": "1"}})
    with pytest.raises(InvalidArgument, match="cgroup v2"):
        container(config)
    v2 = container(config, node=node(cgroup_v2=True)).spec["linux"]
    assert v2["resources"]["unified"] == {"memory.high": "1"}
    assert {"type": "cgroup"} in v2["namespaces"]


def test_seccomp_runtime_default_follows_the_bounding_set() -> None:
    security = {
        "seccomp": cri.SecurityProfile(),
        "capabilities": cri.Capability(add_capabilities=["SYS_ADMIN"]),
    }
    profile = container(container_config(security=security)).spec["linux"]["seccomp"]
    names = {n for rule in profile["syscalls"] for n in rule["names"]}
    assert {"mount", "sethostname"} <= names


def test_seccomp_localhost(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    profile = cri.SecurityProfile(
        profile_type=cri.SecurityProfile.Localhost, localhost_ref=str(path)
    )
    linux = container(container_config(security={"seccomp": profile})).spec["linux"]
    assert linux["seccomp"] == {"defaultAction": "SCMP_ACT_ALLOW"}
    profile.localhost_ref = str(tmp_path / "missing.json")
    with pytest.raises(InvalidArgument, match="does not exist"):
        container(container_config(security={"seccomp": profile}))


def test_run_as_username(rootfs: str) -> None:
    config = container_config(security={"run_as_username": "user"})
    assert container(config, rootfs=rootfs).user.uid == 1000
    config = container_config(security={"run_as_username": "ghost"})
    with pytest.raises(InvalidArgument, match="no user 'ghost'"):
        container(config, rootfs=rootfs)


def test_run_as_group_without_user_is_invalid(rootfs: str) -> None:
    config = container_config(security={"run_as_group": cri.Int64Value(value=5)})
    with pytest.raises(InvalidArgument, match="run_as_group"):
        container(config, rootfs=rootfs)


def test_supplemental_groups_policy(rootfs: str) -> None:
    security = {
        "run_as_user": cri.Int64Value(value=1000),
        "supplemental_groups": [1234],
        "supplemental_groups_policy": cri.Strict,
    }
    user = container(container_config(security=security), rootfs=rootfs).user
    assert user.additional_gids == (1000, 1234)


# Privileged containers.


def privileged_pod() -> cri.PodSandboxConfig:
    return pod_config(privileged=True)


def test_privileged_container() -> None:
    security = {
        "privileged": True,
        "seccomp": cri.SecurityProfile(),
        "masked_paths": ["/proc/kcore"],
        "readonly_paths": ["/proc/sys"],
        "capabilities": cri.Capability(drop_capabilities=["ALL"]),
    }
    config = container_config(
        security=security, devices=[cri.Device(host_path="/dev/null", permissions="r")]
    )
    document = container(config, privileged_pod()).spec
    assert document["process"]["capabilities"]["bounding"] == list(KNOWN)
    linux = document["linux"]
    assert "seccomp" not in linux
    assert linux["maskedPaths"] == linux["readonlyPaths"] == []
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    # The host's nodes, the CRI's version of /dev/null instead of the host list's.
    assert [d["path"] for d in linux["devices"]] == ["/dev/sda", "/dev/null"]
    assert mounted(document, "/sys")["options"][-1] == "rw"  # type: ignore[index]
    assert mounted(document, "/sys/fs/cgroup")["options"][-1] == "rw"  # type: ignore[index]


def test_privileged_on_this_host_gets_the_bounding_set() -> None:
    config = container_config(security={"privileged": True})
    caps = container(config, privileged_pod(), node=this_host()).spec["process"]["capabilities"]
    assert set(caps["bounding"]) == NO_RESOURCE


def test_privileged_container_needs_a_privileged_pod() -> None:
    with pytest.raises(InvalidArgument, match="privileged pod sandbox"):
        container(container_config(security={"privileged": True}))


def test_apparmor_only_on_apparmor_hosts() -> None:
    profile = cri.SecurityProfile(
        profile_type=cri.SecurityProfile.Localhost, localhost_ref="localhost/my-profile"
    )
    config = container_config(security={"apparmor": profile})
    assert "apparmorProfile" not in container(config).spec["process"]
    armored = node(host=HostFacts(apparmor=True))
    assert container(config, node=armored).spec["process"]["apparmorProfile"] == "my-profile"
    result = container(container_config(), node=armored)
    assert "apparmorProfile" not in result.spec["process"]
    assert "no default AppArmor profile" in result.notes[0]


# Namespaces of containers.


def test_container_pid_modes() -> None:
    own = container_config(security={"namespace_options": cri.NamespaceOption(pid=cri.CONTAINER)})
    assert {"type": "pid"} in container(own).spec["linux"]["namespaces"]
    target = container_config(
        security={"namespace_options": cri.NamespaceOption(pid=cri.TARGET, target_id="t")}
    )
    namespaces = container(target, target_pid=99).spec["linux"]["namespaces"]
    assert {"type": "pid", "path": "/proc/99/ns/pid"} in namespaces
    host = container_config(security={"namespace_options": cri.NamespaceOption(pid=cri.NODE)})
    assert all(ns["type"] != "pid" for ns in container(host).spec["linux"]["namespaces"])


def test_host_network_pod_containers() -> None:
    options = cri.NamespaceOption(network=cri.NODE)
    config = container_config(security={"namespace_options": options})
    namespaces = container(config, pod_config(options)).spec["linux"]["namespaces"]
    assert [ns["type"] for ns in namespaces] == ["mount", "ipc", "pid"]


def test_containers_without_a_pinned_netns_join_the_pause_process() -> None:
    namespaces = container(pod=pod_facts(netns_path="")).spec["linux"]["namespaces"]
    assert {"type": "network", "path": "/proc/4242/ns/net"} in namespaces


def test_user_namespace_containers_join_the_pods() -> None:
    options = userns_options()
    config = container_config(security={"namespace_options": options})
    linux = container(config, pod_config(options)).spec["linux"]
    assert {"type": "user", "path": "/proc/4242/ns/user"} in linux["namespaces"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 100000}]
    with pytest.raises(InvalidArgument, match="differs from its pod's"):
        container(container_config(), pod_config(options))


def test_containers_need_a_running_pause_process() -> None:
    with pytest.raises(FailedPrecondition):
        container(pod=pod_facts(pause_pid=0))


def test_unsupported_container_configs() -> None:
    config = container_config()
    config.windows.SetInParent()
    with pytest.raises(InvalidArgument, match="Windows"):
        container(config)
    with pytest.raises(Unimplemented, match="CDI"):
        container(container_config(CDI_devices=[cri.CDIDevice(name="vendor.com/gpu=0")]))
