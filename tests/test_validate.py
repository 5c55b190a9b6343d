"""Request validation: what every adapter is spared, one case per kind of bad input."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message

from pycrid.adapters.config import LimitsConfig
from pycrid.adapters.errors import InvalidArgument
from pycrid.api.cri import api_pb2 as cri
from pycrid.server.servicers import validate

MIB = "x" * (1 << 20)


def with_fields(config: Message, fields: dict[str, object]) -> Any:
    """``config`` with ``fields`` set; ``a__b`` names field ``b`` of message ``a``."""
    for key, value in fields.items():
        target = config
        *parents, leaf = key.split("__")
        for part in parents:
            target = getattr(target, part)
        if isinstance(value, dict):
            getattr(target, leaf).update(value)
        elif isinstance(value, list):
            getattr(target, leaf).extend(value)
        else:
            setattr(target, leaf, value)
    return config


def pod(**fields: object) -> cri.PodSandboxConfig:
    metadata = cri.PodSandboxMetadata(name="web", namespace="ns", uid="u1")
    return with_fields(cri.PodSandboxConfig(metadata=metadata), fields)


def container(**fields: object) -> cri.ContainerConfig:
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="app"), image=cri.ImageSpec(image="busybox")
    )
    return with_fields(config, fields)


def test_a_good_pod_and_container_pass() -> None:
    validate.sandbox_config(
        pod(
            hostname="web-0.example",
            log_directory="/var/log/pods/x",
            port_mappings=[cri.PortMapping(container_port=80, host_port=8080, host_ip="::1")],
            linux__sysctls={"kernel.shm_rmid_forced": "1", "net.ipv4.ip_forward": "1"},
        )
    )
    validate.container_config(
        container(
            log_path="app/0.log",
            envs=[cri.KeyValue(key="A", value=b"b=c")],
            mounts=[cri.Mount(container_path="/data", host_path="/tmp")],
        )
    )


@pytest.mark.parametrize(
    "config",
    [
        pod(metadata__name="a\x00b"),
        pod(metadata__name=MIB),
        pod(metadata__namespace=""),
        pod(metadata__name="a/b"),
        pod(hostname=MIB),
        pod(hostname="Not_A_Host"),
        pod(log_directory="relative/dir"),
        pod(port_mappings=[cri.PortMapping(container_port=80, host_port=65536)]),
        pod(port_mappings=[cri.PortMapping(container_port=0)]),
        pod(port_mappings=[cri.PortMapping(container_port=70000)]),
        pod(port_mappings=[cri.PortMapping(container_port=80, host_port=-1)]),
        pod(port_mappings=[cri.PortMapping(container_port=80, protocol=99)]),
        pod(port_mappings=[cri.PortMapping(container_port=80, host_ip="not-an-ip")]),
        pod(
            port_mappings=[
                cri.PortMapping(container_port=80, host_port=8080),
                cri.PortMapping(container_port=81, host_port=8080),
            ]
        ),
        pod(linux__sysctls={"kernel.panic": "1"}),
        pod(linux__sysctls={"unknown.key": "1"}),
        pod(linux__sysctls={"../..": "1"}),
        pod(linux__sysctls={"": "1"}),
        pod(linux__sysctls={"kernel.shm_rmid_forced": MIB}),
        pod(
            linux__sysctls={"net.ipv4.ip_forward": "1"},
            linux__security_context__namespace_options__network=cri.NODE,
        ),
        pod(dns_config__options=["ndots:5\nnameserver 6.6.6.6"]),
        pod(dns_config__servers=["not-an-ip"]),
        pod(dns_config__searches=["a b"]),
        pod(linux__cgroup_parent="/../etc"),
        pod(linux__security_context__namespace_options__pid=42),
    ],
)
def test_bad_pods_are_invalid_arguments(config: cri.PodSandboxConfig) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate.sandbox_config(config)
    assert len(str(refused.value)) < 200  # never echoes the 1 MiB input


@pytest.mark.parametrize(
    "config",
    [
        container(metadata__name=""),
        container(log_path="../../etc/x"),
        container(log_path="/etc/passwd"),
        container(log_path="."),
        container(log_path="a/"),
        container(log_path="a\x00b"),
        container(log_path=MIB),
        container(envs=[cri.KeyValue(key="A", value=b"a\x00b")]),
        container(envs=[cri.KeyValue(key="", value=b"x")]),
        container(mounts=[cri.Mount(container_path="/" + "x" * (1 << 20))]),
        container(mounts=[cri.Mount(container_path="relative")]),
        container(mounts=[cri.Mount(container_path="/a", propagation=7)]),
        container(devices=[cri.Device(container_path="/dev/x", host_path="/nonexistent")]),
        container(devices=[cri.Device(container_path="/dev/x", host_path="/etc/hostname")]),
        container(
            devices=[cri.Device(container_path="/d", host_path="/dev/null", permissions="rwx")]
        ),
        container(linux__resources__cpu_quota=2**62 + 1),
        container(linux__resources__cpu_shares=-5),
        container(linux__resources__cpu_period=10),
        container(linux__resources__oom_score_adj=5000),
        container(linux__resources__cpuset_cpus="0-3;rm"),
        container(stop_signal=999),
        container(working_dir="relative"),
        container(working_dir="/proc/x"),
        container(working_dir="/sys/fs/x"),
        container(working_dir="/etc/hostname"),
        container(linux__resources__memory_swap_limit_in_bytes=64 << 20),
        container(
            linux__resources__memory_limit_in_bytes=128 << 20,
            linux__resources__memory_swap_limit_in_bytes=64 << 20,
        ),
        container(command=["a" * (1 << 20)]),
        container(labels={"a": "b\x00"}),
    ],
)
def test_bad_containers_are_invalid_arguments(config: cri.ContainerConfig) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate.container_config(config)
    assert len(str(refused.value)) < 200


def test_swap_at_or_above_the_memory_limit_and_ordinary_working_dirs_pass() -> None:
    validate.container_config(
        container(
            working_dir="/procs/x",
            linux__resources__memory_limit_in_bytes=64 << 20,
            linux__resources__memory_swap_limit_in_bytes=64 << 20,
        )
    )
    validate.container_config(container(linux__resources__memory_swap_limit_in_bytes=-1))


@pytest.mark.parametrize("value", [-1, 2**62, 2**32 - 1])
def test_user_ids_out_of_range(value: int) -> None:
    config = container()
    config.linux.security_context.run_as_user.value = value
    with pytest.raises(InvalidArgument):
        validate.container_config(config)


def test_devices_that_exist_pass() -> None:
    validate.container_config(
        container(
            devices=[cri.Device(container_path="/d", host_path="/dev/null", permissions="rw")]
        )
    )


def test_stop_timeouts_and_ids_are_bounded() -> None:
    validate.stop_timeout(0)
    validate.stop_timeout(30)
    for bad in (-1, 2**62):
        with pytest.raises(InvalidArgument):
            validate.stop_timeout(bad)
    validate.object_id("a" * 64, "container")
    with pytest.raises(InvalidArgument) as refused:
        validate.object_id(MIB, "container")
    assert len(str(refused.value)) < 200


def test_pod_cidr_and_images() -> None:
    validate.pod_cidr("10.244.0.0/24,fd00::/64")
    with pytest.raises(InvalidArgument):
        validate.pod_cidr("not-a-cidr")
    validate.image_spec(cri.ImageSpec(image="registry.k8s.io/pause:3.10"))
    for bad in ("", " ", "a b", "a\x00b"):
        with pytest.raises(InvalidArgument):
            validate.image_spec(cri.ImageSpec(image=bad))


def test_image_names_are_references_or_ids() -> None:
    """Docker takes the name as a path segment: "." listed every image (INTERNAL)."""
    image_id = "sha256:" + "0123456789abcdef" * 4
    for good in (
        "busybox",
        "127.0.0.1:5000/pause:3.10",
        "registry.k8s.io/e2e-test-images/busybox@" + image_id,
        image_id,
        image_id.removeprefix("sha256:"),
        "0123ab",
    ):
        validate.image_spec(cri.ImageSpec(image=good))
        validate.image_filter(cri.ImageFilter(image=cri.ImageSpec(image=good)))
    for bad in (".", "..", "../containers/0123ab", "////x", "/busybox", "a//b", "Busybox", MIB):
        with pytest.raises(InvalidArgument) as refused:
            validate.image_spec(cri.ImageSpec(image=bad))
        assert len(str(refused.value)) < 200
        with pytest.raises(InvalidArgument):
            validate.image_filter(cri.ImageFilter(image=cri.ImageSpec(image=bad)))
        with pytest.raises(InvalidArgument):
            validate.container_config(container(image__image=bad))
    validate.image_filter(cri.ImageFilter())


def test_registry_auth_is_base64_of_user_and_password() -> None:
    """Non-ASCII text made base64 raise ValueError in both adapters (INTERNAL from PullImage)."""
    validate.auth_config(cri.AuthConfig())
    validate.auth_config(cri.AuthConfig(auth="dXNlcjpwYXNz"))  # user:pass
    for bad in ("ãË", "a", "//8="):  # not ASCII, not base64, not UTF-8 inside
        with pytest.raises(InvalidArgument):
            validate.auth_config(cri.AuthConfig(auth=bad))


def test_pod_metadata_fits_in_cni_args() -> None:
    """K8S_POD_NAMESPACE=a=b broke the CNI plugins' ARGS (INTERNAL from RunPodSandbox)."""
    validate.sandbox_config(pod(metadata__namespace="kube-system", metadata__uid="4f1c-9a"))
    for field in ("name", "namespace", "uid"):
        for bad in ("a=b", "a;b", ";", "="):
            with pytest.raises(InvalidArgument):
                validate.sandbox_config(pod(**{f"metadata__{field}": bad}))


