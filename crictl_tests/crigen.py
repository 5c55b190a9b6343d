"""Hypothesis strategies for CRI requests, built from the proto descriptors.

``request_strategy(method, pool)`` draws the input message of one RPC of
``runtime.v1.RuntimeService`` or ``ImageService``. Messages are built field by
field from their descriptors (nested messages to ``MAX_DEPTH``), each field set
or left unset at random. Values come from two moods, mixed in every strategy:

- *tame*: what a client such as kubelet sends: short names from ``[a-z0-9-]``,
  small numbers, known enum values, real IDs and images. These requests pass
  validation and reach the adapter, so its code runs on them.
- *wild*: hostile input: NUL bytes, ``..`` and ``/``, control characters and
  newlines, strings up to about 100 KiB, edge numbers (0, -1, 2**31-1, 2**62,
  -2**63, 65536, ...), unknown enum numbers.

Fields with a meaning (IDs, names, image names, paths, ports, sysctls, DNS)
get strategies of their own, which still mix in hostile values.

``make_safe`` then bounds what a request can do to the machine, whatever was
drawn (the generator itself is not trusted with that):

- PullImage names only registries that the test daemon mirrors to the local
  registry with ``upstream = false`` (or the local registry itself), by the same
  parser the adapter uses; anything else is replaced;
- RemoveImage names only images called ``pycrid-fuzz-...``, which no one has
  (Docker resolves short hex strings as image ID prefixes);
- the program of a container or an exec is ``true``/``echo``/``pwd``/``id``
  or a path in a directory that does not exist, its name at most 8 KiB (runc
  wedges on names of some 40 KiB); a container's image is one of the pool's or
  one no one has (Docker takes short hex strings as image ID prefixes);
- host paths of mounts outside the scratch directory are mounted read-only,
  device paths are ``/dev/null``-like, log directories and seccomp profile
  paths point into the scratch directory, cgroup parents sit under
  ``pycrid-fuzz``, host ports are moved to 30000-30999 on 127.0.0.1.
"""

from __future__ import annotations

import base64
import os
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from crictl_tests.harness import LOCAL_REGISTRY, MIRRORED_REGISTRIES
from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node.imageref import parse_reference
from pycrid.api.cri import api_pb2 as cri

MAX_DEPTH = 5
"""Nested messages deeper than this are left empty."""
PRESENT = 0.35
"""How likely an ordinary field is set."""
REQUIRED_PRESENT = 0.9
"""How likely a field that a valid request needs is set."""
LONG_MAX = 100 * 1024

NAME_CHARS = string.ascii_lowercase + string.digits + "-"
HEX = "0123456789abcdef"

PULLABLE_REGISTRIES = frozenset({*MIRRORED_REGISTRIES, LOCAL_REGISTRY})
"""The registries a PullImage may name: the local one, and those mirrored to it only."""
FUZZ_IMAGE_PREFIX = "pycrid-fuzz-"
NO_SUCH_DIR = "/pycrid-fuzz-no-such-dir/"
"""Programs are run from here when they are not harmless: they do not exist."""
SAFE_PROGRAMS = frozenset({"true", "echo", "pwd", "id", "/bin/true", "/bin/echo"})
MAX_PROGRAM = 8192
"""Longest program name sent: over PATH_MAX (validation's limit), far below runc's wedge."""
CGROUP_PREFIX = "pycrid-fuzz"
SAFE_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/full"})
SAFE_HOST_PORTS = range(30000, 31000)

HOSTILE_SAMPLES = (
    "",
    " ",
    ".",
    "..",
    "/",
    "//",
    "/..",
    "../../etc/passwd",
    "a/../b",
    "a/b",
    "-",
    "-rf",
    "\x00",
    "a\x00",
    "\x00a",
    "a\x00b",
    "\n",
    "a\nb",
    "\r\n",
    "\t",
    "a b",
    " a",
    "a ",
    "\x1b[31m",
    "\x7f",
    "\x01",
    "\u0085",
    "\u2028",
    "\u202e",
    "\ufeff",
    "é",
    "日本",
    "\U0001f600",
    "${PATH}",
    "$(id)",
    "`id`",
    "%s%s%n",
    "'",
    '"',
    "\\",
    "*",
    "?",
    "~",
    "-1",
    "0x10",
    "1e9",
    "NaN",
    "null",
    "a=b",
    "=",
    ":",
    "@",
    "#",
    "sha256:",
    "A" * 64,
    "a" * 129,
    "a" * 253,
    "a" * 254,
    "a" * 256,
    "a" * 4096,
    "a" * 4097,
    "a" * 16384,
    "a" * 16385,
)

