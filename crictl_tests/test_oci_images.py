"""The oci adapter's ImageService end to end: a real daemon, real registries.

Most pulls go to the local test registry (127.0.0.1:5000). A small registry
front started here (``RegistryFront``) stands between the daemon and that
registry where a test needs a registry that demands a bearer token, serves a
corrupted blob, or stalls half-way through a layer.

What the CRI promises of images on every adapter (names, digests, IDs,
listing, removal, codes) is in the contract suite, crictl_tests/contract/.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web

from crictl_tests.harness import LOCAL_REGISTRY, MIRRORED_REGISTRIES, Daemon
from pycrid.adapters.oci.images.platform import host_platform
from pycrid.api.cri import api_pb2 as cri

UPSTREAM = f"http://{LOCAL_REGISTRY}"
BUSYBOX_PATH = "e2e-test-images/busybox"
MIRRORED_BUSYBOX = f"registry.k8s.io/{BUSYBOX_PATH}:1.29-2"
USER_UID = f"{LOCAL_REGISTRY}/k8s-staging-cri-tools/test-image-user-uid:latest"
USER_NAME = f"{LOCAL_REGISTRY}/k8s-staging-cri-tools/test-image-user-username:latest"
TAGS = [f"{LOCAL_REGISTRY}/k8s-staging-cri-tools/test-image-tags:{n}" for n in (1, 2, 3)]
MULTILAYER = f"{LOCAL_REGISTRY}/pycrid/multilayer:latest"
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
TOKEN_USER, TOKEN_PASSWORD = "pycrid-test", "open-sesame"
TIMEOUT = 120


class RegistryFront:
    """A registry on 127.0.0.1 that serves what the local registry has, its own way.

    It demands a bearer token from its token endpoint (basic auth with
    TOKEN_USER/TOKEN_PASSWORD) when ``token_auth`` is set, flips a byte of the
    blobs in ``corrupt``, and stops half-way through any blob while ``stall``
    is set. It runs its own event loop in a thread so that the test's gRPC
    calls can block.
    """

    def __init__(self) -> None:
        self.token_auth = False
        self.corrupt: set[str] = set()
        self.stall = threading.Event()
        self.stalled = threading.Event()
        self.blob_requests: Counter[str] = Counter()
        self.manifest_requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        self.stall.clear()
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_get("/v2/", self._base)
        app.router.add_get("/v2/{name:.+}/manifests/{ref}", self._manifest)
        app.router.add_get("/v2/{name:.+}/blobs/{digest}", self._blob)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> web.Response | None:
        if not self.token_auth or request.headers.get("Authorization") == "Bearer front-token":
            return None
        realm = f"http://{self.host}/token"
        return web.Response(
            status=401,
            headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="front"'},
        )

    async def _token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{TOKEN_USER}:{TOKEN_PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"details": "bad credentials"}, status=401)
        return web.json_response({"access_token": "front-token", "expires_in": 300})

    async def _base(self, request: web.Request) -> web.Response:
        return self._authorized(request) or web.json_response({})

    async def _manifest(self, request: web.Request) -> web.Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        self.manifest_requests += 1
        url = f"{UPSTREAM}/v2/{request.match_info['name']}/manifests/{request.match_info['ref']}"
        headers = {"Accept": request.headers.get("Accept", ", ".join(MANIFEST_TYPES))}
        async with self._session.get(url, headers=headers) as upstream:
            body = await upstream.read()
            keep = ("Content-Type", "Docker-Content-Digest")
            return web.Response(
                status=upstream.status,
                body=body,
                headers={k: upstream.headers[k] for k in keep if k in upstream.headers},
            )

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._authorized(request)) is not None:
            return denied
        digest = request.match_info["digest"]
        self.blob_requests[digest] += 1
        url = f"{UPSTREAM}/v2/{request.match_info['name']}/blobs/{digest}"
        async with self._session.get(url) as upstream:
            if upstream.status != 200:
                return web.Response(status=upstream.status)
            data = await upstream.read()
        if digest in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        response = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await response.prepare(request)
        sent = 0
        if self.stall.is_set() and len(data) > 1024 * 1024:
            sent = len(data) // 2
            await response.write(data[:sent])
            self.stalled.set()
            while self.stall.is_set():
                await asyncio.sleep(0.05)
        await response.write(data[sent:])
        return response


@pytest.fixture
def front(test_registry: None) -> Iterator[RegistryFront]:
    server = RegistryFront()
    server.start()
    yield server
    server.stop()


# The mirrored registries are never tried themselves: tests stay on loopback.
LOOPBACK_ONLY = {"registries": {host: {"upstream": False} for host in MIRRORED_REGISTRIES}}


@pytest.fixture
def oci(daemon_factory: Callable[..., Daemon]) -> Daemon:
    return daemon_factory("oci", LOOPBACK_ONLY)


def pull(daemon: Daemon, image: str, auth: cri.AuthConfig | None = None) -> str:
    request = cri.PullImageRequest(image=cri.ImageSpec(image=image), auth=auth)
    return daemon.images.PullImage(request, timeout=TIMEOUT).image_ref


def status(daemon: Daemon, image: str) -> cri.Image | None:
    response = daemon.images.ImageStatus(
        cri.ImageStatusRequest(image=cri.ImageSpec(image=image)), timeout=TIMEOUT
    )
    return response.image if response.HasField("image") else None


def listed(daemon: Daemon, image: str = "") -> list[cri.Image]:
    request = cri.ListImagesRequest(filter=cri.ImageFilter(image=cri.ImageSpec(image=image)))
    return list(daemon.images.ListImages(request, timeout=TIMEOUT).images)


def remove(daemon: Daemon, image: str) -> None:
    daemon.images.RemoveImage(
        cri.RemoveImageRequest(image=cri.ImageSpec(image=image)), timeout=TIMEOUT
    )


def wait_for_log(daemon: Daemon, text: str, count: int = 1, attempts: int = 600) -> bool:
    """Whether ``text`` shows up ``count`` times in the daemon's log (polled, bounded)."""
    for _ in range(attempts):
        if daemon.log_path.read_text(errors="replace").count(text) >= count:
            return True
        time.sleep(0.05)
    return False


