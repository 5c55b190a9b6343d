"""The registry client against an in-process fake registry on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import gzip
import io
import json
import tarfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard
from aiohttp import web
from aiohttp.test_utils import TestServer

from pycrid.adapters import errors
from pycrid.adapters.config import Config, RegistryConfig
from pycrid.adapters.node.imageref import parse_reference
from pycrid.adapters.oci.images import manifest as mf
from pycrid.adapters.oci.images.auth import NO_CREDENTIALS, Credentials
from pycrid.adapters.oci.images.digest import sha256_of
from pycrid.adapters.oci.images.endpoints import Endpoint
from pycrid.adapters.oci.images.failures import Corrupt, Missing, Stalled, Transient, Unauthorized
from pycrid.adapters.oci.images.platform import host_platform
from pycrid.adapters.oci.images.pull import Puller
from pycrid.adapters.oci.images.registry import RegistryClient
from pycrid.adapters.oci.images.service import OciImages
from pycrid.adapters.oci.images.store import ContentStore
from pycrid.api.cri import api_pb2 as cri

REPO = "team/app"
USER, PASSWORD = "alice", "s3cret"


@dataclass
class FakeRegistry:
    """Serves manifests and blobs from memory, with switchable misbehaviour."""

    auth: str = "none"  # "none", "bearer" or "basic"
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)
    stall: set[str] = field(default_factory=set)
    redirect_to: str = ""
    tokens_issued: int = 0
    storage_auth_headers: list[str] = field(default_factory=list)
    blob_requests: Counter[str] = field(default_factory=Counter)

    def add_blob(self, data: bytes) -> str:
        digest = sha256_of(data)
        self.blobs[digest] = data
        return digest

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth == "bearer":
            return header.startswith("Bearer tok-")
        if self.auth == "basic":
            expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            return header == f"Basic {expected}"
        return True

    def _challenge(self, request: web.Request) -> web.Response:
        if self.auth == "bearer":
            realm = f"http://{request.host}/token"
            value = f'Bearer realm="{realm}",service="fake",scope="repository:{REPO}:pull"'
        else:
            value = 'Basic realm="fake"'
        return web.Response(status=401, headers={"WWW-Authenticate": value})

    async def token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.method == "POST":
            form = await request.post()
            assert form["grant_type"] == "refresh_token"
            if form["refresh_token"] != "refresh-me":
                return web.Response(status=401)
            self.tokens_issued += 1
            return web.json_response({"access_token": f"tok-{self.tokens_issued}"})
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.Response(status=401)
        assert request.query["scope"] == f"repository:{REPO}:pull"
        assert request.query["service"] == "fake"
        self.tokens_issued += 1
        return web.json_response({"token": f"tok-{self.tokens_issued}", "expires_in": 300})

    async def manifest(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._challenge(request)
        found = self.manifests.get(request.match_info["ref"])
        if found is None:
            return web.Response(status=404, text='{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        media_type, data = found
        return web.Response(
            body=data,
            content_type=media_type,
            headers={"Docker-Content-Digest": sha256_of(data)},
        )

    async def blob(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._challenge(request)
        digest = request.match_info["digest"]
        self.blob_requests[digest] += 1
        if self.failures.get(digest, 0) > 0:
            self.failures[digest] -= 1
            return web.Response(status=503)
        if digest not in self.blobs:
            return web.Response(status=404)
        if self.redirect_to:
            raise web.HTTPTemporaryRedirect(f"{self.redirect_to}/storage/{digest}")
        return await self._send(request, digest)

    async def storage(self, request: web.Request) -> web.StreamResponse:
        self.storage_auth_headers.append(request.headers.get("Authorization", ""))
        return await self._send(request, request.match_info["digest"])

    async def _send(self, request: web.Request, digest: str) -> web.StreamResponse:
        data = self.blobs[digest]
        if digest in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        response = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await response.prepare(request)
        if digest in self.stall:
            await response.write(data[: len(data) // 2])
            await asyncio.sleep(3600)
        await response.write(data)
        return response

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_post("/token", self.token)
        app.router.add_get("/v2/{repo:.+}/manifests/{ref}", self.manifest)
        app.router.add_get("/v2/{repo:.+}/blobs/{digest}", self.blob)
        app.router.add_get("/storage/{digest}", self.storage)
        return app


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeRegistry, Endpoint]]:
    registry = FakeRegistry()
    server = TestServer(registry.app(), host="127.0.0.1")
    await server.start_server()
    host = f"127.0.0.1:{server.port}"
    yield registry, Endpoint(f"http://{host}", host)
    await server.close()


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    client = RegistryClient(progress_timeout=1.0, retries=2, retry_delay=0.01)
    yield client
    await client.close()


def descriptor(data: bytes) -> mf.Descriptor:
    return mf.Descriptor(mf.OCI_LAYER, sha256_of(data), len(data))


async def fetch_to(
    client: RegistryClient,
    endpoint: Endpoint,
    data: bytes,
    credentials: Credentials = NO_CREDENTIALS,
) -> bytes:
    sink = io.BytesIO()

    class Keep(io.BytesIO):
        def close(self) -> None:
            sink.write(self.getvalue())
            super().close()

    await client.fetch_blob(endpoint, REPO, descriptor(data), credentials, Keep)
    return sink.getvalue()


async def test_manifest_by_tag_and_by_digest(fake, client: RegistryClient) -> None:
    registry, endpoint = fake
    body = json.dumps({"schemaVersion": 2}).encode()
    registry.manifests["v1"] = (mf.OCI_MANIFEST, body)
    registry.manifests[sha256_of(body)] = (mf.OCI_MANIFEST, body)
    data, media_type, digest = await client.fetch_manifest(endpoint, REPO, "v1", NO_CREDENTIALS)
    assert (data, media_type, digest) == (body, mf.OCI_MANIFEST, sha256_of(body))
    again = await client.fetch_manifest(
        endpoint, REPO, digest, NO_CREDENTIALS, expected_digest=digest
    )
    assert again[2] == digest
    with pytest.raises(Missing):
        await client.fetch_manifest(endpoint, REPO, "nope", NO_CREDENTIALS)


async def test_manifest_not_matching_the_requested_digest(fake, client: RegistryClient) -> None:
    registry, endpoint = fake
    wanted = "sha256:" + "a" * 64
    registry.manifests[wanted] = (mf.OCI_MANIFEST, b'{"schemaVersion": 2}')
    with pytest.raises(Corrupt):
        await client.fetch_manifest(endpoint, REPO, wanted, NO_CREDENTIALS, expected_digest=wanted)


async def test_bearer_token_flow(fake, client: RegistryClient) -> None:
    registry, endpoint = fake
    registry.auth = "bearer"
    first, second = b"layer one" * 100, b"layer two" * 100
    registry.add_blob(first)
    registry.add_blob(second)
    good = Credentials(username=USER, password=PASSWORD)
    assert await fetch_to(client, endpoint, first, good) == first
    assert await fetch_to(client, endpoint, second, good) == second
    assert registry.tokens_issued == 1  # the token is reused for the repository


async def test_bad_credentials_name_the_registry(fake, client: RegistryClient) -> None:
    registry, endpoint = fake
    registry.auth = "bearer"
    data = b"secret layer"
    registry.add_blob(data)
    with pytest.raises(Unauthorized, match=f"registry {endpoint.host} refused the credentials"):
        await fetch_to(client, endpoint, data, Credentials(username=USER, password="wrong"))
    with pytest.raises(Unauthorized, match="requires credentials"):
        await fetch_to(client, endpoint, data)


async def test_identity_token_is_exchanged_for_a_bearer_token(fake, client: RegistryClient) -> None:
    registry, endpoint = fake
    registry.auth = "bearer"
    data = b"oauth layer"
    registry.add_blob(data)
    assert await fetch_to(client, endpoint, data, Credentials(identity_token="refresh-me")) == data
    with pytest.raises(Unauthorized):
        await fetch_to(client, endpoint, data, Credentials(identity_token="stale"))


async def test_basic_auth(fake, client: RegistryClient) -> None:
    registry, endpoint = fake
    registry.auth = "basic"
    data = b"basic layer"
    registry.add_blob(data)
    assert await fetch_to(client, endpoint, data, Credentials(USER, PASSWORD)) == data
    with pytest.raises(Unauthorized):
        await fetch_to(client, endpoint, data, Credentials(USER, "nope"))


async def test_redirects_do_not_carry_credentials_elsewhere(fake, client: RegistryClient) -> None:
    registry, endpoint = fake
    storage = TestServer(registry.app(), host="127.0.0.1")
    await storage.start_server()
    try:
        registry.auth = "bearer"
        registry.redirect_to = f"http://127.0.0.1:{storage.port}"
        data = b"redirected layer" * 1000
        registry.add_blob(data)
        assert await fetch_to(client, endpoint, data, Credentials(USER, PASSWORD)) == data
        assert registry.storage_auth_headers == [""]
    finally:
        await storage.close()


async def test_corrupted_blob_is_caught(fake, client: RegistryClient) -> None:
    registry, endpoint = fake
    data = b"precious bytes" * 1000
    registry.corrupt.add(registry.add_blob(data))
    with pytest.raises(Corrupt, match="digest"):
        await fetch_to(client, endpoint, data)


async def test_transient_failures_are_retried(fake, client: RegistryClient) -> None:
    registry, endpoint = fake
    data = b"flaky" * 1000
    registry.failures[registry.add_blob(data)] = 2
    assert await fetch_to(client, endpoint, data) == data
    registry.failures[sha256_of(data)] = 5
    with pytest.raises(Transient, match="503"):
        await fetch_to(client, endpoint, data)


async def test_a_stalled_download_is_cancelled(fake, client: RegistryClient) -> None:
    registry, endpoint = fake
    data = b"slow" * 100_000
    registry.stall.add(registry.add_blob(data))
    with pytest.raises(Stalled, match="no data"):
        await fetch_to(client, endpoint, data)


async def test_small_blob_in_memory(fake, client: RegistryClient, tmp_path: Path) -> None:
    registry, endpoint = fake
    config = b'{"rootfs": {"diff_ids": []}}'
    registry.add_blob(config)
    assert await client.fetch_blob_bytes(endpoint, REPO, descriptor(config), NO_CREDENTIALS) == (
        config
    )


# The whole pull, through the puller, into a store.


def layer_tar(files: dict[str, bytes], compress: str) -> tuple[bytes, str]:
    """(blob, diff_id) of a layer holding ``files``; an empty value makes a whiteout."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    blob = {"gzip": gzip.compress, "zstd": zstandard.ZstdCompressor().compress}[compress](raw)
    return blob, sha256_of(raw)