EDGE_INTS = (
    0,
    1,
    -1,
    2,
    7,
    255,
    256,
    1000,
    1023,
    1024,
    65535,
    65536,
    2**31 - 1,
    2**31,
    -(2**31),
    2**32 - 1,
    2**32,
    2**53,
    2**62,
    2**62 + 1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
)

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

SYSCTLS = (
    "kernel.shm_rmid_forced",
    "kernel.msgmax",
    "kernel.sem",
    "kernel.shmmax",
    "kernel.domainname",
    "fs.mqueue.msg_max",
    "net.ipv4.ip_forward",
    "net.ipv4.ping_group_range",
    "net.core.somaxconn",
    "net/ipv4/ip_unprivileged_port_start",
    "kernel.pid_max",
    "vm.swappiness",
)
CAPABILITIES = ("NET_ADMIN", "CAP_SYS_ADMIN", "SYS_PTRACE", "ALL", "CHOWN", "BPF", "NOT_A_CAP")


def weighted(*choices: tuple[int, SearchStrategy[Any]]) -> SearchStrategy[Any]:
    """One of the strategies, each drawn as often as its weight says."""
    return st.sampled_from([s for w, s in choices for _ in range(w)]).flatmap(lambda s: s)


def present(strategy: SearchStrategy[Any], probability: float) -> SearchStrategy[Any]:
    """``strategy``'s value, or None (the field stays unset)."""
    if probability >= 1:
        return strategy
    tenths = round(probability * 10)
    return st.integers(0, 9).flatmap(lambda k: strategy if k < tenths else st.none())


# Scalars.

names = st.text(NAME_CHARS, min_size=1, max_size=12)
long_strings = st.tuples(
    st.integers(1000, LONG_MAX), st.sampled_from(["a", "\x00", "/", "é", "\n", "a/"])
).map(lambda t: (t[1] * t[0])[: max(t[0], 1)])
hostile_strings = weighted(
    (6, st.sampled_from(HOSTILE_SAMPLES)),
    (3, st.text(max_size=24)),
    (2, st.tuples(names, st.sampled_from("\x00\n/.\t \x7f:="), names).map("".join)),
    (1, long_strings),
)


def strings(tame: bool, base: SearchStrategy[str] = names) -> SearchStrategy[str]:
    """``base``, mixed with hostile strings unless ``tame``."""
    if tame:
        return base
    return weighted((5, base), (3, hostile_strings))


def ints(kind: int, tame: bool, sane: SearchStrategy[int] | None = None) -> SearchStrategy[int]:
    low, high = INT_RANGES[kind]
    edges = st.sampled_from([v for v in EDGE_INTS if low <= v <= high])
    small = sane if sane is not None else st.integers(max(low, 0), 10)
    if tame:
        return small
    return weighted((3, small), (3, edges), (1, st.integers(low, high)))


# Values with a meaning.


@dataclass
class Pool:
    """What the strategies draw real values from: objects the test made, a scratch dir."""

    sandbox_ids: list[str] = field(default_factory=list)
    container_ids: list[str] = field(default_factory=list)
    image_names: list[str] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)
    scratch: Path = Path("/nonexistent")
    runtime_handlers: list[str] = field(default_factory=lambda: ["", "runc"])

    def hostile_files(self) -> list[str]:
        """Files no request may make the daemon wait on or read without end
        (``HOSTILE_FILES``, made in the scratch dir by the test)."""
        return [str(self.scratch / name) for name in HOSTILE_FILES]

    def mount_sources(self) -> list[str]:
        return [
            str(self.scratch),
            str(self.scratch / "mnt"),
            str(self.scratch / "file.txt"),
            *self.hostile_files(),
            "/pycrid-fuzz-nonexistent",
            "/",
            "/etc/hostname",
            "/dev/null",
            "relative/path",
        ]

    def seccomp_profiles(self) -> list[str]:
        return [
            str(self.scratch / "seccomp.json"),
            str(self.scratch / "bad-seccomp.json"),
            str(self.scratch / "empty-seccomp.json"),
            str(self.scratch),
            str(self.scratch / "nonexistent.json"),
            *self.hostile_files(),
            "/dev/zero",
            "relative.json",
            "",
        ]


