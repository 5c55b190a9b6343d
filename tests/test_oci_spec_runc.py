"""Generated specs run by the real runc: the kernel says who the process is.

Each test builds a bundle around a busybox-static rootfs, runs one command
with ``runc run`` (host network, no CNI), and reads what the process reports
about itself: ids and groups, capability masks, the seccomp mode. runc keeps
its state in a private ``--root``; containers are deleted and the test's
cgroup parent removed even when a test fails. Needs root, runc and Debian's
busybox-static (``apt-get install busybox-static``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pycrid.adapters.node.hostfacts import CAPABILITY_NAMES, HostFacts
from pycrid.adapters.oci.runtime import spec
from pycrid.adapters.oci.runtime.imageconfig import ImageConfig
from pycrid.adapters.oci.runtime.nodefacts import CGROUP_ROOT, NodeFacts
from pycrid.api.cri import api_pb2 as cri

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "cat", "id", "ls", "grep", "hostname", "touch", "unshare", "true", "wc")
CGROUP_PARENT = "/pycrid-spec-test"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
GROUP = "root:x:0:\nwheel:x:10:root\nuser:x:1000:\nextra:x:3000:user\n"


def _is_static_elf(path: str) -> bool:
    """A 64-bit ELF without a program interpreter runs alone in an empty rootfs."""
    try:
        with open(path, "rb") as file:
            header = file.read(64)
            if header[:5] != b"\x7fELF\x02":
                return False
            phoff = struct.unpack_from("<Q", header, 0x20)[0]
            entry_size, count = struct.unpack_from("<HH", header, 0x36)
            file.seek(phoff)
            table = file.read(entry_size * count)
    except OSError:
        return False
    return all(struct.unpack_from("<I", table, i * entry_size)[0] != 3 for i in range(count))


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.skipif(
        not _is_static_elf(BUSYBOX),
        reason="needs a static busybox (apt-get install busybox-static)",
    ),
]


@pytest.fixture(scope="module", autouse=True)
def remove_test_cgroups() -> Iterator[None]:
    yield
    if CGROUP_ROOT.is_dir():
        for controller in CGROUP_ROOT.iterdir():
            with contextlib.suppress(OSError):
                (controller / CGROUP_PARENT.lstrip("/")).rmdir()


@pytest.fixture
def node() -> NodeFacts:
    return NodeFacts.probe(HostFacts.probe(), cgroup_parent=CGROUP_PARENT)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    rootfs = tmp_path / "bundle" / "rootfs"
    for directory in ("bin", "etc", "proc", "sys", "dev", "tmp", "mnt"):
        (rootfs / directory).mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:  # hard links: busybox runs applets in-process
        os.link(rootfs / "bin" / "busybox", rootfs / "bin" / applet)
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    return rootfs.parent


def run(bundle: Path, document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """``runc run`` the spec in the bundle; the container is always deleted."""
    (bundle / "config.json").write_text(json.dumps(document))
    state = bundle.parent / "runc-state"
    container_id = f"pycrid-spec-test-{uuid.uuid4().hex[:12]}"
    runc = ["runc", "--root", str(state)]
    try:
        return subprocess.run(
            [*runc, "run", "--bundle", str(bundle), container_id],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run([*runc, "delete", "--force", container_id], capture_output=True, timeout=30)


HOST_NETWORK = cri.NamespaceOption(network=cri.NODE, ipc=cri.NODE, pid=cri.CONTAINER)


def pod_config(privileged: bool = False) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="p", namespace="n", uid="u"),
        hostname="spec-test",
        linux=cri.LinuxPodSandboxConfig(
            security_context=cri.LinuxSandboxSecurityContext(
                namespace_options=HOST_NETWORK, privileged=privileged
            )
        ),
    )


def container(
    bundle: Path,
    node: NodeFacts,
    script: str,
    privileged_pod: bool = False,
    mounts: tuple[cri.Mount, ...] = (),
    **security: Any,
) -> dict[str, Any]:
    """A container spec that runs ``script``, in a UTS namespace of its own.

    The pod uses the host's network, so the spec has no UTS namespace; one
    is added so that a sethostname the test expects to be refused can never
    rename the host if it is not.
    """
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="c"),
        command=["/bin/sh", "-c", script],
        mounts=mounts,
        linux=cri.LinuxContainerConfig(
            security_context=cri.LinuxContainerSecurityContext(
                namespace_options=HOST_NETWORK, **security
            )
        ),
    )
    result = spec.container_spec(
        config,
        pod_config(privileged_pod),
        ImageConfig(),
        container_id=uuid.uuid4().hex,
        rootfs=str(bundle / "rootfs"),
        pod=spec.PodFacts(sandbox_id="s" * 64, pause_pid=os.getpid()),
        node=node,
    )
    document = result.spec
    document["linux"]["namespaces"].append({"type": "uts"})
    document["hostname"] = "spec-test"
    return document


def status(output: str) -> dict[str, str]:
    """``Key:\tvalue`` lines of /proc/self/status in the output."""
    fields = {}
    for line in output.splitlines():
        key, sep, value = line.partition(":\t")
        if sep:
            fields[key] = value.strip()
    return fields


def mask(names: list[str]) -> int:
    return sum(1 << CAPABILITY_NAMES.index(n.removeprefix("CAP_")) for n in names)


def checked(completed: subprocess.CompletedProcess[str]) -> str:
    assert completed.returncode == 0, completed.stderr + completed.stdout
    return completed.stdout


SELF = "id; grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/self/status"


def test_user_groups_and_default_capabilities(bundle: Path, node: NodeFacts) -> None:
    document = container(
        bundle,
        node,
        SELF + "; echo HOME=$HOME",
        run_as_user=cri.Int64Value(value=1000),
        supplemental_groups=[55],
    )
    output = checked(run(bundle, document))
    assert "uid=1000(user) gid=1000(user) groups=55,1000(user),3000(extra)" in output
    assert "HOME=/home/user" in output
    fields = status(output)
    assert int(fields["CapBnd"], 16) == mask(document["process"]["capabilities"]["bounding"])
    assert int(fields["CapEff"], 16) == 0  # a non-root user keeps no capability over exec
    assert fields["Seccomp"] == "0"  # no profile asked for: unconfined


def test_root_with_added_and_dropped_capabilities(bundle: Path, node: NodeFacts) -> None:
    capabilities = cri.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["KILL"])
    document = container(bundle, node, SELF, capabilities=capabilities, no_new_privs=True)
    output = checked(run(bundle, document))
    assert "uid=0(root) gid=0(root) groups=0(root),10(wheel)" in output
    fields = status(output)
    granted = document["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in granted and "CAP_KILL" not in granted
    for key in ("CapBnd", "CapEff", "CapPrm"):
        assert int(fields[key], 16) == mask(granted), key
    assert int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"] == "1"


def test_ambient_capability_for_a_non_root_user(bundle: Path, node: NodeFacts) -> None:
    capabilities = cri.Capability(add_ambient_capabilities=["NET_BIND_SERVICE"])
    document = container(
        bundle, node, SELF, run_as_user=cri.Int64Value(value=1000), capabilities=capabilities
    )
    fields = status(checked(run(bundle, document)))
    bit = 1 << CAPABILITY_NAMES.index("NET_BIND_SERVICE")
    assert int(fields["CapAmb"], 16) == bit
    assert int(fields["CapEff"], 16) == bit


def test_privileged_gets_the_hosts_bounding_set(bundle: Path, node: NodeFacts) -> None:
    document = container(bundle, node, SELF, privileged_pod=True, privileged=True)
    fields = status(checked(run(bundle, document)))
    granted = document["process"]["capabilities"]["bounding"]
    assert int(fields["CapBnd"], 16) == int(fields["CapEff"], 16) == mask(granted)
    if node.host.bounding_capabilities is not None:
        assert set(granted) == node.host.bounding_capabilities
    assert fields["Seccomp"] == "0"


UNSHARE = "grep Seccomp: /proc/self/status; unshare -U true && echo unshare-allowed"


def test_default_seccomp_profile_is_applied(bundle: Path, node: NodeFacts) -> None:
    """Creating a user namespace needs no capability, but the default profile refuses it
    without CAP_SYS_ADMIN; unconfined, the same command works."""
    unconfined = checked(run(bundle, container(bundle, node, UNSHARE)))
    assert "Seccomp:\t0" in unconfined and "unshare-allowed" in unconfined
    document = container(bundle, node, UNSHARE, seccomp=cri.SecurityProfile())
    assert document["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    completed = run(bundle, document)
    assert "Seccomp:\t2" in completed.stdout, completed.stderr
    assert "unshare-allowed" not in completed.stdout
    assert "Operation not permitted" in completed.stderr


SETHOSTNAME = "hostname renamed-by-test && echo sethostname-allowed; hostname"


def test_localhost_profile_blocks_sethostname(bundle: Path, node: NodeFacts) -> None:
    profile_path = bundle.parent / "block-hostname.json"
    profile_path.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    sys_admin = cri.Capability(add_capabilities=["SYS_ADMIN"])
    allowed = checked(run(bundle, container(bundle, node, SETHOSTNAME, capabilities=sys_admin)))
    assert "sethostname-allowed" in allowed and "renamed-by-test" in allowed
    profile = cri.SecurityProfile(
        profile_type=cri.SecurityProfile.Localhost, localhost_ref=str(profile_path)
    )
    document = container(bundle, node, SETHOSTNAME, capabilities=sys_admin, seccomp=profile)
    completed = run(bundle, document)
    assert "sethostname-allowed" not in completed.stdout
    assert "spec-test" in completed.stdout  # the UTS namespace kept its name
    assert "Operation not permitted" in completed.stderr


def test_read_only_rootfs_and_masked_paths(bundle: Path, node: NodeFacts) -> None:
    script = (
        "touch /x || echo rootfs-read-only; echo kcore=$(cat /proc/kcore | wc -c); touch /tmp/y"
    )
    document = container(
        bundle, node, script, readonly_rootfs=True, masked_paths=["/proc/kcore", "/tmp"]
    )
    completed = run(bundle, document)
    assert "rootfs-read-only" in completed.stdout, completed.stderr
    assert "kcore=0" in completed.stdout
    assert "Read-only file system" in completed.stderr  # /tmp is masked read-only too


def test_recursive_read_only_mount(bundle: Path, node: NodeFacts, tmp_path: Path) -> None:
    if not node.recursive_read_only:
        pytest.skip("the kernel has no mount_setattr (5.12+)")
    host = tmp_path / "volume"
    (host / "tmpfs").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "none", str(host / "tmpfs")], check=True)
    try:
        for recursive in (False, True):
            mount = cri.Mount(
                host_path=str(host),
                container_path="/mnt",
                readonly=True,
                recursive_read_only=recursive,
            )
            script = "touch /mnt/tmpfs/f && echo written"
            completed = run(bundle, container(bundle, node, script, mounts=(mount,)))
            # A plain read-only bind leaves the tmpfs below it writable; rro does not.
            assert ("written" in completed.stdout) is not recursive, completed.stderr
    finally:
        subprocess.run(["umount", str(host / "tmpfs")], check=False)


def test_sandbox_spec_runs(bundle: Path, node: NodeFacts) -> None:
    image = ImageConfig(
        entrypoint=("/bin/sh", "-c"),
        cmd=("id; cat /proc/self/oom_score_adj; touch /x || echo read-only; echo pid=$$",),
    )
    config = pod_config()
    config.linux.security_context.namespace_options.CopyFrom(cri.NamespaceOption(network=cri.NODE))
    result = spec.sandbox_spec(
        config,
        image,
        rootfs=str(bundle / "rootfs"),
        pod=spec.PodFacts(sandbox_id=uuid.uuid4().hex),
        node=node,
    )
    lines = checked(run(bundle, result.spec)).splitlines()
    assert lines[0].startswith("uid=0(root) gid=0(root)")
    assert int(lines[1]) == result.spec["process"]["oomScoreAdj"]
    assert int(lines[1]) == (-998 if node.host.negative_oom_score_adj else 0)
    assert "read-only" in lines
    assert "pid=1" in lines  # a PID namespace of its own
