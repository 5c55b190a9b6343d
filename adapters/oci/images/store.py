"""The oci adapter's image store under ``<state_dir>/oci``.

Layout::

    blobs/sha256/<hex>        manifests, indexes, configs and compressed layers
    ingest/                   downloads in progress (never read as content)
    snapshots/<hex>/fs        one unpacked layer, named by its diff_id
    snapshots/<hex>/meta.json its diff_id and unpacked size
    snapshots/.unpack-*       layers being unpacked
    leases/<name>.json        snapshots held by something else (a container's rootfs)
    trash/                    content being deleted
    images.json               every image record, replaced atomically

Content appears under its final name only once it is complete and verified
(rename), and an image becomes visible only when ``images.json`` is replaced
with a version that names it, after all its content is in place. A crash at
any point therefore leaves either the old set of images or the new one, plus
unreferenced content that ``collect_garbage`` removes. Nothing keeps
reference counts: what is live is computed from the records, the leases and
the pulls in progress, so the count can never drift.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pycrid.adapters.node import atomicfile
from pycrid.adapters.oci.images.digest import parse_digest

log = logging.getLogger("pycrid.oci.store")

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
except OSError:
    _libc = None

RECORDS_VERSION = 1


@dataclass(frozen=True)
class LayerRecord:
    digest: str
    """Digest of the layer blob as the registry serves it (compressed)."""
    media_type: str
    size: int
    """Compressed size."""
    diff_id: str
    unpacked_size: int


@dataclass
class ImageRecord:
    id: str
    """The image ID: the digest of its config."""
    repo_tags: list[str]
    repo_digests: list[str]
    manifests: list[str]
    """Digests of the indexes and manifests this image was pulled through."""
    layers: list[LayerRecord]
    user: str = ""
    platform: str = ""
    pulled_at: int = 0
    """Nanoseconds since the epoch of the last pull."""
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Unpacked size of all layers: the disk the image takes, as Docker counts it."""
        return sum(layer.unpacked_size for layer in self.layers)

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    def blobs(self) -> set[str]:
        return {self.id, *self.manifests, *(layer.digest for layer in self.layers)}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ImageRecord:
        layers = [LayerRecord(**layer) for layer in raw.get("layers", [])]
        return cls(**{**raw, "layers": layers})


def _hex(digest: str) -> str:
    return parse_digest(digest)[1]


