"""The content store: records, atomic visibility, garbage collection, rootfs mounts."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from pycrid.adapters.oci.images.digest import sha256_of
from pycrid.adapters.oci.images.rootfs import is_mounted, prepare_rootfs, remove_rootfs
from pycrid.adapters.oci.images.store import ContentStore, ImageRecord, LayerRecord
from pycrid.adapters.oci.images.unpack import unpack


def make_tar(files: dict[str, bytes | None]) -> bytes:
    """A layer: name -> content, or None for a directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if data is None else 0o644
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def add_layer(store: ContentStore, files: dict[str, bytes | None]) -> LayerRecord:
    """Store a layer blob and its snapshot, as a pull does."""
    tar = make_tar(files)
    digest = sha256_of(tar)
    store.write_blob(digest, tar)
    work = store.new_unpack_dir()
    (work / "fs").mkdir()
    result = unpack(io.BytesIO(tar), work / "fs", digest)
    store.commit_snapshot(work, digest, result.size)
    return LayerRecord(
        digest=digest,
        media_type="application/vnd.oci.image.layer.v1.tar",
        size=len(tar),
        diff_id=digest,
        unpacked_size=result.size,
    )


def add_image(
    store: ContentStore, layers: list[LayerRecord], tags: list[str], marker: str
) -> ImageRecord:
    config = f'{{"marker": "{marker}"}}'.encode()
    manifest = f'{{"config": "{marker}"}}'.encode()
    store.write_blob(sha256_of(config), config)
    store.write_blob(sha256_of(manifest), manifest)
    record = ImageRecord(
        id=sha256_of(config),
        repo_tags=tags,
        repo_digests=[f"example.test/{marker}@{sha256_of(manifest)}"],
        manifests=[sha256_of(manifest)],
        layers=layers,
        user="1002",
    )
    return store.commit(record)


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    store = ContentStore(tmp_path / "oci")
    store.open()
    return store


def test_records_survive_reopening(store: ContentStore) -> None:
    layer = add_layer(store, {"a": b"hello"})
    record = add_image(store, [layer], ["example.test/a:1"], "a")
    again = ContentStore(store.root)
    again.open()
    assert again.get(record.id) == record
    assert again.get(record.id).size == 5


def test_tags_move_to_the_newest_image(store: ContentStore) -> None:
    layer = add_layer(store, {"a": b"hello"})
    old = add_image(store, [layer], ["example.test/app:latest"], "old")
    new = add_image(store, [layer], ["example.test/app:latest"], "new")
    assert store.get(old.id).repo_tags == []
    assert store.get(new.id).repo_tags == ["example.test/app:latest"]


def test_names_of_one_image_accumulate(store: ContentStore) -> None:
    layer = add_layer(store, {"a": b"hello"})
    add_image(store, [layer], ["example.test/x:1"], "same")
    record = add_image(store, [layer], ["example.test/y:2"], "same")
    assert record.repo_tags == ["example.test/x:1", "example.test/y:2"]


def test_shared_layers_are_kept_until_the_last_image_goes(store: ContentStore) -> None:
    shared = add_layer(store, {"base": b"b" * 100})
    own = add_layer(store, {"top": b"t"})
    first = add_image(store, [shared], ["example.test/one:1"], "one")
    second = add_image(store, [shared, own], ["example.test/two:1"], "two")
    store.remove(first.id)
    store.collect_garbage()
    assert store.has_snapshot(shared.diff_id) and store.has_blob(shared.digest)
    assert not store.has_blob(first.id)
    store.remove(second.id)
    assert store.collect_garbage() > 0
    assert not store.has_snapshot(shared.diff_id)
    assert not store.has_blob(shared.digest)
    assert list(store.snapshots_dir.iterdir()) == []