HOSTILE_FILES = ("fifo", "zero", "link-to-fifo", "link-to-seccomp.json")
"""In the scratch dir: a FIFO, a character device like /dev/zero, symlinks to
the FIFO and to a good profile. The log directory has them too (``LOG_FILES``)."""
LOG_FILES = ("fifo.log", "zero.log", "link.log")
"""In the scratch dir's logs/ (a FIFO, a device node, a symlink), and
logs/link-dir, a symlink to a directory: log paths and directories to refuse."""

PREFIX_LENGTHS = (1, 3, 6, 12, 13, 20, 64)


def ids(real: list[str], tame: bool) -> SearchStrategy[str]:
    """Real IDs and their prefixes, random hex, hostile strings.

    ``real`` is read when a value is drawn: IDs added to it later (objects
    that generated requests created) are drawn too.
    """
    lengths = st.sampled_from((13, 64) if tame else PREFIX_LENGTHS)  # tame: unambiguous
    real_like = st.tuples(st.integers(0, 2**16), lengths).map(
        lambda t: real[t[0] % len(real)][: t[1]] if real else "0"
    )
    random_hex = st.text(HEX, min_size=1, max_size=64)
    if tame:
        return weighted((4, real_like), (1, random_hex))
    return weighted((4, real_like), (2, random_hex), (2, hostile_strings))


def image_names(pool: Pool, tame: bool) -> SearchStrategy[str]:
    """Names for ImageStatus, ListImages, CreateContainer: real, missing, hostile."""
    real = pool.image_names + pool.image_ids + [i[:12] for i in pool.image_ids]
    real = real + [i.removeprefix("sha256:")[:n] for i in pool.image_ids for n in (1, 4, 64)]
    missing = st.tuples(
        st.sampled_from(["", "registry.k8s.io/", "example.com/", "localhost:5000/"]),
        names,
        st.sampled_from(["", ":latest", ":1.0", "@sha256:" + "0" * 64]),
    ).map(lambda t: f"{t[0]}{FUZZ_IMAGE_PREFIX}{t[1]}{t[2]}")
    known = st.sampled_from(real or ["busybox"])
    if tame:
        existing = st.sampled_from(pool.image_names[:2] + pool.image_ids or ["busybox"])
        return weighted((4, existing), (1, missing))
    return strings(False, weighted((4, known), (2, missing), (1, names)))


def pull_names(tame: bool) -> SearchStrategy[str]:
    """PullImage names: mirrored registries only (``make_safe`` checks it again)."""
    hosts = st.sampled_from(["", *sorted(PULLABLE_REGISTRIES), "index.docker.io"])
    repos = st.sampled_from(
        ["e2e-test-images/busybox", "pause", "library/pause", "e2e-test-images/nginx"]
    )
    fuzz_repo = names.map(lambda n: f"{FUZZ_IMAGE_PREFIX}{n}")
    refs = st.sampled_from(
        [":1.29-2", ":3.10", ":1.14-2", ":latest", "", "@sha256:" + "0" * 64, ":no-such-tag"]
    )
    hostile_tail = hostile_strings.map(lambda s: s.replace("/", ""))
    path = (
        weighted((3, repos), (2, fuzz_repo))
        if tame
        else weighted((3, repos), (2, fuzz_repo), (1, hostile_tail))
    )
    tail = refs if tame else weighted((4, refs), (1, hostile_tail.map(lambda s: ":" + s)))
    return st.tuples(hosts, path, tail).map(lambda t: (f"{t[0]}/" if t[0] else "") + t[1] + t[2])


def remove_names(tame: bool) -> SearchStrategy[str]:
    base = names.map(lambda n: FUZZ_IMAGE_PREFIX + n)
    if tame:
        return base
    return weighted((3, base), (2, hostile_strings.map(lambda s: FUZZ_IMAGE_PREFIX + s)))