def publish_image(registry: FakeRegistry, tag: str, layers: list[tuple[bytes, str, str]]) -> str:
    """Serve an index (this platform plus another) of one image; returns the index digest."""
    config = json.dumps(
        {
            "architecture": host_platform().architecture,
            "os": "linux",
            "config": {"User": "1002:1002"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id, _ in layers]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mf.OCI_MANIFEST,
            "config": {
                "mediaType": mf.OCI_CONFIG,
                "digest": registry.add_blob(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": media_type, "digest": registry.add_blob(blob), "size": len(blob)}
                for blob, _, media_type in layers
            ],
        }
    ).encode()
    registry.manifests[sha256_of(manifest)] = (mf.OCI_MANIFEST, manifest)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mf.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mf.OCI_MANIFEST,
                    "digest": "sha256:" + "e" * 64,
                    "size": 10,
                    "platform": {"os": "linux", "architecture": "s390x"},
                },
                {
                    "mediaType": mf.OCI_MANIFEST,
                    "digest": sha256_of(manifest),
                    "size": len(manifest),
                    "platform": {
                        "os": "linux",
                        "architecture": host_platform().architecture,
                        "variant": host_platform().variant,
                    },
                },
            ],
        }
    ).encode()
    registry.manifests[tag] = (mf.OCI_INDEX, index)
    return sha256_of(index)