def test_a_crash_mid_pull_leaves_nothing_visible(store: ContentStore) -> None:
    """Content without a record (a pull killed before its commit) is collected on open."""
    layer = add_layer(store, {"a": b"x"})
    (store.ingest_dir / "partial-download").write_bytes(b"half")
    (store.new_unpack_dir() / "fs").mkdir()
    again = ContentStore(store.root)
    again.open()
    assert again.records() == []
    assert not again.has_blob(layer.digest)
    assert list(again.ingest_dir.iterdir()) == []
    assert list(again.snapshots_dir.iterdir()) == []


def test_pins_protect_content_of_pulls_in_progress(store: ContentStore) -> None:
    layer = add_layer(store, {"a": b"x"})
    with store.pinned([layer.digest, layer.diff_id]):
        store.collect_garbage()
        assert store.has_blob(layer.digest)
    store.collect_garbage()
    assert not store.has_blob(layer.digest)


def test_commit_refuses_records_whose_content_is_missing(store: ContentStore) -> None:
    layer = add_layer(store, {"a": b"x"})
    shutil.rmtree(store.snapshot_dir(layer.diff_id))
    with pytest.raises(FileNotFoundError):
        add_image(store, [layer], ["example.test/a:1"], "a")
    assert store.records() == []


def test_usage_counts_the_store(store: ContentStore) -> None:
    before, _ = store.usage()
    add_layer(store, {"big": b"z" * 200_000})
    after, inodes = store.usage()
    assert after - before >= 2 * 200_000  # the blob and the unpacked file
    assert inodes > 0


needs_overlay = pytest.mark.skipif(
    os.geteuid() != 0 or "overlay" not in Path("/proc/filesystems").read_text(),
    reason="needs root and overlayfs",
)


@needs_overlay
async def test_rootfs_is_an_overlay_of_the_snapshots(store: ContentStore, tmp_path: Path) -> None:
    base = add_layer(
        store, {"etc": None, "etc/passwd": b"root", "etc/motd": b"hi", "var": None, "var/a": b"1"}
    )
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        for name in ("etc/.wh.motd", "var/.wh..wh..opq"):
            t.addfile(tarfile.TarInfo(name))
        info = tarfile.TarInfo("var/b")
        info.size = 1
        t.addfile(info, io.BytesIO(b"2"))
    top_tar = tar.getvalue()
    work = store.new_unpack_dir()
    (work / "fs").mkdir()
    result = unpack(io.BytesIO(top_tar), work / "fs")
    store.commit_snapshot(work, result.diff_id, result.size)
    store.write_blob(sha256_of(top_tar), top_tar)
    top = LayerRecord(sha256_of(top_tar), "x", len(top_tar), result.diff_id, result.size)
    image = add_image(store, [base, top], ["example.test/app:1"], "app")

    container = tmp_path / "containers" / "c1"
    rootfs = await prepare_rootfs(store, image, container, "c1")
    try:
        assert is_mounted(rootfs)
        assert (rootfs / "etc/passwd").read_bytes() == b"root"
        assert not (rootfs / "etc/motd").exists()
        assert sorted(os.listdir(rootfs / "var")) == ["b"]
        (rootfs / "new-file").write_text("written")
        assert (container / "upper/new-file").read_text() == "written"
        # The image goes, its snapshots stay while the rootfs holds them.
        store.remove(image.id)
        store.collect_garbage()
        assert store.has_snapshot(base.diff_id)
        assert (rootfs / "etc/passwd").exists()
    finally:
        await remove_rootfs(store, container, "c1")
    assert not is_mounted(rootfs)
    assert not container.exists()
    store.collect_garbage()
    assert not store.has_snapshot(base.diff_id)
    await remove_rootfs(store, container, "c1")  # a second removal is fine


@needs_overlay
async def test_rootfs_of_an_image_without_layers(store: ContentStore, tmp_path: Path) -> None:
    image = add_image(store, [], ["example.test/empty:1"], "empty")
    rootfs = await prepare_rootfs(store, image, tmp_path / "c2", "c2")
    try:
        assert os.listdir(rootfs) == []
        assert stat.S_ISDIR(os.stat(rootfs).st_mode)
    finally:
        await remove_rootfs(store, tmp_path / "c2", "c2")
