"""What pycrid prepares for a pod with a user namespace (``userns.py``): ID-mapped
root filesystems and CRI mounts, ownership, and runc create through the reach
wrapper, with real mounts, runc and conmon (root needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.oci.images.rootfs import lease_name, remove_rootfs
from pycrid.adapters.oci.images.store import ContentStore, ImageRecord, LayerRecord
from pycrid.adapters.oci.runtime import idmap, userns
from pycrid.adapters.oci.runtime.conmon import Conmon
from pycrid.api.cri import api_pb2 as cri

from .test_oci_conmon_kit import (
    RUNC,
    OciKit,
    Started,
    bounded,
    exit_of,
    kit,
    requires_runtime,
    wait_for,
)
from .test_oci_idmap import _mounts_below, requires_root

__all__ = ["kit"]

HOST_ID = 100000
LAYER = "application/vnd.oci.image.layer.v1.tar"
CRI_MAPPING = [cri.IDMapping(container_id=0, host_id=HOST_ID, length=65536)]
POD = cri.NamespaceOption(
    userns_options=cri.UserNamespace(mode=cri.POD, uids=CRI_MAPPING, gids=CRI_MAPPING)
)


@pytest.fixture
def ids() -> userns.PodIds:
    found = userns.PodIds.of(POD)
    assert found is not None
    return found


@pytest.fixture
def area(tmp_path: Path) -> Iterator[Path]:
    """A directory whose mounts are all detached at the end, before it is removed."""
    yield tmp_path
    for mount_point in sorted(_mounts_below(tmp_path), key=len, reverse=True):
        idmap.detach(mount_point)


def test_pod_ids() -> None:
    assert userns.PodIds.of(cri.NamespaceOption()) is None
    node = cri.NamespaceOption(userns_options=cri.UserNamespace(mode=cri.NODE))
    assert userns.PodIds.of(node) is None
    found = userns.PodIds.of(POD)
    assert found is not None
    assert (found.root_uid, found.root_gid) == (HOST_ID, HOST_ID)
    assert found.uid_mappings == ({"containerID": 0, "hostID": HOST_ID, "size": 65536},)


def test_staging_dir() -> None:
    assert userns.staging_dir(Path("/run/pycrid/oci"), "abc") == Path("/run/pycrid/oci/idmap/abc")


@pytest.fixture
def searchable() -> Iterator[Path]:
    """A directory of this test's own below /tmp that everyone may search (unlike tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix="pycrid-idmap-test-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_wrapper_is_used_only_when_a_parent_is_not_searchable(
    searchable: Path, ids: userns.PodIds
) -> None:
    if not Path("/tmp").stat().st_mode & 0o001:
        pytest.skip("/tmp is not searchable by others")
    tmp_path = searchable
    notes: list[str] = []
    open_rootfs = tmp_path / "open" / "rootfs"
    open_rootfs.mkdir(parents=True)
    assert userns.runtime_for(open_rootfs, ids, tmp_path, RUNC, notes) is None
    assert notes == []
    (tmp_path / "open").chmod(0o700)
    runtime = userns.runtime_for(open_rootfs, ids, tmp_path, RUNC, notes)
    assert runtime == str(tmp_path / "runtime")
    assert f"--cover {tmp_path / 'open'} -- {RUNC}" in Path(runtime).read_text()
    assert "host UID 100000" in notes[0]


# Root filesystems.


def _layer(digest: str, diff_id: str) -> LayerRecord:
    return LayerRecord(digest=digest, media_type=LAYER, size=1, diff_id=diff_id, unpacked_size=1)


