"""CRI configs translated into Docker create bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pycrid.adapters.docker import spec
from pycrid.adapters.errors import InvalidArgument, Unimplemented
from pycrid.adapters.node import podnetwork
from pycrid.api.cri import api_pb2 as cri

SANDBOX_ID = "s" * 64


def sandbox_plan(mode: str = "none", publish: bool = False) -> spec.SandboxPlan:
    return spec.SandboxPlan(
        image="sha256:pause",
        name="k8s_POD",
        labels={"l": "v"},
        network_mode=mode,
        publish_ports=publish,
    )


def pod(**linux: object) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="p", namespace="n", uid="u"),
        hostname="pod-host",
        linux=cri.LinuxPodSandboxConfig(**linux),
    )


def plan(sandbox: cri.PodSandboxConfig | None = None, **fields: object) -> spec.ContainerPlan:
    values: dict = {
        "image_id": "sha256:image",
        "name": "k8s_c",
        "labels": {},
        "sandbox_id": SANDBOX_ID,
        "sandbox_config": sandbox or pod(),
        "host": spec.HostFacts(apparmor=False, negative_oom_score_adj=False),
    }
    values.update(fields)
    return spec.ContainerPlan(**values)


def container(**fields: object) -> cri.ContainerConfig:
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="c"), image=cri.ImageSpec(image="busybox"), **fields
    )


def security(**fields: object) -> cri.LinuxContainerConfig:
    return cri.LinuxContainerConfig(security_context=cri.LinuxContainerSecurityContext(**fields))


# The pause container.


def test_sandbox_in_cni_mode_has_no_docker_network_and_shares_ipc() -> None:
    body = spec.sandbox_create_body(pod(sysctls={"kernel.shm_rmid_forced": "1"}), sandbox_plan())
    host = body["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["IpcMode"] == "shareable"
    assert "PidMode" not in host
    assert host["Sysctls"] == {"kernel.shm_rmid_forced": "1"}
    assert host["LogConfig"]["Type"] == "json-file"
    assert body["Hostname"] == "pod-host"
    assert body["Healthcheck"] == {"Test": ["NONE"]}
    assert "ExposedPorts" not in body


def test_sandbox_host_namespaces_and_cgroup_parent() -> None:
    namespaces = cri.NamespaceOption(network=cri.NODE, pid=cri.NODE, ipc=cri.NODE)
    config = pod(
        cgroup_parent="/kubepods/pod1",
        security_context=cri.LinuxSandboxSecurityContext(namespace_options=namespaces),
    )
    body = spec.sandbox_create_body(config, sandbox_plan("host"))
    host = body["HostConfig"]
    assert (host["NetworkMode"], host["IpcMode"], host["PidMode"]) == ("host", "host", "host")
    assert host["CgroupParent"] == "/kubepods/pod1"
    assert "Hostname" not in body


def test_sandbox_ports_published_in_docker_mode() -> None:
    config = pod()
    config.port_mappings.extend(
        [
            cri.PortMapping(container_port=80, host_port=8080),
            cri.PortMapping(
                container_port=53, host_port=5353, protocol=cri.UDP, host_ip="127.0.0.1"
            ),
            cri.PortMapping(container_port=443),
        ]
    )
    body = spec.sandbox_create_body(config, sandbox_plan("bridge", publish=True))
    assert body["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "443/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
    }
    assert podnetwork.cni_port_mappings(list(config.port_mappings)) == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
    ]


def test_port_out_of_range_is_invalid() -> None:
    with pytest.raises(InvalidArgument):
        spec.port_bindings([cri.PortMapping(container_port=0, host_port=1)])


def test_resolv_conf() -> None:
    dns = cri.DNSConfig(
        servers=["10.0.0.10", "10.0.0.11"], searches=["a.svc", "svc"], options=["ndots:5"]
    )
    assert spec.resolv_conf(dns) == (
        "nameserver 10.0.0.10\nnameserver 10.0.0.11\nsearch a.svc svc\noptions ndots:5\n"
    )
    assert not spec.wants_own_resolv_conf(pod())


# App containers.


def test_command_args_env_tty_and_the_pod_namespaces() -> None:
    config = container(
        command=["/bin/sh"],
        args=["-c", "echo hi"],
        envs=[cri.KeyValue(key="A", value=b"1"), cri.KeyValue(key="B", value=b"x=y")],
        working_dir="/work",
        tty=True,
        stdin=True,
        stdin_once=True,
        stop_signal=cri.SIGINT,
    )
    body = spec.container_create_body(config, plan())
    assert body["Entrypoint"] == ["/bin/sh"]
    assert body["Cmd"] == ["-c", "echo hi"]
    assert body["Env"] == ["A=1", "B=x=y"]
    assert body["WorkingDir"] == "/work"
    assert (body["Tty"], body["OpenStdin"], body["StdinOnce"]) == (True, True, True)
    assert body["StopSignal"] == "SIGINT"
    host = body["HostConfig"]
    assert host["NetworkMode"] == f"container:{SANDBOX_ID}"
    assert host["IpcMode"] == f"container:{SANDBOX_ID}"
    assert host["PidMode"] == f"container:{SANDBOX_ID}"  # POD is the CRI's zero value
    assert host["SecurityOpt"] == ["seccomp=unconfined"]


def test_args_alone_keep_the_image_entrypoint() -> None:
    body = spec.container_create_body(container(args=["serve"]), plan())
    assert "Entrypoint" not in body
    assert body["Cmd"] == ["serve"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(cri.POD, f"container:{SANDBOX_ID}"), (cri.NODE, "host"), (cri.TARGET, "container:target")],
)
def test_pid_modes(mode: int, expected: str) -> None:
    config = container(linux=security(namespace_options=cri.NamespaceOption(pid=mode)))
    body = spec.container_create_body(config, plan(pid_target_id="target"))
    assert body["HostConfig"]["PidMode"] == expected


def test_container_pid_mode_is_private() -> None:
    config = container(linux=security(namespace_options=cri.NamespaceOption(pid=cri.CONTAINER)))
    assert "PidMode" not in spec.container_create_body(config, plan())["HostConfig"]


def test_target_pid_mode_needs_a_target() -> None:
    config = container(linux=security(namespace_options=cri.NamespaceOption(pid=cri.TARGET)))
    with pytest.raises(InvalidArgument):
        spec.container_create_body(config, plan())


def test_host_network_pod_shares_the_host_uts_namespace() -> None:
    namespaces = cri.NamespaceOption(network=cri.NODE, ipc=cri.NODE)
    sandbox = pod(security_context=cri.LinuxSandboxSecurityContext(namespace_options=namespaces))
    host = spec.container_create_body(container(), plan(sandbox))["HostConfig"]
    assert host["UTSMode"] == "host"
    assert host["IpcMode"] == "host"


@pytest.mark.parametrize(
    ("fields", "user"),
    [
        ({"run_as_user": cri.Int64Value(value=0)}, "0"),
        (
            {"run_as_user": cri.Int64Value(value=1000), "run_as_group": cri.Int64Value(value=5)},
            "1000:5",
        ),
        ({"run_as_username": "www-data"}, "www-data"),
        ({"run_as_username": "www-data", "run_as_group": cri.Int64Value(value=33)}, "www-data:33"),
    ],
)
def test_users(fields: dict, user: str) -> None:
    body = spec.container_create_body(container(linux=security(**fields)), plan())
    assert body["User"] == user


def test_group_without_user_is_invalid() -> None:
    config = container(linux=security(run_as_group=cri.Int64Value(value=5)))
    with pytest.raises(InvalidArgument, match="run_as_group"):
        spec.container_create_body(config, plan())


def test_capabilities_groups_paths_and_flags() -> None:
    config = container(
        linux=security(
            capabilities=cri.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["ALL"]),
            supplemental_groups=[10, 20],
            readonly_rootfs=True,
            no_new_privs=True,
            masked_paths=["/proc/kcore"],
            readonly_paths=["/proc/sys"],
        )
    )
    host = spec.container_create_body(config, plan())["HostConfig"]
    assert host["CapAdd"] == ["NET_ADMIN"]
    assert host["CapDrop"] == ["ALL"]
    assert host["GroupAdd"] == ["10", "20"]
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["MaskedPaths"] == ["/proc/kcore"]
    assert host["ReadonlyPaths"] == ["/proc/sys"]


def test_privileged_container_needs_a_privileged_pod() -> None:
    config = container(linux=security(privileged=True))
    with pytest.raises(InvalidArgument, match="privileged"):
        spec.container_create_body(config, plan())
    privileged_pod = pod(security_context=cri.LinuxSandboxSecurityContext(privileged=True))
    body = spec.container_create_body(config, plan(privileged_pod))
    assert body["HostConfig"]["Privileged"] is True


def test_seccomp_profiles(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text('{ "defaultAction": "SCMP_ACT_ALLOW",\n  "syscalls": [] }')

    def option(**fields: object) -> str:
        return spec.seccomp_option(cri.LinuxContainerSecurityContext(**fields))

    runtime_default = cri.SecurityProfile(profile_type=cri.SecurityProfile.RuntimeDefault)
    unconfined = cri.SecurityProfile(profile_type=cri.SecurityProfile.Unconfined)
    localhost = cri.SecurityProfile(
        profile_type=cri.SecurityProfile.Localhost, localhost_ref=str(profile)
    )
    assert option() == "seccomp=unconfined"
    assert option(seccomp=runtime_default) == ""
    assert option(seccomp=unconfined) == "seccomp=unconfined"
    inline = option(seccomp=localhost)
    assert json.loads(inline.removeprefix("seccomp=")) == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [],
    }
    assert " " not in inline
    assert option(seccomp_profile_path="runtime/default") == ""
    assert option(seccomp_profile_path=f"localhost/{profile}") == inline
    missing = cri.SecurityProfile(
        profile_type=cri.SecurityProfile.Localhost, localhost_ref=str(tmp_path / "absent")
    )
    with pytest.raises(InvalidArgument, match="does not exist"):
        option(seccomp=missing)
    with pytest.raises(InvalidArgument):
        option(seccomp_profile_path="bogus")


def test_apparmor_only_when_the_host_has_it() -> None:
    profile = cri.SecurityProfile(profile_type=cri.SecurityProfile.Localhost, localhost_ref="p")
    context = cri.LinuxContainerSecurityContext(apparmor=profile)
    assert spec.apparmor_option(context, spec.HostFacts(apparmor=False)) == ""
    assert spec.apparmor_option(context, spec.HostFacts(apparmor=True)) == "apparmor=p"


def test_mounts(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    mounts = [
        cri.Mount(container_path="/a", host_path=str(link), readonly=True),
        cri.Mount(
            container_path="/b", host_path=str(real), propagation=cri.PROPAGATION_BIDIRECTIONAL
        ),
    ]
    result = spec.mounts(mounts, resolv_conf_path="/run/pod/resolv.conf")
    assert result[0] == {
        "Type": "bind",
        "Source": str(real),
        "Target": "/a",
        "ReadOnly": True,
        "BindOptions": {"Propagation": "rprivate"},
    }
    assert result[1]["BindOptions"] == {"Propagation": "rshared"}
    assert result[2]["Target"] == "/etc/resolv.conf"
    own = [cri.Mount(container_path="/etc/resolv.conf", host_path=str(real))]
    assert len(spec.mounts(own, resolv_conf_path="/run/pod/resolv.conf")) == 1


def test_missing_host_path_is_invalid_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(InvalidArgument, match="does not exist"):
        spec.mounts([cri.Mount(container_path="/x", host_path=str(missing))])
    assert not missing.exists()


def test_unsupported_mounts(tmp_path: Path) -> None:
    with pytest.raises(Unimplemented):
        spec.mounts([cri.Mount(container_path="/i", image=cri.ImageSpec(image="busybox"))])
    with pytest.raises(InvalidArgument):
        spec.mounts(
            [cri.Mount(container_path="/r", host_path=str(tmp_path), recursive_read_only=True)]
        )


def test_cdi_devices_are_unimplemented() -> None:
    with pytest.raises(Unimplemented):
        spec.container_create_body(container(CDI_devices=[cri.CDIDevice(name="x")]), plan())


def test_devices() -> None:
    assert spec.devices([cri.Device(host_path="/dev/fuse", container_path="/dev/fuse")]) == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}
    ]


def test_resources_and_oom_score_clamping() -> None:
    res = cri.LinuxContainerResources(
        cpu_period=100000,
        cpu_quota=20000,
        cpu_shares=256,
        memory_limit_in_bytes=1 << 26,
        cpuset_cpus="0",
        cpuset_mems="0",
        oom_score_adj=-998,
        hugepage_limits=[cri.HugepageLimit(page_size="2MB", limit=0)],
    )
    without_cap = spec.resources(res, spec.HostFacts(negative_oom_score_adj=False))
    assert without_cap == {
        "CpuShares": 256,
        "CpuPeriod": 100000,
        "CpuQuota": 20000,
        "CpusetCpus": "0",
        "CpusetMems": "0",
        "Memory": 1 << 26,
        "MemorySwap": 1 << 26,
        "OomScoreAdj": 0,
    }
    with_cap = spec.resources(res, spec.HostFacts(negative_oom_score_adj=True))
    assert with_cap["OomScoreAdj"] == -998
    assert "OomScoreAdj" not in spec.update_body(res, spec.HostFacts())
    swap = cri.LinuxContainerResources(memory_limit_in_bytes=100, memory_swap_limit_in_bytes=200)
    assert spec.resources(swap, spec.HostFacts())["MemorySwap"] == 200


@pytest.mark.parametrize("mode", [cri.POD, cri.CONTAINER, cri.TARGET])
@pytest.mark.parametrize(
    "mappings",
    [[], [cri.IDMapping(host_id=0, container_id=0, length=1)], [cri.IDMapping(length=0)]],
)
def test_a_pod_user_namespace_is_unimplemented_whatever_its_mappings(mode, mappings) -> None:
    config = cri.PodSandboxConfig()
    config.linux.security_context.namespace_options.userns_options.CopyFrom(
        cri.UserNamespace(mode=mode, uids=mappings, gids=mappings)
    )
    with pytest.raises(Unimplemented, match="user namespaces other than NODE"):
        spec.sandbox_create_body(config, sandbox_plan())