def store_root(daemon: Daemon) -> Path:
    return Path(daemon.config["state_dir"]) / "oci"


def registry_json(path: str, accept: str = ", ".join(MANIFEST_TYPES)) -> tuple[bytes, str, str]:
    request = urllib.request.Request(f"{UPSTREAM}{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return (
            response.read(),
            response.headers["Content-Type"],
            response.headers["Docker-Content-Digest"],
        )


# The store, and pulls as the registry sees them.


def test_verbose_status(oci: Daemon) -> None:
    pull(oci, USER_UID)
    response = oci.images.ImageStatus(
        cri.ImageStatusRequest(image=cri.ImageSpec(image=USER_UID), verbose=True), timeout=TIMEOUT
    )
    info = json.loads(response.info["info"])
    assert info["imageSpec"]["config"]["User"] == "1002"
    assert len(info["layers"]) == len(info["imageSpec"]["rootfs"]["diff_ids"])


def test_removal_frees_the_store(oci: Daemon) -> None:
    def used() -> int:
        info = oci.images.ImageFsInfo(cri.ImageFsInfoRequest(), timeout=TIMEOUT)
        (usage,) = info.image_filesystems
        assert usage.fs_id.mountpoint == str(store_root(oci))
        return usage.used_bytes.value

    empty = used()
    image_ref = pull(oci, MULTILAYER)
    full = used()
    assert full - empty > 16 * 1024 * 1024  # four 4 MiB random layers, unpacked
    remove(oci, image_ref)
    assert used() < full
    assert list((store_root(oci) / "snapshots").iterdir()) == []


def test_shared_layers_are_fetched_once(oci: Daemon, front: RegistryFront) -> None:
    pull(oci, f"{front.host}/{BUSYBOX_PATH}:1.29-2")
    pull(oci, f"{front.host}/k8s-staging-cri-tools/test-image-user-uid:latest")
    assert front.blob_requests and max(front.blob_requests.values()) == 1


def test_concurrent_pulls_of_one_image_are_coalesced(oci: Daemon, front: RegistryFront) -> None:
    image = f"{front.host}/pycrid/multilayer:latest"
    front.stall.set()  # hold the download until every call has joined the same pull
    futures = [
        oci.images.PullImage.future(
            cri.PullImageRequest(image=cri.ImageSpec(image=image)), timeout=TIMEOUT
        )
        for _ in range(4)
    ]
    assert front.stalled.wait(30)
    assert wait_for_log(oci, "joins the one in progress", count=3)
    front.stall.clear()
    refs = {future.result().image_ref for future in futures}
    assert len(refs) == 1
    assert front.manifest_requests == 1
    assert max(front.blob_requests.values()) == 1


