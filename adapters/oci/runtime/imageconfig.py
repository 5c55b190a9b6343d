"""What an image says about how to run it: the ``config`` of its config blob.

OCI and Docker image configs share these field names (Docker wrote them
first). Any of them may be missing or ``null``; a value of the wrong type
means the image is broken, which is the caller's error to report.

The oci image store keeps the config blob under the image ID (the config's
digest), so the runtime reads it with
``ImageConfig.from_blob(store.read_blob(record.id))``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pycrid.adapters.errors import InvalidArgument


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    """``KEY=value`` entries, in the image's order."""
    working_dir: str = ""
    user: str = ""
    """``name``, ``uid``, ``name:group`` or ``uid:gid``, as the image's USER gave it."""
    stop_signal: str = ""
    volumes: tuple[str, ...] = ()
    """Container paths the image declares as VOLUMEs, sorted."""
    exposed_ports: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ImageConfig:
        """The run configuration of an image config document (the whole blob, parsed)."""
        if not isinstance(document, dict):
            raise InvalidArgument("the image config is not a JSON object")
        config = document.get("config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise InvalidArgument("the image config's 'config' is not a JSON object")
        return cls(
            entrypoint=_strings(config, "Entrypoint"),
            cmd=_strings(config, "Cmd"),
            env=_strings(config, "Env"),
            working_dir=_string(config, "WorkingDir"),
            user=_string(config, "User"),
            stop_signal=_string(config, "StopSignal"),
            volumes=tuple(sorted(_keys(config, "Volumes"))),
            exposed_ports=tuple(sorted(_keys(config, "ExposedPorts"))),
            labels=_labels(config),
        )

    @classmethod
    def from_blob(cls, blob: bytes) -> ImageConfig:
        try:
            document = json.loads(blob)
        except ValueError as e:
            raise InvalidArgument(f"the image config is not valid JSON: {e}") from None
        return cls.from_document(document)


def _string(config: dict[str, Any], key: str) -> str:
    value = config.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"the image config's {key} is not a string")
    return value


def _strings(config: dict[str, Any], key: str) -> tuple[str, ...]:
    value = config.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidArgument(f"the image config's {key} is not a list of strings")
    return tuple(value)


def _keys(config: dict[str, Any], key: str) -> list[str]:
    """The keys of a Go ``map[string]struct{}`` field (Volumes, ExposedPorts)."""
    value = config.get(key)
    if value is None:
        return []
    if not isinstance(value, dict):
        raise InvalidArgument(f"the image config's {key} is not a JSON object")
    return [str(k) for k in value]


def _labels(config: dict[str, Any]) -> dict[str, str]:
    value = config.get("Labels")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument("the image config's Labels is not a map of strings")
    return dict(value)