@pytest.fixture
async def puller(fake, client: RegistryClient, tmp_path: Path) -> AsyncIterator[Puller]:
    """A puller whose registry example.test is reached only through a dead and a live mirror."""
    _, endpoint = fake
    config = Config(
        registries={
            "example.test": RegistryConfig(
                mirrors=["http://127.0.0.1:9", endpoint.base_url], upstream=False
            )
        }
    )
    store = ContentStore(tmp_path / "oci")
    store.open()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    yield Puller(config, store, client, executor)
    executor.shutdown()


async def test_pull_an_index_with_gzip_and_zstd_layers(fake, puller: Puller) -> None:
    registry, _ = fake
    base = layer_tar({"etc/motd": b"hello", "bin/tool": b"x" * 1000}, "gzip")
    top = layer_tar({"etc/.wh.motd": b"", "etc/new": b"zstd!"}, "zstd")
    index_digest = publish_image(
        registry, "v1", [(*base, mf.OCI_LAYER_GZIP), (*top, mf.OCI_LAYER_ZSTD)]
    )
    record = await puller.pull(
        parse_reference("example.test/team/app:v1"), lambda _: NO_CREDENTIALS
    )

    assert record.repo_tags == ["example.test/team/app:v1"]
    assert record.repo_digests == [f"example.test/team/app@{index_digest}"]
    assert record.user == "1002:1002"
    assert record.diff_ids == [base[1], top[1]]
    assert record.size == 5 + 1000 + 5
    store = puller.store
    assert store.get(record.id) == record
    assert (store.snapshot_fs(base[1]) / "etc/motd").read_bytes() == b"hello"
    assert (store.snapshot_fs(top[1]) / "etc/new").read_bytes() == b"zstd!"
    assert all(store.has_blob(d) for d in record.blobs())


