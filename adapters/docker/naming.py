"""How pycrid's pods and containers are named and labelled in Docker.

Docker is the source of truth: everything a restarted pycrid needs to answer
for a pod or a container is in the labels of its Docker container, and the
container name encodes the CRI metadata so that Docker refuses a second
container for the same pod attempt or container attempt.

Every container carries the label ``io.pycrid.instance``, derived from the
state directory, so that several pycrid daemons can share one dockerd without
seeing each other's pods.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from google.protobuf.message import DecodeError

from pycrid.api.cri import api_pb2 as cri

LABEL_PREFIX = "io.pycrid."
INSTANCE_LABEL = "io.pycrid.instance"
KIND_LABEL = "io.pycrid.kind"
SANDBOX_ID_LABEL = "io.pycrid.sandbox-id"
CONFIG_LABEL = "io.pycrid.config"
LOG_PATH_LABEL = "io.pycrid.log-path"
RUNTIME_HANDLER_LABEL = "io.pycrid.runtime-handler"

SANDBOX = "sandbox"
CONTAINER = "container"

NAME_PREFIX = "k8s"
SANDBOX_CONTAINER_NAME = "POD"
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9.-]")
_DOCKER_ZERO_TIME = "0001-01-01T00:00:00Z"

M = TypeVar("M", cri.PodSandboxConfig, cri.ContainerConfig)


def instance_id(state_dir: str) -> str:
    """A stable identifier of the pycrid instance that owns ``state_dir``."""
    return hashlib.sha256(os.path.realpath(state_dir).encode()).hexdigest()[:16]


def _safe(part: str) -> str:
    return _NAME_UNSAFE.sub("-", part) or "-"


def sandbox_name(metadata: cri.PodSandboxMetadata, instance: str) -> str:
    """``k8s_POD_<name>_<namespace>_<uid>_<attempt>_<instance>``."""
    parts = [SANDBOX_CONTAINER_NAME, metadata.name, metadata.namespace, metadata.uid]
    return "_".join([NAME_PREFIX, *(_safe(p) for p in parts), str(metadata.attempt), instance[:8]])


def container_name(
    metadata: cri.ContainerMetadata, sandbox: cri.PodSandboxMetadata, instance: str
) -> str:
    """``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>_<instance>``."""
    parts = [metadata.name, sandbox.name, sandbox.namespace, sandbox.uid]
    return "_".join([NAME_PREFIX, *(_safe(p) for p in parts), str(metadata.attempt), instance[:8]])


def encode_config(config: cri.PodSandboxConfig | cri.ContainerConfig) -> str:
    return base64.b64encode(config.SerializeToString(deterministic=True)).decode()


def decode_config(text: str, kind: type[M]) -> M:
    """The config a label holds; raises ValueError when it is not one."""
    message = kind()
    try:
        message.ParseFromString(base64.b64decode(text.encode(), validate=True))
    except (binascii.Error, DecodeError) as e:
        raise ValueError(f"not an encoded {kind.__name__}: {e}") from None
    return message


def _user_labels(labels: dict[str, str]) -> dict[str, str]:
    """CRI labels copied as Docker labels (so ``docker ps --filter`` works)."""
    return {k: v for k, v in labels.items() if not k.startswith(LABEL_PREFIX)}


def sandbox_labels(config: cri.PodSandboxConfig, instance: str, runtime_handler: str) -> dict:
    return {
        **_user_labels(dict(config.labels)),
        INSTANCE_LABEL: instance,
        KIND_LABEL: SANDBOX,
        CONFIG_LABEL: encode_config(config),
        RUNTIME_HANDLER_LABEL: runtime_handler,
    }


def container_labels(
    config: cri.ContainerConfig, instance: str, sandbox_id: str, log_path: str
) -> dict:
    return {
        **_user_labels(dict(config.labels)),
        INSTANCE_LABEL: instance,
        KIND_LABEL: CONTAINER,
        SANDBOX_ID_LABEL: sandbox_id,
        CONFIG_LABEL: encode_config(config),
        LOG_PATH_LABEL: log_path,
    }


def instance_filter(instance: str, kind: str | None = None) -> dict[str, list[str]]:
    """Docker list filters that select this instance's containers."""
    labels = [f"{INSTANCE_LABEL}={instance}"]
    if kind:
        labels.append(f"{KIND_LABEL}={kind}")
    return {"label": labels}


@dataclass(frozen=True)
class Owned:
    """What the labels of one of pycrid's Docker containers say."""

    kind: str
    config: cri.PodSandboxConfig | cri.ContainerConfig
    sandbox_id: str = ""
    log_path: str = ""
    runtime_handler: str = ""


def read_labels(labels: dict[str, str] | None, instance: str) -> Owned | None:
    """Decode the labels of a Docker container; None when it is not this instance's."""
    labels = labels or {}
    if labels.get(INSTANCE_LABEL) != instance:
        return None
    kind = labels.get(KIND_LABEL)
    try:
        if kind == SANDBOX:
            return Owned(
                kind=SANDBOX,
                config=decode_config(labels.get(CONFIG_LABEL, ""), cri.PodSandboxConfig),
                runtime_handler=labels.get(RUNTIME_HANDLER_LABEL, ""),
            )
        if kind == CONTAINER:
            return Owned(
                kind=CONTAINER,
                config=decode_config(labels.get(CONFIG_LABEL, ""), cri.ContainerConfig),
                sandbox_id=labels.get(SANDBOX_ID_LABEL, ""),
                log_path=labels.get(LOG_PATH_LABEL, ""),
            )
    except ValueError:
        return None
    return None


def docker_time_ns(text: str | None) -> int:
    """Docker's RFC 3339 timestamps (nanosecond precision) as Unix nanoseconds; 0 for unset."""
    if not text or text.startswith(_DOCKER_ZERO_TIME[:10]):
        return 0
    main, _, rest = text.partition(".")
    fraction = ""
    zone = ""
    if rest:
        digits = re.match(r"\d*", rest)
        fraction = digits.group(0) if digits else ""
        zone = rest[len(fraction) :]
    else:
        match = re.match(r"(.*?)(Z|[+-]\d\d:\d\d)$", main)
        if match:
            main, zone = match.group(1), match.group(2)
    if zone in ("", "Z"):
        zone = "+00:00"
    seconds = datetime.fromisoformat(main + zone).timestamp()
    nanos = int((fraction + "000000000")[:9]) if fraction else 0
    return int(seconds) * 1_000_000_000 + nanos