class ContentStore:
    """Blobs, snapshots and image records on disk; thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "blobs"
        self.ingest_dir = root / "ingest"
        self.snapshots_dir = root / "snapshots"
        self.leases_dir = root / "leases"
        self.trash_dir = root / "trash"
        self.records_path = root / "images.json"
        self._lock = threading.RLock()
        self._records: dict[str, ImageRecord] = {}
        # Content that a pull in progress is creating or relies on.
        self._pins: Counter[str] = Counter()

    # Records.

    def open(self) -> None:
        """Create the layout, load the records and remove leftovers of a crash."""
        for directory in (self.blobs_dir, self.ingest_dir, self.snapshots_dir, self.leases_dir):
            directory.mkdir(parents=True, exist_ok=True)
        raw = atomicfile.read_json(self.records_path, default={"images": []})
        with self._lock:
            self._records = {}
            for item in raw.get("images", []):
                try:
                    record = ImageRecord.from_json(item)
                except (TypeError, KeyError) as e:
                    log.warning("skipping an unreadable image record: %s", e)
                    continue
                self._records[record.id] = record
        self.collect_garbage()

    def records(self) -> list[ImageRecord]:
        with self._lock:
            return list(self._records.values())

    def get(self, image_id: str) -> ImageRecord | None:
        with self._lock:
            return self._records.get(image_id)

    def _save(self) -> None:
        document = {
            "version": RECORDS_VERSION,
            "images": [r.to_json() for r in sorted(self._records.values(), key=lambda r: r.id)],
        }
        atomicfile.write_bytes(self.records_path, json.dumps(document, indent=1).encode())

    def commit(self, record: ImageRecord) -> ImageRecord:
        """Make ``record`` visible, merged with what is known of the same image.

        Its tags move away from any other image that had them (that image stays,
        reachable by ID and digest, as Docker and containerd keep it).
        """
        for layer in record.layers:
            if not self.has_snapshot(layer.diff_id):
                raise FileNotFoundError(f"snapshot of {layer.diff_id} is missing")
        for digest in record.blobs():
            if not self.has_blob(digest):
                raise FileNotFoundError(f"blob {digest} is missing")
        # Everything the record names must be on disk before the record is.
        self._sync()
        with self._lock:
            for other in self._records.values():
                if other.id != record.id:
                    other.repo_tags = [t for t in other.repo_tags if t not in record.repo_tags]
            existing = self._records.get(record.id)
            if existing is not None:
                record.repo_tags = _union(existing.repo_tags, record.repo_tags)
                record.repo_digests = _union(existing.repo_digests, record.repo_digests)
                record.manifests = _union(existing.manifests, record.manifests)
            self._records[record.id] = record
            self._save()
            return record

    def _sync(self) -> None:
        """Flush the store's filesystem (syncfs), or every filesystem where that is missing."""
        syncfs = getattr(_libc, "syncfs", None) if _libc is not None else None
        if syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
        os.sync()

    def remove(self, image_id: str) -> bool:
        """Forget an image with all its names; its content goes with the next collection."""
        with self._lock:
            if self._records.pop(image_id, None) is None:
                return False
            self._save()
        return True

    # Blobs.

    def blob_path(self, digest: str) -> Path:
        algorithm, hex_digest = parse_digest(digest)
        return self.blobs_dir / algorithm / hex_digest

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    @contextlib.contextmanager
    def ingest(self, digest: str) -> Iterator[tuple[Path, Any]]:
        """A temporary file to download ``digest`` into, and a function that commits it.

        The file is removed unless ``commit()`` was called; content is verified
        by the caller before it commits.
        """
        fd, name = tempfile.mkstemp(prefix=_hex(digest)[:16] + "-", dir=self.ingest_dir)
        os.close(fd)
        tmp = Path(name)
        final = self.blob_path(digest)
        committed = False

        def commit() -> None:
            nonlocal committed
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            committed = True

        try:
            yield tmp, commit
        finally:
            if not committed:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    def write_blob(self, digest: str, data: bytes) -> None:
        """Store a small verified blob (manifest, config)."""
        atomicfile.write_bytes(self.blob_path(digest), data, mode=0o644)

    # Snapshots.

    def snapshot_dir(self, diff_id: str) -> Path:
        return self.snapshots_dir / _hex(diff_id)

    def snapshot_fs(self, diff_id: str) -> Path:
        return self.snapshot_dir(diff_id) / "fs"

    def has_snapshot(self, diff_id: str) -> bool:
        return (self.snapshot_dir(diff_id) / "meta.json").is_file()

    def snapshot_size(self, diff_id: str) -> int:
        meta = atomicfile.read_json(self.snapshot_dir(diff_id) / "meta.json", default={})
        return int(meta.get("size", 0))

    def new_unpack_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=".unpack-", dir=self.snapshots_dir))

    def commit_snapshot(self, work: Path, diff_id: str, size: int) -> None:
        """Move a finished unpack (``work/fs``) into place as the snapshot of ``diff_id``."""
        atomicfile.write_json(work / "meta.json", {"diff_id": diff_id, "size": size})
        try:
            os.rename(work, self.snapshot_dir(diff_id))
        except OSError:
            # Another unpack of the same layer won; keep that one.
            shutil.rmtree(work, ignore_errors=True)
            if not self.has_snapshot(diff_id):
                raise

    # What is live, and collecting the rest.

    @contextlib.contextmanager
    def pinned(self, keys: Iterable[str]) -> Iterator[None]:
        """Protect blobs and snapshots (by digest or diff_id) from collection meanwhile."""
        keys = list(keys)
        with self._lock:
            self._pins.update(keys)
        try:
            yield
        finally:
            with self._lock:
                self._pins.subtract(keys)
                self._pins += Counter()  # drop zero counts

    def pin(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._pins.update(keys)

    def unpin(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._pins.subtract(keys)
            self._pins += Counter()

    def add_lease(self, name: str, diff_ids: list[str]) -> None:
        """Hold snapshots for something outside the image records (a container rootfs)."""
        atomicfile.write_json(self.leases_dir / f"{name}.json", {"diff_ids": diff_ids})

    def remove_lease(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.leases_dir / f"{name}.json").unlink()

    def _leased(self) -> set[str]:
        held: set[str] = set()
        for path in self.leases_dir.glob("*.json"):
            lease = atomicfile.read_json(path, default={})
            held.update(lease.get("diff_ids", []))
        return held

    def live(self) -> tuple[set[str], set[str]]:
        """(blob hexes, snapshot hexes) that must be kept."""
        with self._lock:
            blobs = {_hex(d) for r in self._records.values() for d in r.blobs()}
            snapshots = {_hex(d) for r in self._records.values() for d in r.diff_ids}
            pins = {_hex(k) for k in self._pins}
        return blobs | pins, snapshots | pins | {_hex(d) for d in self._leased()}

    def collect_garbage(self) -> int:
        """Delete content no image, lease or pull in progress needs; returns bytes freed.

        Dead content is only renamed into ``trash/`` while the lock is held (fast);
        the deleting happens after, so lookups and pulls never wait for it.
        """
        self.trash_dir.mkdir(exist_ok=True)
        with self._lock:
            live_blobs, live_snapshots = self.live()
            busy = bool(self._pins)
            dead: list[Path] = []
            for algorithm_dir in self.blobs_dir.iterdir():
                dead += [p for p in algorithm_dir.iterdir() if p.name not in live_blobs]
            for path in self.snapshots_dir.iterdir():
                unfinished = path.name.startswith(".")
                if unfinished and busy:
                    continue  # an unpack in progress
                if unfinished or path.name not in live_snapshots:
                    dead.append(path)
            if not busy:
                dead += list(self.ingest_dir.iterdir())
            for path in dead:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, tempfile.mkdtemp(prefix="gc-", dir=self.trash_dir) + "/x")
        freed = 0
        for path in list(self.trash_dir.iterdir()):
            freed += _size(path)
            shutil.rmtree(path, ignore_errors=True)
        return freed

    def usage(self) -> tuple[int, int]:
        """(bytes, inodes) the store takes on disk, hard links counted once."""
        seen: set[tuple[int, int]] = set()
        used = 0
        for directory, dirs, files in os.walk(self.root):
            for name in dirs + files:
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(directory, name))
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                    used += st.st_blocks * 512
        return used, len(seen)


def _union(first: list[str], second: list[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        total = 0
        for directory, _, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(directory, name)).st_blocks * 512
        return total
    with contextlib.suppress(OSError):
        return path.lstat().st_blocks * 512
    return 0