async def test_shared_layers_are_fetched_once(fake, puller: Puller) -> None:
    registry, _ = fake
    base = layer_tar({"lib/libc.so": b"c" * 5000}, "gzip")
    one = layer_tar({"one": b"1"}, "gzip")
    two = layer_tar({"two": b"2"}, "zstd")
    publish_image(registry, "one", [(*base, mf.OCI_LAYER_GZIP), (*one, mf.OCI_LAYER_GZIP)])
    publish_image(registry, "two", [(*base, mf.OCI_LAYER_GZIP), (*two, mf.OCI_LAYER_ZSTD)])
    first, second = await asyncio.gather(
        puller.pull(parse_reference("example.test/team/app:one"), lambda _: NO_CREDENTIALS),
        puller.pull(parse_reference("example.test/team/app:two"), lambda _: NO_CREDENTIALS),
    )
    assert first.layers[0] == second.layers[0]
    assert registry.blob_requests[sha256_of(base[0])] == 1


async def test_an_image_removed_under_a_container_is_pulled_again(fake, puller: Puller) -> None:
    """The container's lease keeps the snapshot, not the blob: the pull fetches the blob
    again and reuses the snapshot."""
    registry, _ = fake
    layer = layer_tar({"bin/app": b"a" * 3000}, "gzip")
    publish_image(registry, "v1", [(*layer, mf.OCI_LAYER_GZIP)])
    ref = parse_reference("example.test/team/app:v1")
    first = await puller.pull(ref, lambda _: NO_CREDENTIALS)
    store = puller.store
    store.add_lease("container", first.diff_ids)
    assert store.remove(first.id)
    store.collect_garbage()
    assert store.has_snapshot(layer[1]) and not store.has_blob(sha256_of(layer[0]))

    again = await puller.pull(ref, lambda _: NO_CREDENTIALS)
    assert again.id == first.id and store.get(again.id) is not None
    assert all(store.has_blob(d) for d in again.blobs())
    assert registry.blob_requests[sha256_of(layer[0])] == 2