def test_multi_platform_index(oci: Daemon) -> None:
    """An index pushed here: this machine's entry is busybox, the other one another image."""
    repository = "pycrid-test/multiplatform"
    mine = host_platform()
    other_arch = "arm64" if mine.architecture == "amd64" else "amd64"
    children = []
    for source, platform in (
        ("k8s-staging-cri-tools/test-image-1", {"os": "linux", "architecture": other_arch}),
        (BUSYBOX_PATH, {"os": mine.os, "architecture": mine.architecture}),
    ):
        tag = "latest" if "test-image-1" in source else "1.29-2"
        body, media_type, digest = registry_json(
            f"/v2/{source}/manifests/{tag}", "application/vnd.docker.distribution.manifest.v2+json"
        )
        document = json.loads(body)
        for blob in [document["config"], *document["layers"]]:
            mount = urllib.request.Request(
                f"{UPSTREAM}/v2/{repository}/blobs/uploads/?mount={blob['digest']}&from={source}",
                method="POST",
            )
            urllib.request.urlopen(mount, timeout=30).close()
        put = urllib.request.Request(
            f"{UPSTREAM}/v2/{repository}/manifests/{digest}",
            data=body,
            method="PUT",
            headers={"Content-Type": media_type},
        )
        urllib.request.urlopen(put, timeout=30).close()
        children.append(
            {
                "mediaType": media_type,
                "digest": digest,
                "size": len(body),
                "platform": platform,
                "config": document["config"]["digest"],
            }
        )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{k: v for k, v in c.items() if k != "config"} for c in children],
        }
    ).encode()
    put = urllib.request.Request(
        f"{UPSTREAM}/v2/{repository}/manifests/latest",
        data=index,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
    )
    with urllib.request.urlopen(put, timeout=30) as response:
        index_digest = response.headers["Docker-Content-Digest"]

    name = f"{LOCAL_REGISTRY}/{repository}:latest"
    image_ref = pull(oci, name)
    assert image_ref == children[1]["config"]
    image = status(oci, name)
    assert image is not None
    assert list(image.repo_digests) == [f"{LOCAL_REGISTRY}/{repository}@{index_digest}"]


def test_a_mirror_that_fails_falls_back_to_the_next(daemon_factory: Callable[..., Daemon]) -> None:
    mirrors = {"mirrors": ["http://127.0.0.1:9", UPSTREAM], "upstream": False}
    daemon = daemon_factory("oci", {"registries": {"registry.k8s.io": mirrors}})
    assert pull(daemon, MIRRORED_BUSYBOX).startswith("sha256:")