def test_programs_and_cgroup_parents_are_paths_the_kernel_takes() -> None:
    """A program name of some 40 KiB wedged runc (and the container in dockerd) for good."""
    long_name = "/x/" + "a" * 40_000
    long_component = "/x/" + "a" * 256
    fine = "/bin/" + "a" * 255
    validate.exec_command([fine, "a" * 100_000])  # long arguments are fine
    validate.container_config(container(command=[fine], args=["a" * 100_000]))
    validate.sandbox_config(pod(linux__cgroup_parent="/kubepods/" + "b" * 255))
    for bad in (long_name, long_component):
        with pytest.raises(InvalidArgument) as refused:
            validate.exec_command([bad])
        assert len(str(refused.value)) < 200
        with pytest.raises(InvalidArgument):
            validate.container_config(container(command=[bad]))
        with pytest.raises(InvalidArgument):
            validate.sandbox_config(pod(linux__cgroup_parent=bad))


def test_messages_quote_a_bounded_prefix() -> None:
    assert validate.shown("abc") == "'abc'"
    assert len(validate.shown(MIB)) < validate.SHOWN + 10


SMALL = LimitsConfig(
    max_env_vars=3, max_env_bytes=40, max_port_mappings=2, max_mounts=1, max_devices=1
)


def env(n: int, value: bytes = b"v") -> list[cri.KeyValue]:
    return [cri.KeyValue(key=f"K{i}", value=value) for i in range(n)]


