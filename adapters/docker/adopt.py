"""Taking over the pods and containers that cri-dockerd runs on the same dockerd.

cri-dockerd (the formats of v0.4.x, read from its ``core/`` sources) keeps
everything in Docker, except a small file per pod, its sandbox file (cri-dockerd
calls it a checkpoint):

- labels ``io.kubernetes.docker.type`` (``podsandbox`` or ``container``),
  ``io.kubernetes.sandbox.id`` and ``io.kubernetes.container.logpath`` on
  containers, ``io.kubernetes.container.name=POD`` on pause containers; the CRI
  labels as they are, and each CRI annotation as a label ``annotation.<key>``;
- names ``k8s_POD_<pod>_<namespace>_<uid>_<attempt>`` and
  ``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>``, perhaps with a random
  ``_<8 hex digits>`` suffix (Docker adds a leading ``/``);
- ``<root>/sandbox/<sandbox ID>``: JSON ``{"version": "v1", "name", "namespace",
  "data": {"port_mappings": [{"protocol", "container_port", "host_port",
  "host_ip"}], "host_network"}, "checksum"}``.

Adoption makes ordinary store records of them (same IDs), with CRI configs
rebuilt from those facts, and a pycrid state file of each pod's network so that
StopPodSandbox runs CNI DEL with the node's CNI configuration. A pod whose
sandbox file is missing or unreadable is not adopted (nor its containers): it
is left as it is and reported. Docker labels cannot change, so adoption runs
at every start; a pod adopted before keeps the network pycrid recorded.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import logging
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pycrid.adapters.config import Config
from pycrid.adapters.docker import naming
from pycrid.adapters.docker.adoptedpods import (
    SANDBOX_FILE_DIR,
    TYPE_LABEL,
    marker,
)
from pycrid.adapters.docker.api import ContainerInspect, DockerApi, ImageInspect
from pycrid.adapters.docker.client import DockerClient
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.logs import Position
from pycrid.adapters.docker.store import ContainerRecord, SandboxRecord
from pycrid.adapters.docker.teardown import docker_ips
from pycrid.adapters.errors import CRIError, NotFound
from pycrid.adapters.node import cni, netns
from pycrid.adapters.node.crilog import CriLogEncoder, parse_timestamp
from pycrid.adapters.node.podnetwork import NetworkState, cni_port_mappings
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker.adopt")

TYPE_SANDBOX = "podsandbox"
TYPE_CONTAINER = "container"
SANDBOX_ID_LABEL = "io.kubernetes.sandbox.id"
LOG_PATH_LABEL = "io.kubernetes.container.logpath"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
ANNOTATION_PREFIX = "annotation."
INTERNAL_LABELS = (TYPE_LABEL, LOG_PATH_LABEL, SANDBOX_ID_LABEL)
SANDBOX_FILE_VERSION = "v1"
KUBELET_POD_LOGS = "/var/log/pods"
PULLABLE_PREFIX = "docker-pullable://"
IMAGE_ID_PREFIX = "docker://"
PROTOCOLS = {"tcp": cri.TCP, "udp": cri.UDP, "sctp": cri.SCTP}
_RANDOM_SUFFIX = re.compile(r"[0-9a-f]{8}")


class SandboxFileError(ValueError):
    """cri-dockerd's sandbox file of a pod is missing or cannot be read."""


# Labels and names.