def test_token_auth_with_good_and_bad_credentials(oci: Daemon, front: RegistryFront) -> None:
    front.token_auth = True
    image = f"{front.host}/{BUSYBOX_PATH}:1.29-2"
    with pytest.raises(grpc.RpcError) as refused:
        pull(oci, image, cri.AuthConfig(username=TOKEN_USER, password="wrong"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"registry {front.host} refused the credentials" in refused.value.details()
    with pytest.raises(grpc.RpcError) as anonymous:
        pull(oci, image)
    assert f"registry {front.host} requires credentials" in anonymous.value.details()
    assert listed(oci) == []

    good = cri.AuthConfig(username=TOKEN_USER, password=TOKEN_PASSWORD, server_address=front.host)
    image_ref = pull(oci, image, good)
    pulled = status(oci, image)
    assert pulled is not None and pulled.id == image_ref


def test_credentials_from_a_docker_config_file(
    daemon_factory: Callable[..., Daemon],
    front: RegistryFront,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = base64.b64encode(f"{TOKEN_USER}:{TOKEN_PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {front.host: {"auth": pair}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # the daemon inherits it
    daemon = daemon_factory("oci", LOOPBACK_ONLY)
    front.token_auth = True
    image = f"{front.host}/{BUSYBOX_PATH}:1.29-2"
    assert pull(daemon, image).startswith("sha256:")


def test_a_corrupted_blob_is_caught_by_its_digest(oci: Daemon, front: RegistryFront) -> None:
    body, _, _ = registry_json(
        "/v2/pycrid/multilayer/manifests/latest",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
    layer = json.loads(body)["layers"][-1]["digest"]
    front.corrupt.add(layer)
    image = f"{front.host}/pycrid/multilayer:latest"
    with pytest.raises(grpc.RpcError) as failed:
        pull(oci, image)
    assert "digest" in failed.value.details()
    assert layer in failed.value.details()
    assert listed(oci) == []
    front.corrupt.clear()
    assert pull(oci, image).startswith("sha256:")


def test_a_pull_killed_half_way_leaves_nothing(oci: Daemon, front: RegistryFront) -> None:
    image = f"{front.host}/pycrid/multilayer:latest"
    front.stall.set()
    pending = oci.images.PullImage.future(
        cri.PullImageRequest(image=cri.ImageSpec(image=image)), timeout=TIMEOUT
    )
    assert front.stalled.wait(30)
    oci.kill()
    with pytest.raises(grpc.RpcError):
        pending.result()
    front.stall.clear()

    oci.start()
    assert listed(oci) == []
    assert status(oci, image) is None
    root = store_root(oci)
    assert list((root / "snapshots").iterdir()) == []
    assert list((root / "ingest").iterdir()) == []
    assert [p for p in (root / "blobs").rglob("*") if p.is_file()] == []
    image_ref = pull(oci, image)
    assert [i.id for i in listed(oci)] == [image_ref]


# The same scenarios on both adapters.

COMPARED_IMAGES = [MIRRORED_BUSYBOX, USER_UID, USER_NAME, TAGS[0]]


def _view(image: cri.Image) -> dict[str, Any]:
    return {
        "id": image.id,
        "repo_tags": sorted(image.repo_tags),
        "repo_digests": sorted(image.repo_digests),
        "uid": image.uid.value if image.HasField("uid") else None,
        "username": image.username,
        "size": image.size,
    }


def test_both_adapters_agree(docker_daemon: Daemon, oci: Daemon) -> None:
    """IDs, digests, users and sizes agree; the names differ in one documented way.

    The difference (docs/oci-images.md, "Compared with the docker adapter"):
    dockerd's image store is shared with everything else on the machine, so the
    docker adapter reports every name dockerd has for an image (the test
    registry's own names, names other clients pulled); the oci store reports
    only the names pulled through it. The requested name is in both.
    """
    _, _, digest = registry_json(f"/v2/{BUSYBOX_PATH}/manifests/1.29-2")
    by_digest = f"{LOCAL_REGISTRY}/{BUSYBOX_PATH}@{digest}"
    try:
        _compare_adapters(docker_daemon, oci, [*COMPARED_IMAGES, by_digest])
    finally:
        # busybox stays: other tests use it. The rest would leave names in
        # dockerd that later tests do not expect.
        for name in COMPARED_IMAGES:
            if name != MIRRORED_BUSYBOX:
                remove(docker_daemon, name)


def _compare_adapters(docker_daemon: Daemon, oci: Daemon, names: list[str]) -> None:
    for name in names:
        docker_ref = pull(docker_daemon, name)
        oci_ref = pull(oci, name)
        assert docker_ref == oci_ref, name
        docker_image, oci_image = status(docker_daemon, name), status(oci, name)
        assert docker_image is not None and oci_image is not None
        docker_view, oci_view = _view(docker_image), _view(oci_image)

        docker_tags, oci_tags = docker_view.pop("repo_tags"), oci_view.pop("repo_tags")
        if "@" in name:
            # By digest: no new tag; both show the names the image already had here.
            assert set(oci_tags) <= set(docker_tags), name
        else:
            assert oci_tags == [name]
            assert name in docker_tags  # plus whatever else dockerd calls it
        docker_digests, oci_digests = docker_view.pop("repo_digests"), oci_view.pop("repo_digests")
        assert set(oci_digests) <= set(docker_digests), name

        # Both count unpacked layer content, hard links once; allow 1% for
        # storage drivers that count differently.
        docker_size, oci_size = docker_view.pop("size"), oci_view.pop("size")
        assert abs(docker_size - oci_size) <= docker_size / 100, (name, docker_size, oci_size)
        assert docker_view == oci_view, name
