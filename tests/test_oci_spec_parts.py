"""The parts of an OCI spec: seccomp, capabilities, mounts, resources, namespaces,
the command line and environment, devices."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pycrid.adapters.errors import FailedPrecondition, InvalidArgument, Unimplemented
from pycrid.adapters.oci.runtime import mounts, process, seccomp
from pycrid.adapters.oci.runtime.capabilities import (
    DEFAULT_CAPABILITIES,
    KNOWN,
    capability_name,
    capability_sets,
)
from pycrid.adapters.oci.runtime.devices import cri_devices, device_node, nodes_under
from pycrid.adapters.oci.runtime.imageconfig import ImageConfig
from pycrid.adapters.oci.runtime.namespaces import (
    container_namespaces,
    same_user_namespace,
    sandbox_namespaces,
    user_namespace,
)
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.adapters.oci.runtime.resources import linux_resources
from pycrid.api.cri import api_pb2 as cri

NO_RESOURCE = frozenset(KNOWN) - {"CAP_SYS_RESOURCE"}


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [rule for rule in profile["syscalls"] if name in rule["names"]]


def allowed_unconditionally(profile: dict[str, Any]) -> set[str]:
    return {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule
        for name in rule["names"]
    }


# The default seccomp profile.


def test_default_profile_shape() -> None:
    profile = seccomp.default_profile(DEFAULT_CAPABILITIES, "x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "defaultErrnoRet" not in profile  # runc's EPERM
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = allowed_unconditionally(profile)
    assert {"read", "write", "execve", "openat", "futex", "arch_prctl", "ptrace"} <= allowed
    assert len(allowed) > 360
    json.dumps(profile)


def test_default_profile_refuses_what_needs_capabilities_it_lacks() -> None:
    allowed = allowed_unconditionally(seccomp.default_profile(DEFAULT_CAPABILITIES, "x86_64"))
    refused = """mount umount2 unshare setns sethostname reboot bpf init_module kexec_load
                 open_by_handle_at clock_settime acct"""
    for name in refused.split():
        assert name not in allowed, name
    assert "chroot" in allowed  # CAP_SYS_CHROOT is a default


def test_capabilities_open_their_system_calls() -> None:
    caps = DEFAULT_CAPABILITIES | {"CAP_SYS_ADMIN", "CAP_SYS_TIME", "CAP_SYS_PTRACE", "CAP_BPF"}
    profile = seccomp.default_profile(caps, "x86_64")
    allowed = allowed_unconditionally(profile)
    assert {"mount", "setns", "sethostname", "clone", "clone3", "clock_settime", "kcmp"} <= allowed
    # With CAP_SYS_ADMIN, clone is not restricted and clone3 is allowed.
    assert all("args" not in r for r in rules_for(profile, "clone"))
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in rules_for(profile, "clone3"))


def test_clone_without_sys_admin_may_not_make_namespaces() -> None:
    profile = seccomp.default_profile(DEFAULT_CAPABILITIES, "x86_64")
    (clone,) = rules_for(profile, "clone")
    assert clone["args"] == [
        {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    assert rules_for(profile, "clone3") == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    ]
    s390 = seccomp.default_profile(DEFAULT_CAPABILITIES, "s390x")
    assert rules_for(s390, "clone")[0]["args"][0]["index"] == 1
    assert s390["architectures"] == ["SCMP_ARCH_S390", "SCMP_ARCH_S390X"]


def test_socket_refuses_af_alg_and_af_vsock() -> None:
    rules = rules_for(seccomp.default_profile(DEFAULT_CAPABILITIES, "x86_64"), "socket")
    conditions = [(r["args"][0]["op"], r["args"][0]["value"]) for r in rules]
    assert conditions == [("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]

    def allowed(family: int) -> bool:
        checks = {"SCMP_CMP_LT": int.__lt__, "SCMP_CMP_EQ": int.__eq__, "SCMP_CMP_GT": int.__gt__}
        return any(checks[op](family, value) for op, value in conditions)

    assert [f for f in range(50) if not allowed(f)] == [38, 40]


def test_personality_is_limited_to_known_values() -> None:
    rules = rules_for(seccomp.default_profile(DEFAULT_CAPABILITIES, "x86_64"), "personality")
    assert [r["args"][0]["value"] for r in rules] == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]


def test_architecture_names_and_unknown_machines() -> None:
    arm = seccomp.default_profile(DEFAULT_CAPABILITIES, "arm64")
    assert arm["architectures"] == ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]
    assert "set_tls" in allowed_unconditionally(arm)
    assert "arch_prctl" not in allowed_unconditionally(arm)
    assert seccomp.default_profile(DEFAULT_CAPABILITIES, "sparc")["architectures"] == []


def sc(**fields: object) -> cri.LinuxContainerSecurityContext:
    return cri.LinuxContainerSecurityContext(**fields)


LOCALHOST = cri.SecurityProfile.Localhost


@pytest.mark.parametrize(
    ("context", "kind"),
    [
        (sc(), "unconfined"),
        (sc(seccomp=cri.SecurityProfile()), "runtime/default"),
        (
            sc(seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.Unconfined)),
            "unconfined",
        ),
        (sc(seccomp_profile_path="runtime/default"), "runtime/default"),
        (sc(seccomp_profile_path="docker/default"), "runtime/default"),
        (sc(seccomp_profile_path="unconfined"), "unconfined"),
        (sc(seccomp_profile_path="localhost//p.json"), "localhost"),
        (sc(seccomp=cri.SecurityProfile(profile_type=LOCALHOST, localhost_ref="/p")), "localhost"),
    ],
)
def test_profile_choice(context: cri.LinuxContainerSecurityContext, kind: str) -> None:
    assert seccomp.profile_choice(context)[0] == kind


def test_profile_choice_errors() -> None:
    with pytest.raises(InvalidArgument, match="unknown seccomp profile"):
        seccomp.profile_choice(sc(seccomp_profile_path="bogus"))
    with pytest.raises(InvalidArgument, match="only for Localhost"):
        seccomp.profile_choice(sc(seccomp=cri.SecurityProfile(localhost_ref="/p")))


BLOCK_HOSTNAME = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}],
}


def test_localhost_profile_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "block.json"
    path.write_text(json.dumps({**BLOCK_HOSTNAME, "comment": "dropped"}))
    context = sc(seccomp=cri.SecurityProfile(profile_type=LOCALHOST, localhost_ref=str(path)))
    assert seccomp.seccomp_for(context, DEFAULT_CAPABILITIES, "x86_64") == BLOCK_HOSTNAME
    legacy = sc(seccomp_profile_path=f"localhost/{path}")
    assert seccomp.seccomp_for(legacy, DEFAULT_CAPABILITIES, "x86_64") == BLOCK_HOSTNAME


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{", "is not JSON"),
        ("[]", "not a JSON object"),
        ('{"defaultAction": "SCMP_ACT_NOPE"}', "defaultAction"),
        ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}', "not a list"),
        ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"]}]}', "action"),
        ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_LOG"}]}', "names"),
    ],
)
def test_bad_localhost_profiles_are_invalid(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidArgument, match=message):
        seccomp.load_profile(str(path))


def test_localhost_profile_needs_an_absolute_path() -> None:
    with pytest.raises(InvalidArgument, match="absolute"):
        seccomp.load_profile("relative.json")


def test_a_directory_profile_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="is a directory"):
        seccomp.load_profile(str(tmp_path))  # a directory


def test_privileged_is_never_filtered(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.json")
    context = sc(
        privileged=True, seccomp=cri.SecurityProfile(profile_type=LOCALHOST, localhost_ref=missing)
    )
    assert seccomp.seccomp_for(context, KNOWN, "x86_64") is None


# Capabilities.


def caps(add: tuple[str, ...] = (), drop: tuple[str, ...] = (), ambient: tuple[str, ...] = ()):
    return cri.Capability(
        add_capabilities=add, drop_capabilities=drop, add_ambient_capabilities=ambient
    )


def test_default_capabilities_are_containerds_14() -> None:
    sets = capability_sets(caps(), False, None)
    assert set(sets.granted) == DEFAULT_CAPABILITIES and len(sets.granted) == 14
    assert sets.granted[0] == "CAP_CHOWN"  # capability-number order
    oci = sets.to_oci()
    assert oci["bounding"] == oci["effective"] == oci["permitted"] == list(sets.granted)
    assert oci["inheritable"] == oci["ambient"] == []


def test_add_and_drop_take_names_without_or_with_the_prefix() -> None:
    sets = capability_sets(caps(add=("net_admin", "CAP_SYS_TIME"), drop=("KILL",)), False, None)
    assert {"CAP_NET_ADMIN", "CAP_SYS_TIME"} <= set(sets.granted)
    assert "CAP_KILL" not in sets.granted


def test_all_is_applied_before_the_named_entries() -> None:
    assert capability_sets(caps(add=("ALL",), drop=("CHOWN",)), False, None).granted == tuple(
        c for c in KNOWN if c != "CAP_CHOWN"
    )
    assert capability_sets(caps(add=("SYS_ADMIN",), drop=("all",)), False, None).granted == (
        "CAP_SYS_ADMIN",
    )
    assert capability_sets(caps(drop=("ALL",)), False, None).granted == ()


def test_the_host_bounding_set_limits_everything() -> None:
    sets = capability_sets(caps(add=("ALL",)), False, NO_RESOURCE)
    assert "CAP_SYS_RESOURCE" not in sets.granted and sets.withheld == ()
    sets = capability_sets(caps(add=("SYS_RESOURCE",)), False, NO_RESOURCE)
    assert "CAP_SYS_RESOURCE" not in sets.granted
    assert sets.withheld == ("CAP_SYS_RESOURCE",)


def test_privileged_gets_every_capability_the_host_holds() -> None:
    assert capability_sets(caps(drop=("ALL",)), True, None).granted == KNOWN
    assert set(capability_sets(caps(), True, NO_RESOURCE).granted) == NO_RESOURCE


def test_ambient_capabilities_go_into_all_five_sets() -> None:
    oci = capability_sets(caps(drop=("ALL",), ambient=("NET_BIND_SERVICE",)), False, None).to_oci()
    for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        assert oci[key] == ["CAP_NET_BIND_SERVICE"], key


def test_unknown_capabilities_are_invalid() -> None:
    with pytest.raises(InvalidArgument, match="unknown capability"):
        capability_name("FLY")
    with pytest.raises(InvalidArgument):
        capability_sets(caps(add=("FLY",)), False, None)


# Mounts.


def cri_mount(host: str, container: str = "/mnt", **fields: object) -> cri.Mount:
    return cri.Mount(host_path=host, container_path=container, **fields)


def test_default_mounts() -> None:
    defaults = {m["destination"]: m for m in mounts.default_mounts()}
    assert list(defaults) == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
    ]  # fmt: skip
    assert defaults["/sys"]["options"][-1] == "ro"
    assert defaults["/sys/fs/cgroup"]["options"] == [
        "nosuid", "noexec", "nodev", "relatime", "ro",
    ]  # fmt: skip
    privileged = {m["destination"]: m for m in mounts.default_mounts(privileged=True)}
    assert privileged["/sys"]["options"][-1] == privileged["/sys/fs/cgroup"]["options"][-1] == "rw"
    bound = {m["destination"]: m for m in mounts.default_mounts(bind_sys=True)}
    assert bound["/sys"] == {
        "destination": "/sys",
        "type": "bind",
        "source": "/sys",
        "options": ["rbind", "rro", "nosuid", "nodev", "noexec"],
    }


@pytest.mark.parametrize(
    ("propagation", "option", "rootfs"),
    [
        (cri.PROPAGATION_PRIVATE, "rprivate", ""),
        (cri.PROPAGATION_HOST_TO_CONTAINER, "rslave", "rslave"),
        (cri.PROPAGATION_BIDIRECTIONAL, "rshared", "rshared"),
    ],
)
def test_cri_mount_propagation(tmp_path: Path, propagation: int, option: str, rootfs: str) -> None:
    mount, needed = mounts.cri_mount(cri_mount(str(tmp_path), propagation=propagation), True)
    assert mount == {
        "destination": "/mnt",
        "type": "bind",
        "source": str(tmp_path),
        "options": ["rbind", option, "rw"],
    }
    assert needed == rootfs


def test_cri_mount_readonly_and_recursive_readonly(tmp_path: Path) -> None:
    ro, _ = mounts.cri_mount(cri_mount(str(tmp_path), readonly=True), True)
    assert ro["options"] == ["rbind", "rprivate", "ro"]
    rro, _ = mounts.cri_mount(
        cri_mount(str(tmp_path), readonly=True, recursive_read_only=True), True
    )
    assert rro["options"] == ["rbind", "rprivate", "rro"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"recursive_read_only": True}, "conflicts with a RW mount"),
        (
            {"recursive_read_only": True, "readonly": True, "propagation": 1},
            "needs private propagation, got PROPAGATION_HOST_TO_CONTAINER",
        ),
        (
            {"recursive_read_only": True, "readonly": True, "propagation": 2},
            "needs private propagation, got PROPAGATION_BIDIRECTIONAL",
        ),
    ],
)
def test_recursive_readonly_rules(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        mounts.cri_mount(cri_mount(str(tmp_path), **fields), True)


def test_recursive_readonly_needs_host_support(tmp_path: Path) -> None:
    mount = cri_mount(str(tmp_path), readonly=True, recursive_read_only=True)
    with pytest.raises(InvalidArgument, match="not supported on this host"):
        mounts.cri_mount(mount, False)


def test_cri_mount_source_must_exist_and_symlinks_resolve(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        mounts.cri_mount(cri_mount(str(tmp_path / "missing")), True)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    mount, _ = mounts.cri_mount(cri_mount(str(tmp_path / "link")), True)
    assert mount["source"] == str(tmp_path / "real")


def test_cri_mount_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not absolute"):
        mounts.cri_mount(cri_mount(str(tmp_path), "relative"), True)
    with pytest.raises(InvalidArgument, match="no host_path"):
        mounts.cri_mount(cri_mount(""), True)
    with pytest.raises(Unimplemented, match="image volume"):
        mounts.cri_mount(cri_mount("", image=cri.ImageSpec(image="busybox")), True)
    mapped = cri_mount(str(tmp_path), uidMappings=[cri.IDMapping(length=1)])
    with pytest.raises(InvalidArgument, match="ID mappings, which need a pod with a user"):
        mounts.cri_mount(mapped, True)


def test_cri_mount_binds_the_staged_id_mapped_copy(tmp_path: Path) -> None:
    mapping = [cri.IDMapping(host_id=1000, length=10)]
    mapped = cri_mount(str(tmp_path), uidMappings=mapping, gidMappings=mapping)
    mount, propagation = mounts.cri_mount(mapped, True, "/run/pycrid/oci/idmap/c/m0")
    assert mount["source"] == "/run/pycrid/oci/idmap/c/m0"
    assert mount["destination"] == "/mnt" and mount["options"][:2] == ["rbind", "rprivate"]
    assert propagation == ""


def test_assemble_order_and_overrides() -> None:
    defaults = mounts.default_mounts()
    extras = [
        mounts.bind("/pod/hosts", "/etc/hosts"),
        mounts.shm_mount("/pod/shm"),
        mounts.bind("/pod/resolv", "/etc/resolv.conf"),
    ]
    cri_mounts = [mounts.bind("/a/b", "/data/deep/er"), mounts.bind("/mine", "/etc/hosts/")]
    result = mounts.assemble(defaults, extras, cri_mounts)
    destinations = [m["destination"] for m in result]
    assert destinations[:6] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ]
    # Binds follow, shallow first; the CRI's /etc/hosts replaces the pod's.
    assert destinations[6:] == ["/etc/hosts/", "/dev/shm", "/etc/resolv.conf", "/data/deep/er"]
    assert result[6]["source"] == "/mine"


def test_a_cri_dev_mount_replaces_every_default_under_dev() -> None:
    result = mounts.assemble(mounts.default_mounts(), [], [mounts.bind("/host/dev", "/dev")])
    assert [m["destination"] for m in result] == ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]


def test_image_volumes_skip_those_the_cri_mounts() -> None:
    assert mounts.image_volumes(["/data", "/cache/"], [cri_mount("/x", "/cache")]) == ["/data"]
    assert mounts.volume_mounts({"/data": "/c/volumes/1"}) == [
        {
            "destination": "/data",
            "type": "bind",
            "source": "/c/volumes/1",
            "options": ["rbind", "rprivate", "rw"],
        }
    ]


def test_rootfs_propagation_takes_the_strongest() -> None:
    assert mounts.rootfs_propagation([]) == ""
    assert mounts.rootfs_propagation(["", "rslave"]) == "rslave"
    assert mounts.rootfs_propagation(["rshared", "rslave", ""]) == "rshared"


# Resources.


def test_resources_only_what_is_set() -> None:
    notes: list[str] = []
    assert linux_resources(cri.LinuxContainerResources(), NodeFacts(), notes) == {}
    res = cri.LinuxContainerResources(
        cpu_period=100000,
        cpu_quota=50000,
        cpu_shares=512,
        cpuset_cpus="0-1",
        cpuset_mems="0",
        memory_limit_in_bytes=64 << 20,
        hugepage_limits=[cri.HugepageLimit(page_size="2MB", limit=0)],
    )
    assert linux_resources(res, NodeFacts(), notes) == {
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "memory": {"limit": 64 << 20, "swap": 64 << 20},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
    }
    assert notes == []


def test_swap_follows_the_limit_only_with_a_swap_controller() -> None:
    res = cri.LinuxContainerResources(memory_limit_in_bytes=100, memory_swap_limit_in_bytes=300)
    assert linux_resources(res, NodeFacts(), [])["memory"] == {"limit": 100, "swap": 300}
    no_swap = NodeFacts(swap_controller=False)
    assert linux_resources(res, no_swap, [])["memory"] == {"limit": 100}


def test_hugepages_without_the_controller_are_skipped_with_a_note() -> None:
    notes: list[str] = []
    res = cri.LinuxContainerResources(hugepage_limits=[cri.HugepageLimit(page_size="2MB")])
    assert linux_resources(res, NodeFacts(hugetlb_controller=False), notes) == {}
    assert notes == ["hugepage limits skipped: no hugetlb cgroup controller on this host"]


def test_unified_needs_cgroup_v2() -> None:
    res = cri.LinuxContainerResources(unified={"memory.high": "1000000"})
    assert linux_resources(res, NodeFacts(cgroup_v2=True), [])["unified"] == {
        "memory.high": "1000000"
    }
    with pytest.raises(InvalidArgument, match="cgroup v2"):
        linux_resources(res, NodeFacts(cgroup_v2=False), [])


def test_negative_resources_are_invalid() -> None:
    with pytest.raises(InvalidArgument, match="cpu_shares"):
        linux_resources(cri.LinuxContainerResources(cpu_shares=-1), NodeFacts(), [])


# Namespaces.


def userns(mode: int = cri.POD, uids=None, gids=None) -> cri.NamespaceOption:
    mapping = [cri.IDMapping(host_id=65536, container_id=0, length=65536)]
    return cri.NamespaceOption(
        userns_options=cri.UserNamespace(
            mode=mode,
            uids=mapping if uids is None else uids,
            gids=mapping if gids is None else gids,
        )
    )


def test_user_namespace_modes() -> None:
    assert user_namespace(cri.NamespaceOption()) is None
    assert user_namespace(userns(cri.NODE, [], [])) is None
    assert user_namespace(userns()) == {
        "uidMappings": [{"containerID": 0, "hostID": 65536, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 65536, "size": 65536}],
    }
    critest = [cri.IDMapping(host_id=1000, container_id=0, length=100000)]
    assert user_namespace(userns(uids=critest, gids=critest)) is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (userns(cri.CONTAINER), "mode CONTAINER is not supported"),
        (userns(cri.TARGET), "mode TARGET is not supported"),
        (userns(cri.NODE), "NODE takes no ID mappings"),
        (userns(uids=[]), "one UID mapping, got 0"),
        (
            userns(uids=[cri.IDMapping(host_id=1000, length=10)] * 2),
            "one UID mapping, got 2",
        ),
        (
            userns(gids=[cri.IDMapping(host_id=1000, container_id=1, length=10)]),
            "GID mapping must start at container ID 0",
        ),
        (userns(uids=[cri.IDMapping(host_id=1000, length=0)]), "length 0"),
        (
            userns(uids=[cri.IDMapping(host_id=0xFFFFFFFF, length=2)]),
            "host_id 4294967295 with length 2 reaches beyond host ID 4294967294",
        ),
        (
            userns(gids=[cri.IDMapping(host_id=0xFFFFFF00, length=0x100)]),
            "GID mapping.s host_id 4294967040 with length 256 reaches beyond",
        ),
        (
            userns(uids=[cri.IDMapping(host_id=0, length=65536)]),
            "host_id 0 would make the container's root the host's root",
        ),
    ],
)
def test_invalid_user_namespaces(options: cri.NamespaceOption, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        user_namespace(options)


def test_no_options_and_node_mode_are_the_same_user_namespace() -> None:
    assert same_user_namespace(cri.NamespaceOption(), userns(cri.NODE, [], []))
    assert not same_user_namespace(cri.NamespaceOption(), userns())
    assert same_user_namespace(userns(), userns())


def test_sandbox_namespaces() -> None:
    pod = cri.NamespaceOption()
    assert sandbox_namespaces(pod, "/run/netns/x", None) == [
        {"type": "mount"},
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "network", "path": "/run/netns/x"},
    ]
    host = cri.NamespaceOption(network=cri.NODE, pid=cri.NODE, ipc=cri.NODE)
    assert sandbox_namespaces(host, "", {"uidMappings": []}) == [
        {"type": "mount"},
        {"type": "user"},
    ]


def test_containers_join_the_pause_process() -> None:
    pod = cri.NamespaceOption()
    assert container_namespaces(cri.NamespaceOption(), pod, pause_pid=42) == [
        {"type": "mount"},
        {"type": "network", "path": "/proc/42/ns/net"},
        {"type": "uts", "path": "/proc/42/ns/uts"},
        {"type": "ipc", "path": "/proc/42/ns/ipc"},
        {"type": "pid", "path": "/proc/42/ns/pid"},
    ]
    joined = container_namespaces(
        cri.NamespaceOption(pid=cri.CONTAINER),
        pod,
        pause_pid=42,
        netns_path="/run/netns/x",
        userns={"uidMappings": []},
        cgroup_namespace=True,
    )
    assert {"type": "network", "path": "/run/netns/x"} in joined
    assert {"type": "pid"} in joined
    assert {"type": "user", "path": "/proc/42/ns/user"} in joined
    assert {"type": "cgroup"} in joined


def test_host_namespaces_are_not_joined() -> None:
    host = cri.NamespaceOption(network=cri.NODE, pid=cri.NODE, ipc=cri.NODE)
    assert container_namespaces(host, host, pause_pid=42) == [{"type": "mount"}]
    # A container asking for the pod's PID namespace of a host-PID pod stays in the host's.
    assert container_namespaces(cri.NamespaceOption(network=2, ipc=2), host, pause_pid=42) == [
        {"type": "mount"}
    ]


def test_target_pid_namespace() -> None:
    options = cri.NamespaceOption(pid=cri.TARGET, target_id="abc")
    result = container_namespaces(options, cri.NamespaceOption(), pause_pid=42, target_pid=77)
    assert {"type": "pid", "path": "/proc/77/ns/pid"} in result
    with pytest.raises(InvalidArgument, match="target 'abc'"):
        container_namespaces(options, cri.NamespaceOption(), pause_pid=42)


def test_joining_needs_a_pause_process() -> None:
    with pytest.raises(FailedPrecondition):
        container_namespaces(cri.NamespaceOption(), cri.NamespaceOption(), pause_pid=0)


# The command line, the environment and the working directory.


IMAGE = ImageConfig(entrypoint=("/entry",), cmd=("default", "args"))


@pytest.mark.parametrize(
    ("command", "args", "image", "argv"),
    [
        ((), (), IMAGE, ["/entry", "default", "args"]),
        (("/bin/sh",), (), IMAGE, ["/bin/sh"]),
        (("/bin/sh",), ("-c", "x"), IMAGE, ["/bin/sh", "-c", "x"]),
        ((), ("other",), IMAGE, ["/entry", "other"]),
        ((), (), ImageConfig(cmd=("top",)), ["top"]),
        ((), (), ImageConfig(entrypoint=("",), cmd=("top",)), ["top"]),
        ((), ("ls",), ImageConfig(entrypoint=("",)), ["ls"]),
    ],
)
def test_command_line_rules(command, args, image: ImageConfig, argv: list[str]) -> None:
    config = cri.ContainerConfig(command=command, args=args)
    assert process.container_args(config, image) == argv


def test_no_command_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="no command"):
        process.container_args(cri.ContainerConfig(), ImageConfig())
    with pytest.raises(InvalidArgument, match="empty"):
        process.container_args(cri.ContainerConfig(command=[""]), ImageConfig())
    with pytest.raises(InvalidArgument, match="pause image"):
        process.sandbox_args(ImageConfig())
    assert process.sandbox_args(ImageConfig(entrypoint=("/pause",))) == ["/pause"]


def test_environment_order_and_overrides() -> None:
    image = ImageConfig(env=("PATH=/image/bin", "A=image", "B=image", "GONE"))
    config = cri.ContainerConfig(
        envs=[cri.KeyValue(key="B", value=b"cri"), cri.KeyValue(key="C", value=b"\xff")]
    )
    env = process.container_env(config, image, "pod-host", "/home/u")
    assert env == [
        "PATH=/image/bin",
        "HOSTNAME=pod-host",
        "A=image",
        "B=cri",
        "C=\ufffd",
        "HOME=/home/u",
    ]


def test_environment_defaults() -> None:
    env = process.container_env(cri.ContainerConfig(tty=True), ImageConfig(), "h", "/")
    assert env == [f"PATH={process.DEFAULT_PATH}", "HOSTNAME=h", "HOME=/", "TERM=xterm"]
    config = cri.ContainerConfig(envs=[cri.KeyValue(key="HOME", value=b"/x")])
    assert "HOME=/x" in process.container_env(config, ImageConfig(env=("HOME=/img",)), "h", "/")


def test_a_bare_name_unsets() -> None:
    assert process.merge_env(["A=1", "B=2"], ["A", "C=3", "A=4"]) == ["A=4", "B=2", "C=3"]


def test_working_dir() -> None:
    assert process.working_dir("", "") == "/"
    assert process.working_dir("", "srv/app") == "/srv/app"
    assert process.working_dir("/work", "/srv") == "/work"
    with pytest.raises(InvalidArgument, match="not an absolute path"):
        process.working_dir("work", "")


# Devices.


def test_device_nodes_from_the_host() -> None:
    null = device_node("/dev/null")
    assert null is not None
    assert (null["type"], null["major"], null["minor"], null["path"]) == ("c", 1, 3, "/dev/null")
    assert device_node("/etc/hostname") is None


def test_cri_devices_and_their_rules(tmp_path: Path) -> None:
    os.symlink("/dev/null", tmp_path / "link")
    devices = [
        cri.Device(
            host_path=str(tmp_path / "link"), container_path="/dev/mynull", permissions="rw"
        ),
        cri.Device(host_path="/dev/zero"),
    ]
    nodes, rules = cri_devices(devices)
    assert [(n["path"], n["major"], n["minor"]) for n in nodes] == [
        ("/dev/mynull", 1, 3),
        ("/dev/zero", 1, 5),
    ]
    assert rules == [
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    ]


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (cri.Device(host_path="/dev/null", permissions="rwx"), "rwm"),
        (cri.Device(host_path="/no/such/device"), "does not exist"),
        (cri.Device(host_path="/etc/hostname"), "not a device node"),
        (cri.Device(host_path="/dev/null", container_path="dev/null"), "not absolute"),
        (cri.Device(container_path="/dev/x"), "no host_path"),
    ],
)
def test_bad_devices_are_invalid(device: cri.Device, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        cri_devices([device])


def test_a_device_directory_gives_its_nodes(tmp_path: Path) -> None:
    nodes = nodes_under("/dev", "/dev")
    paths = {n["path"] for n in nodes}
    assert "/dev/null" in paths
    assert not any(p.startswith(("/dev/pts/", "/dev/shm/")) for p in paths)
    assert "/dev/console" not in paths


def test_a_huge_device_directory_is_refused_without_walking_it_all(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"d{i}").mkdir()
        for j in range(10):
            (tmp_path / f"d{i}" / f"f{j}").touch()
    with pytest.raises(InvalidArgument, match="more than 100 entries"):
        nodes_under(str(tmp_path), "/dev/x", limit=100)
    assert nodes_under(str(tmp_path), "/dev/x", limit=400) == []