def argv(tame: bool) -> SearchStrategy[list[str]]:
    """Command lines: harmless programs, missing ones, hostile words."""
    programs = st.sampled_from([*sorted(SAFE_PROGRAMS), "sh", "ls", "nonexistent"])
    words = strings(tame, st.text(NAME_CHARS + " ./=", max_size=16))
    return st.tuples(programs if tame else strings(False, programs), st.lists(words, max_size=3))


def ip_addresses(tame: bool) -> SearchStrategy[str]:
    ips = st.sampled_from(["127.0.0.1", "::1", "10.0.0.10", "8.8.8.8", "fe80::1", "0.0.0.0"])
    return strings(tame, ips)


def paths(tame: bool, samples: Iterable[str]) -> SearchStrategy[str]:
    base = weighted(
        (3, st.sampled_from(list(samples))),
        (1, st.lists(names, min_size=1, max_size=3).map(lambda p: "/" + "/".join(p))),
    )
    return strings(tame, base)


def special_string(
    pool: Pool, msg: str, name: str, rpc: str, tame: bool
) -> SearchStrategy[str] | None:
    """A strategy for a string field with a meaning, or None for an ordinary one."""
    if name in ("pod_sandbox_id",):
        return ids(pool.sandbox_ids, tame)
    if name in ("container_id", "target_id"):
        return ids(pool.container_ids, tame)
    if name == "id" and msg in ("PodSandboxFilter", "PodSandboxStatsFilter"):
        return ids(pool.sandbox_ids, tame)
    if name == "id" and msg.endswith("Filter"):
        return ids(pool.container_ids, tame)
    if msg in ("PodSandboxMetadata", "ContainerMetadata") and name in ("name", "namespace", "uid"):
        return strings(tame)
    if msg == "ImageSpec" and name == "image":
        if rpc == "PullImage":
            return pull_names(tame)
        if rpc == "RemoveImage":
            return remove_names(tame)
        return image_names(pool, tame)
    if name == "runtime_handler":
        return strings(tame, st.sampled_from([*pool.runtime_handlers, "no-such-runtime"]))
    if name == "log_directory":
        logs = pool.scratch / "logs"
        return paths(tame, [str(logs), str(logs / "x"), str(logs / "link-dir")])
    if name == "log_path":
        return strings(tame, st.sampled_from(["c.log", "c/0.log", "x.log", *LOG_FILES]))
    if name == "hostname":
        if tame:
            return st.sampled_from(["pod", "web-0.example", "a" * 63])
        return strings(tame, st.sampled_from(["pod", "web-0.example", "a" * 63, "a" * 65]))
    if name in ("working_dir", "container_path"):
        return paths(tame, ["/", "/tmp", "/work", "/etc/resolv.conf", "/proc/x", "/dev/x"])
    if name == "host_path" and msg == "Device":
        if tame:
            return st.sampled_from(sorted(SAFE_DEVICES))
        return paths(
            tame, [*sorted(SAFE_DEVICES), *pool.hostile_files(), "/dev/nonexistent", "relative"]
        )
    if name == "host_path":
        if tame:
            return st.sampled_from(pool.mount_sources()[:3])
        return paths(tame, pool.mount_sources())
    if name == "key" and msg == "KeyValue":
        return strings(tame, st.sampled_from(["PATH", "HOME", "FOO", "A_B"]))
    if name == "cgroup_parent":
        return strings(tame, st.sampled_from(["", f"/{CGROUP_PREFIX}", f"{CGROUP_PREFIX}/x"]))
    if name in ("host_ip",) or (msg == "DNSConfig" and name == "servers"):
        return ip_addresses(tame)
    if msg == "DNSConfig":
        return strings(tame, st.sampled_from(["cluster.local", "ndots:5", "svc", "a.b.c"]))
    if name in ("localhost_ref", "seccomp_profile_path"):
        sample = st.sampled_from(pool.seccomp_profiles())
        legacy = st.sampled_from(["runtime/default", "unconfined", "docker/default"])
        if name == "seccomp_profile_path":
            return strings(tame, weighted((2, sample.map(lambda p: "localhost/" + p)), (2, legacy)))
        return strings(tame, sample)
    if name in ("cpuset_cpus", "cpuset_mems"):
        return strings(tame, st.sampled_from(["", "0", "0-1", "0,1", "1-0", "0-1000", "99"]))
    if name in ("add_capabilities", "drop_capabilities", "add_ambient_capabilities"):
        return strings(tame, st.sampled_from(CAPABILITIES))
    if name == "pod_cidr":
        return strings(tame, st.sampled_from(["10.88.0.0/16", "fd00::/64", "10.0.0.0/8,fd00::/64"]))
    if name == "permissions":
        return strings(tame, st.sampled_from(["r", "rw", "rwm", "", "x"]))
    if name in ("masked_paths", "readonly_paths"):
        return paths(tame, ["/proc/kcore", "/sys/firmware", "/etc"])
    if name == "auth" and msg == "AuthConfig":
        userpass = st.tuples(names, names).map(lambda t: base64.b64encode(":".join(t).encode()))
        return strings(tame, userpass.map(bytes.decode))
    return None


