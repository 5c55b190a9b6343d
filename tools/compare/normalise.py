"""Answers as flat ``{field path: value}`` maps, with what must differ made equal.

Two runtimes never agree on IDs, times, PIDs, IP addresses or where their
files live, so those read as placeholders: an ID the scenario learnt reads as
``<container:web>``, a time as ``<time>``, an address as ``<ip>``, a path
under a side's private directory as ``<dir>/...``. Lists of messages are
sorted by their normalised content, since runtimes list in any order.
Everything else is compared as it is; what may still differ is for the rules.
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

TIME_FIELDS = ("created_at", "started_at", "finished_at", "timestamp")
PID_FIELDS = ("pid",)
# Usage figures change from one reading to the next, and a runtime may report
# zero where another counts: only whether a figure is reported is compared.
USAGE_PATTERNS = (
    "*cpu.*.value",
    "*memory.*.value",
    "*swap.*.value",
    "*network.*.value",
    "*interfaces*.value",
    "*writable_layer.*.value",
    "*process.*.value",
    "*_filesystems*.value",
)
IP = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
STREAM_URL = re.compile(r"(https?://[^/:\s]+):\d+/(exec|attach|portforward)/[^\s?\"']+")
INDEX = re.compile(r"\[[^\]]*\]")


def plain(message: Message) -> dict[str, Any]:
    """The fields a message has set, as plain values (enums by name, bytes as text)."""
    out: dict[str, Any] = {}
    for fd, value in message.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            out[fd.name] = {str(k): _scalar(value_fd, v) for k, v in value.items()}
        elif fd.is_repeated:
            out[fd.name] = [_scalar(fd, v) for v in value]
        else:
            out[fd.name] = _scalar(fd, value)
    return out


def _scalar(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return plain(value)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        named = fd.enum_type.values_by_number.get(value)
        return named.name if named is not None else value
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return value.decode("utf-8", "replace")
    return value


def _is_usage(path: str) -> bool:
    bare = INDEX.sub("", path)
    return any(fnmatch.fnmatch(bare, p) for p in USAGE_PATTERNS)


def _name(item: Any) -> tuple[str, str] | None:
    """What names a listed message (metadata.name, name or type), or None."""
    if not isinstance(item, dict):
        return None
    metadata = item.get("metadata")
    if isinstance(metadata, dict) and "name" in metadata:
        return "name", str(metadata["name"])
    for key in ("name", "type"):
        if key in item:
            return key, str(item[key])
    # The CRI leaves a default (empty) name out of the message.
    return ("name", "") if "features" in item else None


def _identity(item: dict[str, Any]) -> str:
    """Sort key of a listed message: its name when it has one, then all of it."""
    named = _name(item)
    return f"{named[1] if named else ''}\0{json.dumps(item, sort_keys=True, default=str)}"


def _keys(items: list[Any]) -> list[str]:
    """Path keys of listed messages: ``name=web`` when names tell them apart, else indexes.

    Keyed by name, a message that one side lacks is one difference instead of
    shifting every message after it.
    """
    names = [_name(item) for item in items]
    if all(names) and len({n for n in names}) == len(names):
        return [f"{n[0]}={n[1]}" for n in names if n]
    return [str(i) for i in range(len(items))]


class Normaliser:
    """Normalises one side's answers, knowing that side's IDs and private directories."""

    def __init__(self, names: dict[str, str], dirs: list[str]) -> None:
        # Longest first, so that no name is replaced inside a longer one.
        self.names = sorted(names.items(), key=lambda item: -len(item[0]))
        self.dirs = sorted((d.rstrip("/") for d in dirs if d), key=len, reverse=True)

    def flat(self, answer: Message | dict[str, Any] | None) -> dict[str, Any]:
        if answer is None:
            return {}
        tree = plain(answer) if isinstance(answer, Message) else answer
        out: dict[str, Any] = {}
        self._walk(self._normal(tree, ""), "", out)
        return out

    def _normal(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            if set(value) <= {"value"} and _is_usage(f"{path}.value"):
                return "<reported>"
            return {
                self.text(str(k)): self._normal(v, f"{path}.{k}" if path else str(k))
                for k, v in value.items()
            }
        if isinstance(value, list):
            items = [self._normal(v, f"{path}[]") for v in value]
            if items and all(isinstance(v, dict) for v in items):
                items.sort(key=_identity)
            return items
        return self.value(path, value)

    def value(self, path: str, value: Any) -> Any:
        """One field's value, normalised by what the field is."""
        last = INDEX.sub("", path).rsplit(".", 1)[-1]
        if last in TIME_FIELDS or last in PID_FIELDS:
            return f"<{'pid' if last in PID_FIELDS else 'time'}>" if value else value
        if isinstance(value, int | float) and _is_usage(path):
            return "<reported>"
        if isinstance(value, str):
            return self.text(value)
        return value

    def text(self, value: str) -> str:
        for directory in self.dirs:
            value = value.replace(directory, "<dir>")
        for name, placeholder in self.names:
            value = value.replace(name, f"<{placeholder}>")
        value = STREAM_URL.sub(r"\1:<port>/\2/<token>", value)
        return IP.sub("<ip>", value)

    def _walk(self, value: Any, path: str, out: dict[str, Any]) -> None:
        if isinstance(value, dict):
            if not value and path:
                out[path] = "<set>"
            for key, item in value.items():
                self._walk(item, f"{path}.{key}" if path else key, out)
        elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
            keys = _keys(value)
            for key, item in zip(keys, value, strict=True):
                self._walk(item, f"{path}[{key}]", out)
        elif isinstance(value, list):
            # A list of plain values is one value: ["a", "b"] against ["a"] is one difference.
            if value:
                out[path] = value
        else:
            out[path] = value