def split_labels(labels: dict[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """cri-dockerd's Docker labels as the CRI labels and annotations it reported."""
    labels = labels or {}
    kept: dict[str, str] = {}
    annotations: dict[str, str] = {}
    for key, value in labels.items():
        if key in INTERNAL_LABELS:
            continue
        if key == CONTAINER_NAME_LABEL and labels.get(TYPE_LABEL) == TYPE_SANDBOX:
            continue
        if key.startswith(ANNOTATION_PREFIX):
            annotations[key[len(ANNOTATION_PREFIX) :]] = value
        else:
            kept[key] = value
    return kept, annotations


def _name_parts(name: str) -> list[str]:
    parts = name.removeprefix("/").split("_")
    if len(parts) == 7 and _RANDOM_SUFFIX.fullmatch(parts[6]):
        parts = parts[:6]
    if len(parts) != 6 or parts[0] != naming.NAME_PREFIX:
        raise ValueError(f"{name!r} is not a name cri-dockerd gives")
    if not parts[5].isdigit() or int(parts[5]) >= 2**32:
        raise ValueError(f"{name!r} has no attempt number")
    return parts


def parse_sandbox_name(name: str) -> cri.PodSandboxMetadata:
    """``k8s_POD_<pod>_<namespace>_<uid>_<attempt>``; ValueError when it is not one."""
    parts = _name_parts(name)
    if parts[1] != naming.SANDBOX_CONTAINER_NAME:
        raise ValueError(f"{name!r} is not a pod sandbox's name")
    return cri.PodSandboxMetadata(
        name=parts[2], namespace=parts[3], uid=parts[4], attempt=int(parts[5])
    )


def parse_container_name(name: str) -> tuple[cri.ContainerMetadata, cri.PodSandboxMetadata]:
    """``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>``: the container and its pod."""
    parts = _name_parts(name)
    pod = cri.PodSandboxMetadata(name=parts[2], namespace=parts[3], uid=parts[4])
    return cri.ContainerMetadata(name=parts[1], attempt=int(parts[5])), pod


# The sandbox file.


@dataclass
class SandboxFile:
    name: str
    namespace: str
    port_mappings: list[cri.PortMapping] = field(default_factory=list)
    host_network: bool = False


def parse_sandbox_file(blob: bytes) -> SandboxFile:
    """One sandbox file's content; SandboxFileError when it is not one.

    The checksum (FNV-1a of Go's spew dump of the data) is not recomputed: the
    structure is checked instead, which catches truncated and foreign files.
    """
    try:
        value = json.loads(blob)
    except (ValueError, UnicodeDecodeError) as e:
        raise SandboxFileError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise SandboxFileError("not a JSON object")
    if value.get("version") != SANDBOX_FILE_VERSION:
        raise SandboxFileError(f"version {value.get('version')!r}, not {SANDBOX_FILE_VERSION!r}")
    name, namespace = value.get("name"), value.get("namespace")
    if not isinstance(name, str) or not isinstance(namespace, str) or not name:
        raise SandboxFileError("no pod name and namespace")
    if not isinstance(value.get("checksum"), int):
        raise SandboxFileError("no checksum")
    data = value.get("data") or {}
    if not isinstance(data, dict):
        raise SandboxFileError("data is not an object")
    mappings = []
    for item in data.get("port_mappings") or []:
        if not isinstance(item, dict):
            raise SandboxFileError("a port mapping is not an object")
        protocol = str(item.get("protocol") or "tcp").lower()
        try:
            mappings.append(
                cri.PortMapping(
                    protocol=PROTOCOLS[protocol],
                    container_port=int(item.get("container_port") or 0),
                    host_port=int(item.get("host_port") or 0),
                    host_ip=str(item.get("host_ip") or ""),
                )
            )
        except (KeyError, ValueError, TypeError):
            raise SandboxFileError(f"bad port mapping {item!r}") from None
    return SandboxFile(name, namespace, mappings, bool(data.get("host_network")))


def read_sandbox_file(root: str | os.PathLike[str], sandbox_id: str) -> SandboxFile:
    path = Path(root) / SANDBOX_FILE_DIR / sandbox_id
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise SandboxFileError(f"no sandbox file {path}") from None
    except OSError as e:
        raise SandboxFileError(f"cannot read {path}: {e.strerror}") from None
    try:
        return parse_sandbox_file(blob)
    except SandboxFileError as e:
        raise SandboxFileError(f"sandbox file {path} is malformed: {e}") from None


# What would be adopted.


@dataclass
class Found:
    id: str
    name: str
    kind: str  # naming.SANDBOX or naming.CONTAINER
    inspect: ContainerInspect
    sandbox_file: SandboxFile | None = None


@dataclass
class Refused:
    id: str
    name: str
    reason: str


@dataclass
class Survey:
    sandboxes: list[Found] = field(default_factory=list)
    containers: list[Found] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What ``pycrid adopt --check`` prints."""
        out = [f"adopt pod sandbox {f.id[:13]} {f.name}" for f in self.sandboxes]
        out += [f"adopt container {f.id[:13]} {f.name}" for f in self.containers]
        out += [f"cannot adopt {r.id[:13]} {r.name}: {r.reason}" for r in self.refused]
        out += [f"note: {note}" for note in self.notes]
        return out


async def survey(client: DockerApi, root: str) -> Survey:
    """cri-dockerd's pods and containers in Docker, and which of them can be taken over.

    Containers that carry a pycrid instance label are pycrid's own (cri-dockerd's
    labels name them too), and are skipped.
    """
    result = Survey()
    listed = await client.list_containers({"label": [TYPE_LABEL]})
    inspects: list[ContainerInspect] = []
    for summary in listed:
        if naming.INSTANCE_LABEL in (summary.get("Labels") or {}):
            continue
        try:
            inspects.append(await client.inspect_container(summary["Id"]))
        except NotFound:
            continue
    sandbox_ids: set[str] = set()
    pending: list[ContainerInspect] = []
    for inspect in inspects:
        labels = (inspect.get("Config") or {}).get("Labels") or {}
        name = (inspect.get("Name") or "").removeprefix("/")
        kind = labels.get(TYPE_LABEL)
        if kind == TYPE_CONTAINER:
            pending.append(inspect)
            continue
        if kind != TYPE_SANDBOX:
            result.refused.append(Refused(inspect["Id"], name, f"unknown {TYPE_LABEL} {kind!r}"))
            continue
        try:
            parse_sandbox_name(name)
            sandbox_file = read_sandbox_file(root, inspect["Id"])
        except ValueError as e:
            result.refused.append(Refused(inspect["Id"], name, str(e)))
            continue
        result.sandboxes.append(Found(inspect["Id"], name, naming.SANDBOX, inspect, sandbox_file))
        sandbox_ids.add(inspect["Id"])
    for inspect in pending:
        labels = (inspect.get("Config") or {}).get("Labels") or {}
        name = (inspect.get("Name") or "").removeprefix("/")
        try:
            parse_container_name(name)
        except ValueError as e:
            result.refused.append(Refused(inspect["Id"], name, str(e)))
            continue
        sandbox_id = labels.get(SANDBOX_ID_LABEL, "")
        if sandbox_id not in sandbox_ids:
            reason = f"its pod sandbox {sandbox_id[:13] or '(none)'} is not adopted"
            result.refused.append(Refused(inspect["Id"], name, reason))
            continue
        result.containers.append(Found(inspect["Id"], name, naming.CONTAINER, inspect))
    return result


# Records.


def _namespace_options(inspect: ContainerInspect) -> cri.NamespaceOption:
    host = inspect.get("HostConfig") or {}
    return cri.NamespaceOption(
        network=cri.NODE if host.get("NetworkMode") == "host" else cri.POD,
        pid=cri.NODE if host.get("PidMode") == "host" else cri.CONTAINER,
        ipc=cri.NODE if host.get("IpcMode") == "host" else cri.POD,
    )


def sandbox_config(
    inspect: ContainerInspect, sandbox_file: SandboxFile | None, log_directory: str
) -> cri.PodSandboxConfig:
    """The PodSandboxConfig that cri-dockerd's pause container and sandbox file tell of."""
    config = inspect.get("Config") or {}
    labels, annotations = split_labels(config.get("Labels"))
    sandbox = cri.PodSandboxConfig(
        metadata=parse_sandbox_name(inspect.get("Name") or ""),
        hostname=config.get("Hostname") or "",
        log_directory=log_directory,
        labels=labels,
        annotations=annotations,
        port_mappings=sandbox_file.port_mappings if sandbox_file else [],
    )
    sandbox.linux.security_context.namespace_options.CopyFrom(_namespace_options(inspect))
    return sandbox


def container_config(inspect: ContainerInspect, image_name: str) -> cri.ContainerConfig:
    """The ContainerConfig that cri-dockerd's labels, name and Docker's inspect tell of."""
    config = inspect.get("Config") or {}
    host = inspect.get("HostConfig") or {}
    labels, annotations = split_labels(config.get("Labels"))
    metadata, _ = parse_container_name(inspect.get("Name") or "")
    log_path = labels_log_path(config.get("Labels"))
    container = cri.ContainerConfig(
        metadata=metadata,
        image=cri.ImageSpec(image=image_name),
        labels=labels,
        annotations=annotations,
        log_path="/".join(Path(log_path).parts[-2:]) if log_path else "",
        tty=bool(config.get("Tty")),
        stdin=bool(config.get("OpenStdin")),
        stdin_once=bool(config.get("StdinOnce")),
        mounts=[
            cri.Mount(
                host_path=m.get("Source") or "",
                container_path=m.get("Destination") or "",
                readonly=not m.get("RW", True),
            )
            for m in inspect.get("Mounts") or []
        ],
    )
    resources = container.linux.resources
    resources.cpu_shares = host.get("CpuShares") or 0
    resources.cpu_quota = host.get("CpuQuota") or 0
    resources.cpu_period = host.get("CpuPeriod") or 0
    resources.memory_limit_in_bytes = host.get("Memory") or 0
    resources.cpuset_cpus = host.get("CpusetCpus") or ""
    resources.cpuset_mems = host.get("CpusetMems") or ""
    resources.oom_score_adj = host.get("OomScoreAdj") or 0
    return container


def labels_log_path(labels: dict[str, str] | None) -> str:
    return (labels or {}).get(LOG_PATH_LABEL, "")


def pod_log_directory(sandbox: Found, containers: list[Found]) -> str:
    """The pod's log directory: above its containers' log paths, else kubelet's default."""
    for found in containers:
        labels = (found.inspect.get("Config") or {}).get("Labels") or {}
        if labels.get(SANDBOX_ID_LABEL) == sandbox.id and labels_log_path(labels):
            return str(Path(labels_log_path(labels)).parent.parent)
    metadata = parse_sandbox_name(sandbox.name)
    return f"{KUBELET_POD_LOGS}/{metadata.namespace}_{metadata.name}_{metadata.uid}"


def image_view(image_id: str, image: ImageInspect | None, fallback: str) -> tuple[str, str]:
    """(image name, image ref) as cri-dockerd's ContainerStatus reported them."""
    tags = (image or {}).get("RepoTags") or []
    digests = (image or {}).get("RepoDigests") or []
    ref = PULLABLE_PREFIX + digests[0] if digests else IMAGE_ID_PREFIX + image_id
    return (tags[0] if tags else fallback), ref


def pod_ips(netns_path: str) -> list[str]:
    """The addresses of eth0 in a network namespace, IPv4 first (as cri-dockerd finds them)."""
    ips: list[str] = []
    for family in ("-4", "-6"):
        done = subprocess.run(
            ["nsenter", f"--net={netns_path}", "ip", "-o", family, "addr", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        for line in done.stdout.splitlines():
            words = line.split()
            if len(words) > 3 and words[2] in ("inet", "inet6") and "scope global" in line:
                ips.append(words[3].split("/")[0])
    return ips


# Adoption.


async def _network(ctx: DockerContext, found: Found, config: cri.PodSandboxConfig) -> NetworkState:
    """The adopted pod's network as a pycrid state file records it."""
    inspect = found.inspect
    host = inspect.get("HostConfig") or {}
    state = inspect.get("State") or {}
    running = bool(state.get("Running"))
    mode = host.get("NetworkMode") or ""
    if mode == "host" or (found.sandbox_file and found.sandbox_file.host_network):
        return NetworkState(mode="host", ready=running, torn_down=not running)
    if mode != "none":
        return NetworkState(mode="docker", ready=running, ips=docker_ips(inspect))
    network = NetworkState(mode="cni")
    network.network = cni.load_network(ctx.config.network.cni_conf_dir).to_dict()
    network.port_mappings = cni_port_mappings(list(config.port_mappings))
    pid = state.get("Pid") or 0
    if running and pid:
        path = ctx.networks.netns_path(found.id)
        await asyncio.to_thread(netns.pin, pid, path)
        network.netns = str(path)
        network.ips = await asyncio.to_thread(pod_ips, str(path))
        network.ready = True
    return network


def docker_log_files(docker_log: Path) -> list[Path]:
    """Docker's json-file log and the files it rotated, oldest first.

    With ``max-file`` above 1 Docker keeps ``LOG.1`` (the newest rotated) up to
    ``LOG.N``, gzipped as ``LOG.K.gz`` when ``compress`` is on.
    """
    rotated = []
    for number in itertools.count(1):
        plain = docker_log.with_name(f"{docker_log.name}.{number}")
        packed = docker_log.with_name(f"{plain.name}.gz")
        if plain.exists():
            rotated.append(plain)
        elif packed.exists():
            rotated.append(packed)
        else:
            break
    return [*reversed(rotated), docker_log]


def _read_log_lines(path: Path, current: bool) -> list[bytes]:
    """The whole lines of one of Docker's log files; a rotated file has only whole lines."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    return lines[:-1] if current else [line for line in lines if line]


def convert_log(log_path: Path, docker_log: Path, max_line: int) -> tuple[Position, CriLogEncoder]:
    """Replace the symlink at ``log_path`` by a CRI-format file of Docker's JSON log.

    The files Docker rotated come first, so that the container's whole kept
    output is in the CRI file. Returns where the copy stopped (the last whole
    line of the current log), for the log copier to go on from there: nothing
    lost, nothing twice.
    """
    encoder = CriLogEncoder(max_line)
    position = Position()
    out = bytearray()
    for path in docker_log_files(docker_log):
        # The last piece of the current log is unfinished (or empty).
        for line in _read_log_lines(path, current=path == docker_log):
            try:
                entry = json.loads(line)
                timestamp = parse_timestamp(entry["time"])
                message = str(entry.get("log", "")).encode()
                stream = entry.get("stream") or "stdout"
            except (ValueError, KeyError, TypeError):
                continue
            out += encoder.feed(timestamp, stream, message)
            position.advance(timestamp)
    temporary = log_path.with_name(f".{log_path.name}.adopting")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, bytes(out))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, log_path)  # replaces the symlink itself, not its target
    return position, encoder


async def _adopt_log(
    ctx: DockerContext, record: ContainerRecord, inspect: ContainerInspect
) -> None:
    path = Path(record.log_path)
    docker_log = inspect.get("LogPath") or ""
    if not path.is_symlink() or not docker_log:
        return  # already a file of pycrid's (adopted before), or no log at all
    position, encoder = await asyncio.to_thread(
        convert_log, path, Path(docker_log), ctx.log_copiers.max_line
    )
    await ctx.log_copiers.seed(record.id, path, record.config.tty, position, encoder)
    log.info("container %s: log %s is now a CRI log file", record.id[:13], path)


async def adopt(ctx: DockerContext) -> None:
    """Take cri-dockerd's pods and containers into the store (recovery.py calls this)."""
    try:
        found = await survey(ctx.client, ctx.config.docker.cri_dockerd_root)
    except CRIError as e:
        log.warning("cannot look for cri-dockerd's pods: %s", e)
        return
    for refused in found.refused:
        log.warning("not adopting %s (%s): %s", refused.id[:13], refused.name, refused.reason)
    images: dict[str, ImageInspect | None] = {}
    adopted_sandboxes = set()
    for sandbox in found.sandboxes:
        try:
            config = sandbox_config(
                sandbox.inspect, sandbox.sandbox_file, pod_log_directory(sandbox, found.containers)
            )
            network = ctx.store.files.load_sandbox(sandbox.id)
            if network is None:
                marker(ctx, sandbox.id).parent.mkdir(parents=True, exist_ok=True)
                marker(ctx, sandbox.id).touch()
                network = await _network(ctx, sandbox, config)
                await ctx.store.files.save_sandbox(sandbox.id, network)
        except (CRIError, OSError, ValueError, subprocess.SubprocessError) as e:
            log.warning("not adopting pod sandbox %s: %s", sandbox.id[:13], e)
            continue
        record = SandboxRecord(
            id=sandbox.id,
            config=config,
            runtime_handler=(sandbox.inspect.get("HostConfig") or {}).get("Runtime") or "",
            created_at=naming.docker_time_ns(sandbox.inspect.get("Created")),
            network=network,
        )
        record.update(sandbox.inspect)
        ctx.store.add_sandbox(record, published=False)
        adopted_sandboxes.add(sandbox.id)
    for container in found.containers:
        inspect = container.inspect
        labels = (inspect.get("Config") or {}).get("Labels") or {}
        if labels.get(SANDBOX_ID_LABEL) not in adopted_sandboxes:
            continue
        image_id = inspect.get("Image") or ""
        if image_id not in images:
            images[image_id] = await ctx.images.inspect(image_id) if image_id else None
        name, ref = image_view(
            image_id, images[image_id], (inspect.get("Config") or {}).get("Image") or ""
        )
        config = container_config(inspect, name)
        adopted = ContainerRecord(
            id=container.id,
            sandbox_id=labels[SANDBOX_ID_LABEL],
            config=config,
            log_path=labels_log_path(labels),
            created_at=naming.docker_time_ns(inspect.get("Created")),
            image_id=image_id,
            image_ref=ref,
            listed_image_ref=image_id,
            resources=ctx.store.files.load_container_resources(container.id)
            or config.linux.resources,
        )
        adopted.update(inspect)
        try:
            if adopted.log_path:
                await _adopt_log(ctx, adopted, inspect)
        except (CRIError, OSError) as e:
            log.warning("container %s: log not taken over: %s", container.id[:13], e)
        ctx.store.add_container(adopted, published=False)
    log.info(
        "adopted %d pod sandboxes and %d containers from cri-dockerd",
        len(adopted_sandboxes),
        sum(1 for c in found.containers if c.id in ctx.store.containers),
    )


async def check(config: Config) -> Survey:
    """``pycrid adopt --check``: what a start with adoption on would take over, changing nothing."""
    client = DockerClient(config.docker.endpoint)
    try:
        await client.connect(config.docker.startup_timeout)
        found = await survey(client, config.docker.cri_dockerd_root)
        if not config.docker.adopt:
            found.notes.append("docker.adopt does not name cri-dockerd: pycrid would adopt nothing")
        return found
    finally:
        await client.close()
