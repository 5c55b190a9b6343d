"""Unpacking one image layer into an overlayfs lower directory.

A layer is a tar stream (plain, gzip or zstd). Its entries are written below
an empty directory that becomes one overlayfs layer, so OCI whiteouts are
turned into overlayfs ones: ``.wh.<name>`` becomes a 0/0 character device
``<name>`` and ``.wh..wh..opq`` becomes the ``trusted.overlay.opaque``
attribute of its directory.

Nothing is ever written through a symbolic link: every path is walked one
component at a time from the root with ``O_NOFOLLOW``. Entries whose path,
hard-link target or relative symlink target would leave the root are refused,
as Docker's archive package does. The uncompressed stream is hashed on the way
and must match the image config's diff_id.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import gzip
import hashlib
import io
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import unquote

import zstandard

log = logging.getLogger("pycrid.oci.unpack")

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# Attributes a layer may not set: they would forge overlayfs metadata.
FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.",)
COPY_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class UnpackError(Exception):
    """The layer cannot be unpacked (corrupt, or an entry that would escape the root)."""


@dataclass(frozen=True)
class UnpackResult:
    diff_id: str
    """sha256 of the uncompressed tar stream."""
    size: int
    """Bytes of file content, hard links counted once (what Docker reports)."""
    entries: int
    stream_size: int
    """Bytes of the uncompressed tar stream."""


class _HashingReader(io.RawIOBase):
    """Passes reads through and hashes every byte."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        if not data:
            return 0
        self.hash.update(data)
        self.count += len(data)
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size) if size >= 0 else self._source.read()
        self.hash.update(data)
        self.count += len(data)
        return data


def decompressed(source: BinaryIO) -> BinaryIO:
    """``source`` decompressed by what its first bytes say it is (gzip, zstd or plain tar)."""
    buffered: Any = source
    if not isinstance(source, io.BufferedReader):
        buffered = io.BufferedReader(cast(Any, source))
    magic = buffered.peek(4)[:4]
    if magic.startswith(GZIP_MAGIC):
        return cast(BinaryIO, gzip.GzipFile(fileobj=buffered, mode="rb"))
    if magic == ZSTD_MAGIC:
        reader = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
        return cast(BinaryIO, reader)
    return cast(BinaryIO, buffered)