def special_int(msg: str, name: str, kind: int, tame: bool) -> SearchStrategy[int] | None:
    if name in ("container_port", "host_port", "port"):
        return ints(kind, tame, st.sampled_from([80, 8080, 1, 65535, 30080]))
    if name == "attempt":
        return ints(kind, tame, st.integers(0, 3))
    if name == "timeout":
        return ints(kind, tame, st.integers(0, 2))
    if name in ("memory_limit_in_bytes", "memory_swap_limit_in_bytes"):
        return ints(kind, tame, st.sampled_from([0, 1, 64 << 20, 512 << 20, -1]))
    if name == "cpu_period":
        return ints(kind, tame, st.sampled_from([0, 1000, 100_000]))
    if name == "cpu_quota":
        return ints(kind, tame, st.sampled_from([0, -1, 50_000, 1000]))
    if name == "cpu_shares":
        return ints(kind, tame, st.sampled_from([0, 2, 1024, 262_144]))
    if name == "oom_score_adj":
        return ints(kind, tame, st.sampled_from([0, 1000, -1000, 500]))
    if name == "value" and msg == "Int64Value":
        return ints(kind, tame, st.sampled_from([0, 1000, 65534]))
    return None


def special_map(
    pool: Pool, msg: str, name: str, tame: bool
) -> tuple[SearchStrategy[Any], SearchStrategy[Any]] | None:
    if name == "sysctls":
        return strings(tame, st.sampled_from(SYSCTLS)), strings(tame, st.sampled_from(["1", "0"]))
    if name in ("labels", "annotations", "label_selector"):
        return strings(tame), strings(tame)
    return None


# Messages.