def _store_with_image(root: Path) -> tuple[ContentStore, ImageRecord]:
    """A content store holding a two-layer image whose files host root owns."""
    store = ContentStore(root / "store")
    store.open()
    layers = []
    for number, files in enumerate(({"etc/base": "base\n"}, {"etc/top": "top\n"})):
        work = store.new_unpack_dir()
        for name, content in files.items():
            (work / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
            (work / "fs" / name).write_text(content)
        diff_id = f"sha256:{number:064x}"
        store.commit_snapshot(work, diff_id, 1)
        layers.append(_layer(f"sha256:{number + 10:064x}", diff_id))
    image = ImageRecord(
        id=f"sha256:{99:064x}", repo_tags=[], repo_digests=[], manifests=[], layers=layers
    )
    return store, image


@requires_root
async def test_an_id_mapped_rootfs_belongs_to_the_pods_root(area: Path, ids: userns.PodIds) -> None:
    store, image = _store_with_image(area)
    container_dir, staging = area / "c" / "fs", area / "run" / "idmap" / "c"
    rootfs = await userns.mount_rootfs(store, image, container_dir, "c", staging, ids)
    try:
        assert (store.leases_dir / f"{lease_name('c')}.json").exists()
        assert not staging.exists()  # overlayfs holds the layers itself
        assert _mounts_below(area) == [str(rootfs)]
        for path in (rootfs, rootfs / "etc", rootfs / "etc" / "base", rootfs / "etc" / "top"):
            assert (path.stat().st_uid, path.stat().st_gid) == (HOST_ID, HOST_ID), path
        assert (rootfs / "etc" / "base").read_text() == "base\n"
        # The container's root writes (here, host UID 100000 through the mount):
        (rootfs / "etc" / "base").write_text("changed\n")
        copied_up = container_dir / "upper" / "etc" / "base"
        assert copied_up.stat().st_uid == HOST_ID
        lower = store.snapshot_fs(image.diff_ids[0]) / "etc" / "base"
        assert lower.read_text() == "base\n" and lower.stat().st_uid == 0
    finally:
        await remove_rootfs(store, container_dir, "c")
    assert _mounts_below(area) == []
    assert not (store.leases_dir / f"{lease_name('c')}.json").exists()


@requires_root
async def test_a_failed_rootfs_leaves_no_mount_and_no_lease(area: Path, ids: userns.PodIds) -> None:
    store, image = _store_with_image(area)
    (area / "c" / "fs").mkdir(parents=True)
    (area / "c" / "fs" / "work").write_text("a file where overlayfs wants a directory")
    with pytest.raises(FileExistsError):
        await userns.mount_rootfs(store, image, area / "c" / "fs", "c", area / "staging", ids)
    assert _mounts_below(area) == []
    assert not (store.leases_dir / f"{lease_name('c')}.json").exists()
    shutil.rmtree(area / "c")
    missing = _layer("sha256:" + "e" * 64, "sha256:" + "f" * 64)
    broken = ImageRecord(
        id=image.id, repo_tags=[], repo_digests=[], manifests=[], layers=[*image.layers, missing]
    )
    with pytest.raises(Exception, match="lacks the snapshots"):
        await userns.mount_rootfs(store, broken, area / "c" / "fs", "c", area / "staging", ids)
    assert _mounts_below(area) == []


# CRI mounts.


@requires_root
async def test_cri_mounts_of_a_user_namespace_pod_are_id_mapped(
    area: Path, ids: userns.PodIds
) -> None:
    volume = area / "volume"
    volume.mkdir()
    (volume / "file").write_text("x")
    other = [cri.IDMapping(container_id=0, host_id=300000, length=10)]
    mounts = [
        cri.Mount(host_path=str(volume), container_path="/pods"),
        cri.Mount(host_path="/proc/cpuinfo", container_path="/cpuinfo"),
        cri.Mount(host_path=str(area / "missing"), container_path="/missing"),
        cri.Mount(
            host_path=str(volume / "file"),
            container_path="/own",
            uidMappings=other,
            gidMappings=other,
        ),
    ]
    staging = area / "staging"
    notes: list[str] = []
    staged = await userns.stage_cri_mounts(mounts, ids, staging, notes)
    assert staged == {0: str(staging / "m0"), 3: str(staging / "m3")}
    assert (staging / "m0" / "file").stat().st_uid == HOST_ID  # the pod's mapping
    assert (staging / "m3").stat().st_uid == 300000  # the mount's own
    assert notes and "/proc/cpuinfo" in notes[0]  # procfs cannot be ID-mapped: bound as it is
    userns.clear_staging(staging)
    assert not staging.exists() and _mounts_below(area) == []
    assert (volume / "file").read_text() == "x"


@requires_root
async def test_cri_mount_mappings_are_checked(area: Path, ids: userns.PodIds) -> None:
    volume = area / "volume"
    volume.mkdir()
    mapped = cri.Mount(host_path=str(volume), container_path="/v", uidMappings=CRI_MAPPING)
    with pytest.raises(InvalidArgument, match="need a pod with a user namespace"):
        await userns.stage_cri_mounts([mapped], None, area / "staging", [])
    with pytest.raises(InvalidArgument, match="needs both UID and GID mappings"):
        await userns.stage_cri_mounts([mapped], ids, area / "staging", [])
    # A mount that cannot be ID-mapped although the CRI asked for it: an error,
    # and what was staged before it goes.
    proc = cri.Mount(
        host_path="/proc", container_path="/p", uidMappings=CRI_MAPPING, gidMappings=CRI_MAPPING
    )
    plain = cri.Mount(host_path=str(volume), container_path="/v")
    with pytest.raises(InvalidArgument, match="cannot make an ID-mapped mount of /proc"):
        await userns.stage_cri_mounts([plain, proc], ids, area / "staging", [])
    assert not (area / "staging").exists() and _mounts_below(area) == []
    # A pod without a user namespace: nothing to stage.
    assert await userns.stage_cri_mounts([plain], None, area / "staging", []) == {}


def test_give_to_root(tmp_path: Path, ids: userns.PodIds) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    (tmp_path / "hosts").write_text("")
    userns.give_to_root([tmp_path / "hosts"], ids)
    assert (tmp_path / "hosts").stat().st_uid == HOST_ID


def test_conmon_runs_the_runtime_it_is_given(tmp_path: Path) -> None:
    monitor = Conmon("conmon", "/usr/sbin/runc", tmp_path / "runc")
    argv = monitor.argv("id", tmp_path, "log", tmp_path, tmp_path, False, False, False, "n")
    assert argv[argv.index("-r") + 1] == "/usr/sbin/runc"
    argv = monitor.argv(
        "id", tmp_path, "log", tmp_path, tmp_path, False, False, False, "n", runtime="/w"
    )
    assert argv[argv.index("-r") + 1] == "/w"
    assert f"--root={tmp_path / 'runc'}" in argv


# runc 1.1 under conmon, in a user namespace, with the rootfs below a private directory.


def _userns_bundle(kit: OciKit, args: list[str], ids: userns.PodIds) -> Started:
    """A kit bundle turned into a user namespace one whose rootfs (host root's files)
    is ID-mapped at ``<bundle>/mapped``; the kit's tmp_path is below a 0700 directory."""
    started = kit.prepare(args)
    config = json.loads((started.bundle / "config.json").read_text())
    linux = config["linux"]
    linux["namespaces"] += [{"type": "user"}, {"type": "network"}]
    linux["uidMappings"] = list(ids.uid_mappings)
    linux["gidMappings"] = list(ids.gid_mappings)
    config["root"]["path"] = "mapped"
    (started.bundle / "config.json").write_text(json.dumps(config))
    return started


@requires_runtime
@bounded(60)
async def test_runc_create_reaches_a_rootfs_below_a_private_directory(
    kit: OciKit, ids: userns.PodIds
) -> None:
    started = _userns_bundle(kit, ["cat", "/proc/self/uid_map"], ids)
    container_id, bundle, persist = started.id, started.bundle, started.persist
    (bundle / "mapped").mkdir()
    async with idmap.user_namespace(ids.uid_mappings, ids.gid_mappings) as userns_fd:
        idmap.mount_idmapped(bundle / "rootfs", bundle / "mapped", userns_fd, recursive=False)
    try:
        kit.base.chmod(0o700)  # as a mkdtemp state root is
        notes: list[str] = []
        runtime = userns.runtime_for(bundle / "mapped", ids, bundle, RUNC, notes)
        assert runtime is not None and str(kit.base) in notes[0]
        log_path = kit.logs / "uid_map.log"

        # runc alone: its init, as host UID 100000, cannot cross the private directory.
        with pytest.raises(Exception, match="permission denied"):
            await kit.conmon.create(container_id, bundle, str(log_path), kit.exits, persist)

        await kit.conmon.create(
            container_id, bundle, str(log_path), kit.exits, persist, runtime=runtime
        )
        await kit.runc.start(container_id)
        assert await exit_of(started) == 0
        text = await wait_for(lambda: log_path.exists() and log_path.read_text(), what="log")
        assert text.split(" F ")[-1].split() == ["0", str(HOST_ID), "65536"]
        assert oct(kit.base.stat().st_mode & 0o777) == "0o700"
    finally:
        await kit.runc.delete(container_id, force=True)
        idmap.detach(bundle / "mapped")
    assert _mounts_below(kit.base) == []


def test_nothing_of_these_tests_is_left_mounted() -> None:
    leftovers = subprocess.run(
        ["grep", "-c", "pytest-of", "/proc/self/mountinfo"], capture_output=True, text=True
    )
    assert leftovers.stdout.strip() in ("0", "")
