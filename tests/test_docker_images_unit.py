"""The ImageService over Docker, against an in-memory dockerd and its registries."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pycrid.adapters import errors
from pycrid.adapters.config import RegistryConfig
from pycrid.adapters.docker.imagenames import ImageNames
from pycrid.adapters.node import atomicfile
from pycrid.api.cri import api_pb2 as cri

from .dockerkit import BUSYBOX, PAUSE, Kit, in_call, make_kit

MIRROR = "127.0.0.1:5000"
REQUESTED = "registry.k8s.io/e2e-test-images/agnhost:2.40"
FROM_MIRROR = f"{MIRROR}/e2e-test-images/agnhost:2.40"


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    kit = make_kit(tmp_path)
    yield kit
    await kit.close()


@pytest.fixture
async def mirrored(tmp_path: Path) -> AsyncIterator[Kit]:
    """registry.k8s.io is pulled through a mirror first, then from itself."""
    registries = {"registry.k8s.io": RegistryConfig(mirrors=[f"http://{MIRROR}"])}
    kit = make_kit(tmp_path, registries=registries)
    yield kit
    await kit.close()


async def pull(kit: Kit, image: str) -> str:
    request = cri.PullImageRequest(image=cri.ImageSpec(image=image))
    return (await kit.images.pull_image(request)).image_ref


async def status(kit: Kit, image: str) -> cri.Image | None:
    response = await kit.images.image_status(
        cri.ImageStatusRequest(image=cri.ImageSpec(image=image))
    )
    return response.image if response.HasField("image") else None


# Looking images up.


async def test_image_status_tells_names_size_user_and_pinning(kit: Kit) -> None:
    kit.docker.add_image("registry.k8s.io/app:1", size=4321, user="1002:1002")
    image = await status(kit, "registry.k8s.io/app:1")
    assert image is not None
    fake = kit.docker.images[image.id]
    assert list(image.repo_tags) == ["registry.k8s.io/app:1"]
    assert list(image.repo_digests) == [f"registry.k8s.io/app@{fake.manifest}"]
    assert (image.size, image.uid.value, image.username) == (4321, 1002, "")
    assert not image.pinned
    pause = await status(kit, PAUSE)
    assert pause is not None and pause.pinned
    # By ID and by digest too.
    by_id = await status(kit, image.id)
    by_digest = await status(kit, f"registry.k8s.io/app@{fake.manifest}")
    assert by_id == by_digest == image


async def test_a_missing_image_has_an_empty_status(kit: Kit) -> None:
    assert await status(kit, "registry.k8s.io/absent:1") is None
    verbose = cri.ImageStatusRequest(image=cri.ImageSpec(image=BUSYBOX), verbose=True)
    info = json.loads((await kit.images.image_status(verbose)).info["info"])
    assert info["RepoTags"] == [BUSYBOX]


async def test_list_images_lists_every_image_or_the_one_asked_for(kit: Kit) -> None:
    kit.docker.add_image("registry.k8s.io/app:1", user="www-data")
    listed = await kit.images.list_images(cri.ListImagesRequest())
    assert sorted(tag for i in listed.images for tag in i.repo_tags) == sorted(
        [PAUSE, BUSYBOX, "registry.k8s.io/app:1"]
    )
    (app,) = [i for i in listed.images if "registry.k8s.io/app:1" in i.repo_tags]
    assert app.username == "www-data"
    one = cri.ListImagesRequest(filter=cri.ImageFilter(image=cri.ImageSpec(image=BUSYBOX)))
    assert [list(i.repo_tags) for i in (await kit.images.list_images(one)).images] == [[BUSYBOX]]
    # Image configs are inspected once, then listing asks Docker only for the list.
    inspects = len(kit.docker.called("inspect_image"))
    await kit.images.list_images(cri.ListImagesRequest())
    assert len(kit.docker.called("inspect_image")) == inspects


async def test_image_fs_info_sums_layers_and_writable_layers(kit: Kit) -> None:
    pod = await kit.run_pod()
    kit.docker.containers[pod].size_rw = 4096
    response = await kit.images.image_fs_info(cri.ImageFsInfoRequest())
    (images,) = response.image_filesystems
    (containers,) = response.container_filesystems
    assert images.fs_id.mountpoint == "/var/lib/docker/overlay2"
    assert images.used_bytes.value == sum(i.size for i in kit.docker.images.values())
    assert containers.used_bytes.value == 4096


# PullImage.


async def test_a_pull_from_the_registry_itself(kit: Kit) -> None:
    published = kit.docker.publish("registry.k8s.io/app:2")
    assert await pull(kit, "registry.k8s.io/app:2") == published.id
    assert kit.docker.called("pull_image") == [("registry.k8s.io/app", "2", None)]
    image = await status(kit, "registry.k8s.io/app:2")
    assert image is not None and image.id == published.id


async def test_a_pull_by_digest(kit: Kit) -> None:
    published = kit.docker.publish("registry.k8s.io/app:2")
    reference = f"registry.k8s.io/app@{published.manifest}"
    assert await pull(kit, reference) == published.id
    image = await status(kit, reference)
    assert image is not None and list(image.repo_tags) == []
    assert list(image.repo_digests) == [reference]


async def test_a_pull_through_a_mirror_is_named_as_requested(mirrored: Kit) -> None:
    published = mirrored.docker.publish(FROM_MIRROR)
    assert await pull(mirrored, REQUESTED) == published.id
    assert mirrored.docker.called("pull_image") == [
        (f"{MIRROR}/e2e-test-images/agnhost", "2.40", None)
    ]
    # Docker holds the requested tag; the mirror's own tag is gone again.
    held = mirrored.docker.images[published.id]
    assert held.tags == [REQUESTED]
    image = await status(mirrored, REQUESTED)
    assert image is not None
    assert list(image.repo_tags) == [REQUESTED]
    alias = f"registry.k8s.io/e2e-test-images/agnhost@{published.manifest}"
    assert list(image.repo_digests) == [alias]
    assert await status(mirrored, alias) == image
    saved = json.loads((mirrored.state_dir / "image-names.json").read_text())
    assert saved["aliases"] == {alias: published.id}


async def test_pulling_again_what_is_here_tags_nothing_again(mirrored: Kit) -> None:
    published = mirrored.docker.publish(FROM_MIRROR)
    assert await pull(mirrored, REQUESTED) == published.id
    tagged = len(mirrored.docker.called("tag_image"))
    assert await pull(mirrored, REQUESTED) == published.id
    assert len(mirrored.docker.called("pull_image")) == 2  # the registry is still asked
    assert len(mirrored.docker.called("tag_image")) == tagged
    image = await status(mirrored, REQUESTED)
    assert image is not None and list(image.repo_tags) == [REQUESTED]


async def test_an_unreachable_mirror_falls_back_to_the_registry(mirrored: Kit) -> None:
    mirrored.docker.unreachable.add(MIRROR)
    published = mirrored.docker.publish(REQUESTED)
    assert await pull(mirrored, REQUESTED) == published.id
    assert [call[0] for call in mirrored.docker.called("pull_image")] == [
        f"{MIRROR}/e2e-test-images/agnhost",
        "registry.k8s.io/e2e-test-images/agnhost",
    ]


@pytest.mark.parametrize(
    ("mirror", "registry", "expected"),
    [
        ("unreachable", "missing", errors.NotFound),
        ("missing", "unreachable", errors.NotFound),
        ("unreachable", "unreachable", errors.Unavailable),
        ("missing", "denied", errors.FailedPrecondition),
    ],
)
async def test_when_every_source_fails_the_error_says_most(
    mirrored: Kit, mirror: str, registry: str, expected: type[errors.CRIError]
) -> None:
    for host, problem in ((MIRROR, mirror), ("registry.k8s.io", registry)):
        if problem == "unreachable":
            mirrored.docker.unreachable.add(host)
        if problem == "denied":
            mirrored.docker.denied.add(host)
    with pytest.raises(expected) as raised:
        await pull(mirrored, REQUESTED)
    assert type(raised.value) is expected
    assert f"cannot pull {REQUESTED}" in str(raised.value)
    assert MIRROR in str(raised.value) and "registry.k8s.io:" in str(raised.value)


async def test_one_source_failing_says_which(kit: Kit) -> None:
    with pytest.raises(errors.NotFound, match=r"^registry.k8s.io: .*manifest unknown"):
        await pull(kit, "registry.k8s.io/absent:1")


async def test_errors_inside_the_pull_stream_are_read_from_their_words(kit: Kit) -> None:
    kit.docker.stream_errors["registry.k8s.io/app:1"] = "unauthorized: authentication required"
    with pytest.raises(errors.FailedPrecondition, match="access denied"):
        await pull(kit, "registry.k8s.io/app:1")


async def test_a_pull_that_outlives_its_deadline_stops_at_once(mirrored: Kit) -> None:
    mirrored.docker.publish(FROM_MIRROR)
    mirrored.docker.delay("pull_image", 5)
    with pytest.raises(errors.DeadlineExceeded):
        await in_call(0.2, lambda: pull(mirrored, REQUESTED))
    # The deadline is the caller's: no other source was tried after it.
    assert len(mirrored.docker.called("pull_image")) == 1


async def test_credentials_go_to_the_registry_not_to_mirrors(mirrored: Kit) -> None:
    mirrored.docker.unreachable.add(MIRROR)
    mirrored.docker.publish(REQUESTED)
    auth = cri.AuthConfig(username="u", password="p")
    request = cri.PullImageRequest(image=cri.ImageSpec(image=REQUESTED), auth=auth)
    await mirrored.images.pull_image(request)
    assert [call[2] for call in mirrored.docker.called("pull_image")] == [
        None,
        {"username": "u", "password": "p"},
    ]


# RemoveImage.


async def test_remove_takes_every_name_and_is_idempotent(mirrored: Kit) -> None:
    published = mirrored.docker.publish(FROM_MIRROR)
    await pull(mirrored, REQUESTED)
    request = cri.RemoveImageRequest(image=cri.ImageSpec(image=REQUESTED))
    await mirrored.images.remove_image(request)
    assert published.id not in mirrored.docker.images
    assert mirrored.docker.called("remove_image")[-1] == (published.id, True, True)
    assert await status(mirrored, REQUESTED) is None
    saved = json.loads((mirrored.state_dir / "image-names.json").read_text())
    assert saved == {"aliases": {}, "hidden": {}}
    await mirrored.images.remove_image(request)  # gone already: fine


async def test_concurrent_removals_of_one_image_all_succeed_and_reach_docker_once(
    kit: Kit,
) -> None:
    image = kit.docker.add_image("registry.k8s.io/app:1")
    kit.docker.delay("remove_image", 0.05)
    request = cri.RemoveImageRequest(image=cri.ImageSpec(image="registry.k8s.io/app:1"))
    await asyncio.gather(*(kit.images.remove_image(request) for _ in range(5)))
    assert len(kit.docker.called("remove_image")) == 1
    assert image.id not in kit.docker.images


async def test_an_image_met_halfway_through_its_removal_is_asked_for_again(kit: Kit) -> None:
    # dockerd's delete is not atomic: an inspect meeting one half done gets a 500.
    kit.docker.add_image("registry.k8s.io/app:1")
    kit.docker.fail_status("inspect_image", 500, "layer does not exist", times=2)
    found = await status(kit, "registry.k8s.io/app:1")
    assert found is not None
    assert len(kit.docker.called("inspect_image")) == 3


async def test_a_lasting_inspect_failure_is_still_an_error(kit: Kit) -> None:
    kit.docker.fail_status("inspect_image", 500, "layer does not exist", times=None)
    with pytest.raises(errors.Internal, match="layer does not exist"):
        await status(kit, BUSYBOX)


async def test_a_removal_docker_refuses_is_failed_precondition(kit: Kit) -> None:
    kit.docker.fail_status("remove_image", 409, "image is being used by running container")
    with pytest.raises(errors.FailedPrecondition, match="being used"):
        await kit.images.remove_image(cri.RemoveImageRequest(image=cri.ImageSpec(image=BUSYBOX)))
    assert await status(kit, BUSYBOX) is not None


# The record of image names: written off the event loop, last change last.


async def test_image_names_are_written_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: list[str] = []
    real_write = atomicfile.write_json

    def recording_write(path: Path, value: Any, **options: bool) -> None:
        writers.append(threading.current_thread().name)
        real_write(path, value, **options)

    monkeypatch.setattr(atomicfile, "write_json", recording_write)
    names = ImageNames(tmp_path / "names.json")
    await names.record("sha256:a", ["r/x@sha256:1"], [])
    assert writers and threading.main_thread().name not in writers


async def test_concurrent_changes_leave_the_latest_names_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "names.json"
    names = ImageNames(path)
    await asyncio.gather(*(names.record(f"sha256:{i}", [f"r/x@sha256:{i}"], []) for i in range(20)))
    await names.forget("sha256:3")
    saved = json.loads(path.read_text())
    assert len(saved["aliases"]) == 19 and "r/x@sha256:3" not in saved["aliases"]
    assert ImageNames(path).aliases_of("sha256:7") == ["r/x@sha256:7"]


async def test_a_cancelled_save_still_lands_before_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "names.json"
    release, first_written = threading.Event(), threading.Event()
    real_write = atomicfile.write_json

    def first_write_is_slow(target: Path, value: Any, **options: bool) -> None:
        if "r/x@sha256:b" in value["aliases"]:
            real_write(target, value, **options)
            return
        release.wait(5)
        real_write(target, value, **options)
        first_written.set()

    monkeypatch.setattr(atomicfile, "write_json", first_write_is_slow)
    names = ImageNames(path)
    first = asyncio.ensure_future(names.record("sha256:a", ["r/x@sha256:a"], []))
    await asyncio.sleep(0.05)
    first.cancel()  # its write goes on in its thread
    second = asyncio.ensure_future(names.record("sha256:b", ["r/x@sha256:b"], []))
    await asyncio.sleep(0.05)
    release.set()
    await second
    assert await asyncio.to_thread(first_written.wait, 5)
    saved = json.loads(path.read_text())
    assert saved["aliases"] == {"r/x@sha256:a": "sha256:a", "r/x@sha256:b": "sha256:b"}


async def test_image_ref_names_the_repository_asked_for_not_a_mirrors(kit: Kit) -> None:
    image = kit.docker.add_image("127.0.0.1:5000/app:1")  # pulled from the mirror directly
    image.tags.append("registry.k8s.io/app:1")
    image.digests.append(f"registry.k8s.io/app@{image.manifest}")
    found = await kit.images.inspect("registry.k8s.io/app:1")
    assert found is not None
    assert kit.images.image_ref(found, "registry.k8s.io/app:1") == (
        f"registry.k8s.io/app@{image.manifest}"
    )
    assert kit.images.image_ref(found, "127.0.0.1:5000/app:1").startswith("127.0.0.1:5000/app@")
    assert kit.images.image_ref(found, found["Id"]).startswith("127.0.0.1:5000/app@")