@dataclass
class Builder:
    pool: Pool
    rpc: str
    tame: bool
    _cache: dict[tuple[str, int], SearchStrategy[Message]] = field(default_factory=dict)

    def message(self, descriptor: Descriptor, depth: int = 0) -> SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key not in self._cache:
            self._cache[key] = self._message(descriptor, depth)
        return self._cache[key]

    def _message(self, descriptor: Descriptor, depth: int) -> SearchStrategy[Message]:
        cls = cri.__dict__.get(descriptor.name)
        assert cls is not None, descriptor.full_name
        if depth >= MAX_DEPTH:
            return st.just(cls())
        fields = {
            f.name: present(self.field(descriptor, f, depth), self.presence(descriptor, f))
            for f in descriptor.fields
            if not (self.tame and (f.name in TAME_SKIPS or (descriptor.name, f.name) in TAME_SKIPS))
        }
        return st.fixed_dictionaries(fields).map(lambda values: build(cls, values))

    def presence(self, descriptor: Descriptor, f: FieldDescriptor) -> float:
        if f.name not in REQUIRED_FIELDS.get(descriptor.name, ()):
            return PRESENT
        return 1.0 if self.tame else REQUIRED_PRESENT

    def field(self, descriptor: Descriptor, f: FieldDescriptor, depth: int) -> SearchStrategy:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key_field = f.message_type.fields_by_name["key"]
            value_field = f.message_type.fields_by_name["value"]
            found = special_map(self.pool, descriptor.name, f.name, self.tame)
            if found is not None:
                keys, values = found
            else:
                keys = self.single(descriptor, key_field, depth)
                values = self.single(f.message_type, value_field, depth + 1)
            return st.dictionaries(keys, values, max_size=3)
        single = self.single(descriptor, f, depth)
        if f.is_repeated:
            if f.name in ("cmd", "command", "args"):
                return argv(self.tame).map(lambda t: [t[0], *t[1]])
            return st.lists(single, max_size=3)
        return single

    def single(self, descriptor: Descriptor, f: FieldDescriptor, depth: int) -> SearchStrategy:
        tame = self.tame
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            return self.message(f.message_type, depth + 1)
        if f.type == FieldDescriptor.TYPE_STRING:
            found = special_string(self.pool, descriptor.name, f.name, self.rpc, tame)
            return found if found is not None else strings(tame)
        if f.type == FieldDescriptor.TYPE_BYTES:
            text = strings(tame).map(str.encode)
            return text if tame else weighted((3, text), (1, st.binary(max_size=64)))
        if f.type == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if f.type == FieldDescriptor.TYPE_ENUM:
            known = st.sampled_from([v.number for v in f.enum_type.values])
            return (
                known
                if tame
                else weighted((4, known), (1, ints(FieldDescriptor.TYPE_INT32, False)))
            )
        if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return st.floats(width=32 if f.type == FieldDescriptor.TYPE_FLOAT else 64)
        if f.type in INT_RANGES:
            found = special_int(descriptor.name, f.name, f.type, tame)
            return found if found is not None else ints(f.type, tame)
        raise AssertionError(f"no strategy for {descriptor.name}.{f.name} (type {f.type})")


TAME_SKIPS = frozenset(
    {
        "windows",
        "CDI_devices",
        "userns_options",
        ("Mount", "image"),
        ("Mount", "uidMappings"),
        ("Mount", "gidMappings"),
        ("Mount", "recursive_read_only"),
    }
)
"""What tame requests leave out: what a Linux kubelet does not send, or the adapters refuse."""

REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "RunPodSandboxRequest": ("config",),
    "PodSandboxConfig": ("metadata", "log_directory"),
    "PodSandboxMetadata": ("name", "namespace", "uid"),
    "CreateContainerRequest": ("pod_sandbox_id", "config", "sandbox_config"),
    "ContainerConfig": ("metadata", "image"),
    "ContainerMetadata": ("name",),
    "Mount": ("container_path", "host_path"),
    "Device": ("container_path", "host_path"),
    "KeyValue": ("key",),
    "PortMapping": ("container_port",),
    "ImageSpec": ("image",),
    "PullImageRequest": ("image",),
    "ImageStatusRequest": ("image",),
    "RemoveImageRequest": ("image",),
    "ExecSyncRequest": ("container_id", "cmd"),
    "ExecRequest": ("container_id", "cmd", "stdout"),
    "AttachRequest": ("container_id", "stdout"),
    "PortForwardRequest": ("pod_sandbox_id",),
    "UpdateContainerResourcesRequest": ("container_id",),
}
for _method in cri.DESCRIPTOR.services_by_name["RuntimeService"].methods:
    for _field in ("container_id", "pod_sandbox_id"):
        if _field in _method.input_type.fields_by_name:
            REQUIRED_FIELDS.setdefault(_method.input_type.name, (_field,))


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in values.items():
        if value is None:
            continue
        f = msg.DESCRIPTOR.fields_by_name[name]
        target = getattr(msg, name) if f.is_repeated or f.message_type else None
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            value_field = f.message_type.fields_by_name["value"]
            for key, item in value.items():
                if value_field.message_type is not None:
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif f.is_repeated:
            target.extend(value)
        elif f.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


def request_strategy(method: MethodDescriptor, pool: Pool) -> SearchStrategy[Message]:
    """Requests for ``method``: two drawn wild for every one drawn tame, all made safe."""
    wild = Builder(pool, method.name, tame=False).message(method.input_type)
    tame = Builder(pool, method.name, tame=True).message(method.input_type)
    return weighted((2, wild), (1, tame)).map(lambda r: make_safe(method.name, r, pool))