def test_limits_admit_what_is_at_the_limit() -> None:
    validate.container_config(container(envs=env(3)), SMALL)
    ports = [cri.PortMapping(container_port=80 + i) for i in range(2)]
    validate.sandbox_config(pod(port_mappings=ports), SMALL)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"envs": env(4)}, "envs has 4 entries, more than the limit of 3 (limits.max_env_vars)"),
        ({"envs": env(2, b"x" * 30)}, "more than the limit of 40 (limits.max_env_bytes)"),
        (
            {"mounts": [cri.Mount(container_path=f"/m{i}") for i in range(2)]},
            "mounts has 2 entries, more than the limit of 1 (limits.max_mounts)",
        ),
        (
            {"devices": [cri.Device(container_path="/dev/x", host_path="/dev/null")] * 2},
            "devices has 2 entries, more than the limit of 1 (limits.max_devices)",
        ),
    ],
)
def test_container_limits_name_the_field_and_the_limit(fields: dict, named: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate.container_config(container(**fields), SMALL)
    assert named in str(caught.value)


def test_port_mappings_above_the_limit_are_refused() -> None:
    ports = [cri.PortMapping(container_port=80 + i) for i in range(3)]
    with pytest.raises(InvalidArgument, match=r"port_mappings has 3 entries.*max_port_mappings"):
        validate.sandbox_config(pod(port_mappings=ports), SMALL)


def test_limits_are_checked_before_the_message_is_walked() -> None:
    """100,000 variables are refused by their count, without looking at each."""
    import time

    config = container(envs=env(100_000))
    config.envs[-1].key = "bad\0name"  # the walk would name this instead
    started = time.monotonic()
    with pytest.raises(InvalidArgument, match="max_env_vars"):
        validate.container_config(config)
    assert time.monotonic() - started < 0.5


def test_default_limits_admit_a_large_kubelet_pod() -> None:
    """5,000 services with service links: 35,000 variables."""
    envs = [cri.KeyValue(key=f"SVC_{i}_SERVICE_HOST", value=b"10.96.0.1") for i in range(35_000)]
    validate.container_limits(container(envs=envs), LimitsConfig())