def clean_path(name: str) -> list[str]:
    """The components of a tar entry's path below the root; UnpackError if it leaves it."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnpackError(f"entry {name!r} points outside the layer root")
            parts.pop()
        else:
            parts.append(part)
    return parts


def _check_symlink_target(parts: list[str], target: str) -> None:
    """Refuse a relative symlink target that climbs above the root (as Docker does)."""
    if target.startswith("/"):
        return  # resolved against the container's root when it is used
    depth = 0
    for part in [*parts[:-1], *target.split("/")]:
        if part == "..":
            depth -= 1
            if depth < 0:
                raise UnpackError(
                    f"symlink {'/'.join(parts)!r} -> {target!r} points outside the root"
                )
        elif part not in ("", "."):
            depth += 1


def _xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            yield key[len("SCHILY.xattr.") :], value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            with contextlib.suppress(ValueError):
                yield unquote(key[len("LIBARCHIVE.xattr.") :]), base64.b64decode(value)


class _Writer:
    """Writes entries below one root directory, never following symlinks."""

    def __init__(self, root: Path) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.size = 0
        self.entries = 0
        self.dir_times: list[tuple[list[str], float]] = []

    def close(self) -> None:
        os.close(self.root_fd)

    @contextlib.contextmanager
    def parent(self, parts: list[str], create: bool = True) -> Iterator[int]:
        """An fd of the directory holding ``parts[-1]``; missing directories are made."""
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts[:-1]):
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise UnpackError(f"{'/'.join(parts)!r}: no such entry") from None
                    os.mkdir(part, 0o755, dir_fd=fd)
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        where = "/".join(parts[: i + 1])
                        raise UnpackError(
                            f"entry {'/'.join(parts)!r} goes through {where!r}, "
                            "which is not a directory"
                        ) from None
                    raise
                os.close(fd)
                fd = next_fd
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _existing(fd: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _clear(self, fd: int, name: str, keep_dir: bool) -> None:
        """Remove what an earlier entry of this layer left at ``name``."""
        found = self._existing(fd, name)
        if found is None:
            return
        if stat.S_ISDIR(found.st_mode):
            if keep_dir:
                return
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)

    def _metadata(self, fd: int, name: str, member: tarfile.TarInfo, symlink: bool) -> None:
        try:
            os.chown(name, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
        except PermissionError:
            log.debug("cannot chown %s to %d:%d", member.name, member.uid, member.gid)
        if not symlink:
            # After chown, which clears the set-id bits.
            os.chmod(name, stat.S_IMODE(member.mode), dir_fd=fd)
            for key, value in _xattrs(member):
                if key.startswith(FORBIDDEN_XATTR_PREFIXES):
                    continue
                try:
                    os.setxattr(f"/proc/self/fd/{fd}/{name}", key, value, follow_symlinks=False)
                except OSError as e:
                    log.debug("cannot set xattr %s on %s: %s", key, member.name, e.strerror)
        if not member.isdir():
            os.utime(name, (member.mtime, member.mtime), dir_fd=fd, follow_symlinks=False)

    def whiteout(self, parts: list[str]) -> None:
        name = parts[-1]
        with self.parent(parts) as fd:
            if name == OPAQUE_MARKER:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
                return
            if name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                return  # other AUFS metadata (.wh..wh.plnk and the like) has no meaning here
            hidden = name[len(WHITEOUT_PREFIX) :]
            if not hidden or hidden in (".", ".."):
                raise UnpackError(f"invalid whiteout {'/'.join(parts)!r}")
            self._clear(fd, hidden, keep_dir=False)
            os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=fd)

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str]) -> None:
        name = parts[-1]
        with self.parent(parts) as fd:
            if member.isdir():
                self._clear(fd, name, keep_dir=True)
                if self._existing(fd, name) is None:
                    os.mkdir(name, 0o700, dir_fd=fd)
                self._metadata(fd, name, member, symlink=False)
                self.dir_times.append((parts, member.mtime))
            elif member.isreg():
                self._clear(fd, name, keep_dir=False)
                self._write_file(tar, member, fd, name)
                self._metadata(fd, name, member, symlink=False)
            elif member.issym():
                _check_symlink_target(parts, member.linkname)
                self._clear(fd, name, keep_dir=False)
                os.symlink(member.linkname, name, dir_fd=fd)
                self._metadata(fd, name, member, symlink=True)
                self.size += len(os.fsencode(member.linkname))
            elif member.islnk():
                self._link(fd, name, parts, member)
            elif member.ischr() or member.isblk():
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                self._clear(fd, name, keep_dir=False)
                device = os.makedev(member.devmajor, member.devminor)
                os.mknod(name, kind | 0o600, device, dir_fd=fd)
                self._metadata(fd, name, member, symlink=False)
            elif member.isfifo():
                self._clear(fd, name, keep_dir=False)
                os.mkfifo(name, 0o600, dir_fd=fd)
                self._metadata(fd, name, member, symlink=False)
            else:
                log.debug("skipping tar entry %s of type %r", member.name, member.type)
                return
        self.entries += 1

    def _write_file(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int, name: str
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(name, flags, 0o600, dir_fd=fd)
        try:
            source = tar.extractfile(member)
            if source is not None:
                while chunk := source.read(COPY_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view) :]
        finally:
            os.close(out)
        self.size += member.size

    def _link(self, fd: int, name: str, parts: list[str], member: tarfile.TarInfo) -> None:
        target = clean_path(member.linkname)
        if not target:
            raise UnpackError(f"hard link {member.name!r} -> {member.linkname!r} is invalid")
        with self.parent(target, create=False) as target_fd:
            found = self._existing(target_fd, target[-1])
            if found is None or stat.S_ISDIR(found.st_mode):
                raise UnpackError(
                    f"hard link {member.name!r} -> {member.linkname!r}: no such file in the layer"
                )
            if target == parts:
                return
            self._clear(fd, name, keep_dir=False)
            os.link(target[-1], name, src_dir_fd=target_fd, dst_dir_fd=fd, follow_symlinks=False)

    def finish(self) -> None:
        """Directory times last: writing into a directory changes its mtime."""
        for parts, mtime in reversed(self.dir_times):
            with contextlib.suppress(OSError), self.parent(parts, create=False) as fd:
                os.utime(parts[-1], (mtime, mtime), dir_fd=fd, follow_symlinks=False)


def unpack(source: BinaryIO, root: Path, expected_diff_id: str | None = None) -> UnpackResult:
    """Unpack a (compressed) layer from ``source`` into the empty directory ``root``."""
    hashing = _HashingReader(decompressed(source))
    writer = _Writer(root)
    try:
        try:
            # tarfile's stream reads 10 KiB at a time unless told otherwise: a
            # large layer then costs a hundred Python-level reads per MiB.
            with tarfile.open(  # type: ignore[call-overload]
                fileobj=hashing, mode="r|", bufsize=COPY_CHUNK
            ) as tar:
                for member in tar:
                    parts = clean_path(member.name)
                    if not parts:
                        continue  # the root itself
                    if parts[-1].startswith(WHITEOUT_PREFIX):
                        writer.whiteout(parts)
                    else:
                        writer.add(tar, member, parts)
            while hashing.read(COPY_CHUNK):
                pass  # the tar's padding after its end-of-archive blocks is part of the diff_id
        except (tarfile.TarError, EOFError, zstandard.ZstdError, gzip.BadGzipFile) as e:
            raise UnpackError(f"corrupt layer: {e}") from None
        writer.finish()
    finally:
        writer.close()
    diff_id = "sha256:" + hashing.hash.hexdigest()
    if expected_diff_id and diff_id != expected_diff_id:
        raise UnpackError(
            f"layer content has diff_id {diff_id}, the image config says {expected_diff_id}"
        )
    return UnpackResult(
        diff_id=diff_id, size=writer.size, entries=writer.entries, stream_size=hashing.count
    )


def unpack_file(path: Path, root: Path, expected_diff_id: str | None = None) -> UnpackResult:
    with open(path, "rb") as source:
        return unpack(source, root, expected_diff_id)