# Safety: what a request may do to this machine.


def pull_name_is_safe(name: str) -> bool:
    """True when pulling ``name`` can contact nothing but the local registry.

    Names the adapter cannot parse fail before any pull; names that parse must
    be of a registry that the test daemon mirrors (with ``upstream = false``)
    or of the local registry.
    """
    try:
        reference = parse_reference(name)
    except InvalidArgument:
        return True
    return reference.domain in PULLABLE_REGISTRIES


def remove_name_is_safe(name: str) -> bool:
    """RemoveImage may only name images no one has."""
    return name.startswith(FUZZ_IMAGE_PREFIX) or not name


def safe_argv(args: list[str]) -> list[str]:
    """``args`` with a harmless program, or one in a directory that does not exist.

    The program's name is cut to MAX_PROGRAM: past some 30 KiB, runc's error
    message about it wedges ``runc exec``/``runc create`` and the container in
    dockerd for good (a defect the test checks once, without starting anything).
    """
    if not args:
        return args
    program = args[0]
    if program not in SAFE_PROGRAMS and not program.startswith(NO_SUCH_DIR):
        program = NO_SUCH_DIR + program.replace("/", "_")
    return [program[:MAX_PROGRAM], *args[1:]]


def _under(path: str, root: Path) -> bool:
    return os.path.isabs(path) and ".." not in path.split("/") and path.startswith(f"{root}/")


def _confined(path: str, root: Path, subdir: str) -> str:
    """An absolute ``path`` moved under ``root/subdir`` ('..' removed); others as they are."""
    if not os.path.isabs(path) or _under(path, root):
        return path if ".." not in path.split("/") else path.replace("..", "dotdot")
    parts = [p if p != ".." else "dotdot" for p in path.split("/") if p]
    return "/".join([str(root / subdir), *parts])


def _safe_pod(config: cri.PodSandboxConfig, pool: Pool) -> None:
    if config.log_directory:
        config.log_directory = _confined(config.log_directory, pool.scratch, "logs")
    linux = config.linux
    if linux.cgroup_parent and not linux.cgroup_parent.lstrip("/").startswith(CGROUP_PREFIX):
        linux.cgroup_parent = f"/{CGROUP_PREFIX}-" + linux.cgroup_parent.lstrip("/")
    linux.cgroup_parent = "/".join(
        "dotdot" if p == ".." else p for p in linux.cgroup_parent.split("/")
    )
    for mapping in config.port_mappings:
        if 1 <= mapping.host_port <= 65535 and mapping.host_port not in SAFE_HOST_PORTS:
            mapping.host_port = SAFE_HOST_PORTS.start + mapping.host_port % len(SAFE_HOST_PORTS)
        if mapping.host_ip in ("", "0.0.0.0", "::"):
            mapping.host_ip = "127.0.0.1"
    _safe_seccomp(linux.security_context, pool)


def _safe_seccomp(security: Any, pool: Pool) -> None:
    """Profiles are read by the daemon: only the pool's (the scratch dir's, /dev/zero)."""
    safe = set(pool.seccomp_profiles())
    if security.HasField("seccomp") and security.seccomp.localhost_ref not in safe:
        security.seccomp.localhost_ref = str(pool.scratch / "nonexistent.json")
    legacy = security.seccomp_profile_path
    if legacy.startswith("localhost/") and legacy.removeprefix("localhost/") not in safe:
        security.seccomp_profile_path = "localhost/" + str(pool.scratch / "nonexistent.json")


def image_is_safe(name: str, pool: Pool) -> bool:
    """A container's image may only be one of the pool's, or one that does not exist.

    Docker resolves short hex strings as image ID prefixes: ``9`` may name any
    image on the machine, with a default program of its own.
    """
    if FUZZ_IMAGE_PREFIX in name or name in pool.image_names:
        return True
    bare = name.removeprefix("sha256:")
    return any(i.removeprefix("sha256:").startswith(bare) for i in pool.image_ids) and bool(bare)