async def test_a_corrupt_layer_leaves_no_image(fake, puller: Puller) -> None:
    registry, _ = fake
    layer = layer_tar({"f": b"data" * 1000}, "gzip")
    publish_image(registry, "bad", [(*layer, mf.OCI_LAYER_GZIP)])
    registry.corrupt.add(sha256_of(layer[0]))
    with pytest.raises(errors.Internal, match="does not match its digest"):
        await puller.pull(parse_reference("example.test/team/app:bad"), lambda _: NO_CREDENTIALS)
    assert puller.store.records() == []
    puller.store.collect_garbage()
    assert list(puller.store.snapshots_dir.iterdir()) == []


async def test_pull_errors_name_every_endpoint(fake, puller: Puller) -> None:
    with pytest.raises(errors.CRIError) as failed:
        await puller.pull(parse_reference("example.test/team/app:none"), lambda _: NO_CREDENTIALS)
    assert "127.0.0.1:9" in str(failed.value)
    assert "404" in str(failed.value)


async def test_a_stalled_pull_is_cancelled(fake, puller: Puller) -> None:
    registry, _ = fake
    layer = layer_tar({"big": bytes(range(256)) * 4000}, "gzip")
    publish_image(registry, "slow", [(*layer, mf.OCI_LAYER_GZIP)])
    registry.stall.add(sha256_of(layer[0]))
    with pytest.raises(errors.DeadlineExceeded, match="no progress"):
        await puller.pull(parse_reference("example.test/team/app:slow"), lambda _: NO_CREDENTIALS)
    assert puller.store.records() == []


async def test_pulls_are_coalesced_and_dropped_when_nobody_waits(fake, tmp_path: Path) -> None:
    registry, endpoint = fake
    layer = layer_tar({"big": bytes(range(256)) * 8000}, "gzip")
    publish_image(registry, "held", [(*layer, mf.OCI_LAYER_GZIP)])
    registry.stall.add(sha256_of(layer[0]))
    config = Config(
        registries={"example.test": RegistryConfig(mirrors=[endpoint.base_url], upstream=False)}
    )
    images = OciImages(config, tmp_path / "oci", progress_timeout=30)
    await images.start()
    try:
        request = cri.PullImageRequest(image=cri.ImageSpec(image="example.test/team/app:held"))
        callers = [asyncio.create_task(images.pull_image(request)) for _ in range(3)]
        while not registry.blob_requests:
            await asyncio.sleep(0.01)
        assert len(images._pulls) == 1  # one pull serves all three calls
        (pulling,) = images._pulls.values()
        callers[0].cancel()
        callers[1].cancel()
        await asyncio.sleep(0)
        assert not pulling.cancelled()  # the third caller still waits
        callers[2].cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        with contextlib.suppress(asyncio.CancelledError):
            await pulling
        assert pulling.cancelled()
        assert images.store.records() == []
    finally:
        await images.close()


async def test_an_image_in_use_is_not_removed(fake, tmp_path: Path) -> None:
    """As Docker refuses it; once nothing runs on it, it goes."""
    registry, endpoint = fake
    layer = layer_tar({"f": b"x"}, "gzip")
    publish_image(registry, "used", [(*layer, mf.OCI_LAYER_GZIP)])
    config = Config(
        registries={"example.test": RegistryConfig(mirrors=[endpoint.base_url], upstream=False)}
    )
    running: set[str] = set()
    images = OciImages(config, tmp_path / "oci", in_use=lambda: running)
    await images.start()
    try:
        spec = cri.ImageSpec(image="example.test/team/app:used")
        image_id = (await images.pull_image(cri.PullImageRequest(image=spec))).image_ref
        running.add(image_id)
        with pytest.raises(errors.FailedPrecondition, match="in use"):
            await images.remove_image(cri.RemoveImageRequest(image=spec))
        assert images.store.get(image_id) is not None
        running.clear()
        await images.remove_image(cri.RemoveImageRequest(image=spec))
        assert images.store.get(image_id) is None
    finally:
        await images.close()
