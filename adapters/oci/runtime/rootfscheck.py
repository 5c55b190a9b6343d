"""What the container's process needs from its root filesystem, checked before runc.

``runc create`` looks the program up and changes into the working directory
inside the container; when either is wrong it fails with a message of its
own, late and as an internal error. Both are the caller's mistake about the
image, so they are checked here first, on the prepared root filesystem,
following symbolic links the way the container would see them (an absolute
link points into the root filesystem, never out of it).

Paths under a mount of the container's (a volume, a host directory) are not
checked: what will be there is not known until runc mounts it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

from pycrid.adapters.errors import FailedPrecondition, InvalidArgument

MAX_LINKS = 40  # the kernel's limit on symbolic links in one lookup


class _Loop(OSError):
    pass


def resolve(root: Path, path: str) -> Path | None:
    """Where ``path`` (absolute, inside the container) is under ``root``; None when missing.

    Raises NotADirectoryError when a component that must be a directory is not.
    """
    links = 0
    todo = [p for p in reversed(path.split("/")) if p]
    done: list[str] = []
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise _Loop(errno.ELOOP, "too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo.extend(p for p in reversed(target.split("/")) if p)
            continue
        if todo and not stat.S_ISDIR(info.st_mode):
            where = "/" + "/".join([*done, part])
            raise NotADirectoryError(errno.ENOTDIR, f"{where} is not a directory")
        done.append(part)
    return root.joinpath(*done)


def _under(path: str, destinations: list[str]) -> bool:
    path = os.path.normpath(path)
    return any(
        d != "/" and (path == d or path.startswith(d.rstrip("/") + "/")) for d in destinations
    )


def _executable(found: Path | None) -> bool:
    if found is None:
        return False
    try:
        info = os.stat(found)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and bool(info.st_mode & 0o111)


def check_process(rootfs: Path, spec: dict[str, Any], field: str) -> None:
    """Refuse a program the image lacks (InvalidArgument) or a working directory that
    is not one (FailedPrecondition); ``field`` names where the program came from."""
    process = spec.get("process") or {}
    destinations = [m.get("destination", "") for m in spec.get("mounts") or []]
    cwd = process.get("cwd") or "/"
    try:
        directory = None if _under(cwd, destinations) else resolve(rootfs, cwd)
        if directory is not None and not directory.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{cwd} is not a directory")
    except (NotADirectoryError, _Loop) as e:
        raise FailedPrecondition(
            f"working_dir {cwd[:256]!r} cannot be used in the image: {e.strerror}"
        ) from None
    program = (process.get("args") or [""])[0]
    if "/" in program:
        path = program if program.startswith("/") else os.path.join(cwd, program)
        if _under(path, destinations):
            return
        if not _executable(_lookup(rootfs, path)):
            raise InvalidArgument(
                f"{field} {program[:256]!r} is not an executable file in the image"
            )
        return
    search = _path_of(process.get("env") or [])
    if any(_under(d, destinations) for d in search if d.startswith("/")):
        return
    for entry in search:
        if entry.startswith("/") and _executable(_lookup(rootfs, f"{entry}/{program}")):
            return
    raise InvalidArgument(
        f"{field} {program[:256]!r} is not found in the image's PATH ({':'.join(search)[:256]})"
    )


def _lookup(rootfs: Path, path: str) -> Path | None:
    try:
        return resolve(rootfs, path)
    except OSError:
        return None


def _path_of(env: list[str]) -> list[str]:
    """The PATH the process gets (the last one set wins, as in execve)."""
    value = ""
    for entry in env:
        if entry.startswith("PATH="):
            value = entry[5:]
    return [d for d in value.split(":") if d]