def _safe_container(config: cri.ContainerConfig, pool: Pool) -> None:
    if not image_is_safe(config.image.image, pool):
        config.image.image = FUZZ_IMAGE_PREFIX + config.image.image
    if config.command:
        config.command[:] = safe_argv(list(config.command))
    elif config.args:
        config.args[:] = safe_argv(list(config.args))
    for mount in config.mounts:
        if mount.container_path.startswith(NO_SUCH_DIR.rstrip("/")):
            mount.container_path = "/fuzz" + mount.container_path
        if os.path.isabs(mount.host_path) and not _under(mount.host_path, pool.scratch):
            mount.readonly = True  # what exists outside the scratch dir is never written
    for device in config.devices:
        if (
            device.host_path not in SAFE_DEVICES
            and not _under(device.host_path, pool.scratch)
            and os.path.lexists(device.host_path)
        ):
            device.host_path = "/dev/null"
    _safe_seccomp(config.linux.security_context, pool)


def make_safe(rpc: str, request: Message, pool: Pool) -> Message:
    """``request`` bounded so that it cannot harm the machine (see the module's doc)."""
    if isinstance(request, cri.PullImageRequest):
        if not pull_name_is_safe(request.image.image):
            request.image.image = f"{LOCAL_REGISTRY}/{FUZZ_IMAGE_PREFIX}replaced"
        if request.HasField("sandbox_config"):
            _safe_pod(request.sandbox_config, pool)
    elif isinstance(request, cri.RemoveImageRequest):
        if not remove_name_is_safe(request.image.image):
            request.image.image = FUZZ_IMAGE_PREFIX + "replaced"
    elif isinstance(request, cri.RunPodSandboxRequest):
        _safe_pod(request.config, pool)
    elif isinstance(request, cri.CreateContainerRequest):
        _safe_container(request.config, pool)
        _safe_pod(request.sandbox_config, pool)
    elif isinstance(request, cri.ExecSyncRequest | cri.ExecRequest):
        request.cmd[:] = safe_argv(list(request.cmd))
    return request


def check_safe(rpc: str, request: Message, pool: Pool) -> None:
    """Assert what ``make_safe`` promises, right before a request is sent."""
    if isinstance(request, cri.PullImageRequest):
        assert pull_name_is_safe(request.image.image), request.image.image
    if isinstance(request, cri.RemoveImageRequest):
        assert remove_name_is_safe(request.image.image), request.image.image
    argvs: list[list[str]] = []
    if isinstance(request, cri.CreateContainerRequest):
        config = request.config
        assert image_is_safe(config.image.image, pool), config.image.image
        argvs.append(list(config.command) or list(config.args))
    if isinstance(request, cri.ExecSyncRequest | cri.ExecRequest):
        argvs.append(list(request.cmd))
    for args in argvs:
        assert not args or args[0] in SAFE_PROGRAMS or args[0].startswith(NO_SUCH_DIR), args
        assert not args or len(args[0]) <= MAX_PROGRAM, len(args[0])


# Showing requests.


def short_repr(msg: Message, limit: int = 400) -> str:
    """``msg`` on one line, long strings cut, at most ``limit`` characters."""
    from google.protobuf import text_format

    shown = type(msg)()
    shown.CopyFrom(msg)
    _shorten(shown)
    text = text_format.MessageToString(shown, as_one_line=True, as_utf8=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shorten(msg: Message) -> None:
    for f, value in msg.ListFields():
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            value_field = f.message_type.fields_by_name["value"]
            items = list(value.items())
            for key, item in items:
                if value_field.message_type is not None:
                    _shorten(item)
                elif isinstance(item, str | bytes) and len(item) > 40:
                    value[key] = _cut(item)
            for key, _item in items:
                if isinstance(key, str) and len(key) > 40:
                    if value_field.message_type is not None:
                        value[_cut(key)].CopyFrom(value[key])
                    else:
                        value[_cut(key)] = value[key]
                    del value[key]
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if f.is_repeated else [value]:
                _shorten(item)
        elif f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            if f.is_repeated:
                for i, item in enumerate(value):
                    if len(item) > 40:
                        value[i] = _cut(item)
            elif len(value) > 40:
                setattr(msg, f.name, _cut(value))


def _cut(value: Any) -> Any:
    if isinstance(value, bytes):
        return value[:24] + f"...<{len(value)} bytes>".encode()
    return value[:24] + f"...<{len(value)} chars>"
