"""The user a container's process runs as, resolved in its rootfs as containerd does.

Who: the CRI's ``run_as_username``, else ``run_as_user``, with ``run_as_group``
appended; when the CRI names nobody, the image's USER; when neither does, root.
A name is looked up in the rootfs' ``/etc/passwd`` (unknown is an error); a
uid is taken as it is, with the primary group and home from ``/etc/passwd``
when the uid is there, else group 0 and home ``/``.

Groups: the primary gid always, the CRI's ``supplemental_groups``, and, under
the Merge policy (the default), every group of the rootfs' ``/etc/group`` that
lists the user as a member. Strict leaves the image's groups out.

The rootfs is untrusted; its files are read through ``rootpath.read_in_root``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.oci.runtime.rootpath import read_in_root
from pycrid.api.cri import api_pb2 as cri

MAX_ID = (1 << 31) - 1
"""runc refuses IDs above MaxInt32 (containerd enforces the same bound)."""
MERGE = cri.Merge
STRICT = cri.Strict


@dataclass(frozen=True)
class ProcessUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    """Sorted and unique; includes ``gid``, as containerd and the kubelet expect."""
    home: str = "/"
    name: str = ""
    """The user's name in the image, "" when its uid has no passwd entry."""

    def to_oci(self) -> dict[str, Any]:
        return {"uid": self.uid, "gid": self.gid, "additionalGids": list(self.additional_gids)}


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def parse_passwd(text: str) -> list[PasswdEntry]:
    """``name:password:uid:gid:gecos:home:shell`` lines; malformed ones are skipped."""
    entries = []
    for fields in _records(text):
        if len(fields) >= 4 and _decimal(fields[2]) and _decimal(fields[3]):
            home = fields[5] if len(fields) > 5 and fields[5] else "/"
            entries.append(PasswdEntry(fields[0], int(fields[2]), int(fields[3]), home))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """``name:password:gid:member,member`` lines; malformed ones are skipped."""
    entries = []
    for fields in _records(text):
        if len(fields) >= 3 and _decimal(fields[2]):
            members = fields[3].split(",") if len(fields) > 3 else []
            entries.append(
                GroupEntry(fields[0], int(fields[2]), tuple(m.strip() for m in members if m))
            )
    return entries


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _records(text: str) -> Iterable[list[str]]:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line.split(":")


def requested_user(
    security: cri.LinuxContainerSecurityContext | cri.LinuxSandboxSecurityContext,
    image_user: str,
) -> str:
    """``user[:group]`` to run as: the CRI's choice, else the image's USER, else ""."""
    user = ""
    if security.HasField("run_as_user"):
        user = str(_in_range(security.run_as_user.value, "run_as_user"))
    # Only containers have a username; it wins over the uid, as in containerd.
    username = getattr(security, "run_as_username", "")
    if username:
        user = username
    if security.HasField("run_as_group"):
        if not user:
            raise InvalidArgument("run_as_group is set without run_as_user or run_as_username")
        return f"{user}:{_in_range(security.run_as_group.value, 'run_as_group')}"
    return user or image_user


def resolve_user(
    rootfs: str,
    user: str,
    supplemental_groups: Iterable[int] = (),
    policy: int = MERGE,
) -> ProcessUser:
    """The uid, gid, groups and home of ``user`` (``name``, ``uid``, ``x:group``) in ``rootfs``."""
    if policy not in (MERGE, STRICT):
        raise InvalidArgument(f"unknown supplemental groups policy {policy}")
    name_or_uid, _, group = user.partition(":")
    if ":" in group or (not name_or_uid and group):
        raise InvalidArgument(f"invalid user {user[:64]!r}")
    passwd = _UserFiles(rootfs)
    entry = passwd.user(name_or_uid or "0")
    uid = entry.uid if entry else _number(name_or_uid or "0", "uid")
    gid = entry.gid if entry else 0
    if group:
        gid = _number(group, "gid") if _decimal(group) else passwd.group_id(group)
    gids = {gid, *(_in_range(g, "supplemental group") for g in supplemental_groups)}
    if policy == MERGE and entry:
        gids.update(passwd.member_of(entry.name))
    return ProcessUser(
        uid=uid,
        gid=gid,
        additional_gids=tuple(sorted(gids)),
        home=entry.home if entry else "/",
        name=entry.name if entry else "",
    )


def _in_range(value: int, what: str) -> int:
    if not 0 <= value <= MAX_ID:
        raise InvalidArgument(f"{what} {value} is out of range")
    return value


def _number(text: str, what: str) -> int:
    if not _decimal(text) or int(text) > MAX_ID:
        raise InvalidArgument(f"{what} {text[:64]!r} is not a number from 0 to {MAX_ID}")
    return int(text)


class _UserFiles:
    """The rootfs' /etc/passwd and /etc/group, each read once when first needed."""

    def __init__(self, rootfs: str) -> None:
        self.rootfs = rootfs
        self._passwd: list[PasswdEntry] | None = None
        self._group: list[GroupEntry] | None = None

    def _read(self, relative: str) -> str | None:
        data = read_in_root(self.rootfs, relative)
        return None if data is None else data.decode(errors="replace")

    def passwd(self) -> list[PasswdEntry]:
        if self._passwd is None:
            self._passwd = parse_passwd(self._read("etc/passwd") or "")
        return self._passwd

    def groups(self) -> list[GroupEntry]:
        if self._group is None:
            self._group = parse_group(self._read("etc/group") or "")
        return self._group

    def user(self, name_or_uid: str) -> PasswdEntry | None:
        """The first passwd entry with this uid (None if none) or name (an error if none)."""
        if _decimal(name_or_uid):
            uid = _number(name_or_uid, "uid")
            return next((e for e in self.passwd() if e.uid == uid), None)
        found = next((e for e in self.passwd() if e.name == name_or_uid), None)
        if found is None:
            raise InvalidArgument(f"no user {name_or_uid[:64]!r} in the image's /etc/passwd")
        return found

    def group_id(self, name: str) -> int:
        found = next((g for g in self.groups() if g.name == name), None)
        if found is None:
            raise InvalidArgument(f"no group {name[:64]!r} in the image's /etc/group")
        return found.gid

    def member_of(self, username: str) -> set[int]:
        """Groups listing ``username`` as a member, except one named like the user
        (containerd's rule: that one is the user's own group, not a supplemental one)."""
        return {g.gid for g in self.groups() if username in g.members and g.name != username}
