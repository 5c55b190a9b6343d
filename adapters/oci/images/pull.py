"""Pulling one image into the content store.

resolve (mirrors, then the registry) -> manifest, or index -> this platform's
manifest -> config -> layers (downloaded concurrently, each unpacked as soon
as it has arrived; a layer already unpacked is not fetched at all) -> one
atomic commit of the image record. Errors from the registry client become the
server's error vocabulary here, with every endpoint's answer in the message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pycrid.adapters import errors, faults
from pycrid.adapters.config import Config
from pycrid.adapters.node.imageref import Reference
from pycrid.adapters.oci.images import manifest as mf
from pycrid.adapters.oci.images import platform as pf
from pycrid.adapters.oci.images.auth import Credentials
from pycrid.adapters.oci.images.digest import sha256_of
from pycrid.adapters.oci.images.endpoints import Endpoint, endpoints_for, refused_mirrors
from pycrid.adapters.oci.images.failures import (
    Corrupt,
    Missing,
    RegistryError,
    Stalled,
    Unauthorized,
)
from pycrid.adapters.oci.images.registry import RegistryClient
from pycrid.adapters.oci.images.store import ContentStore, ImageRecord, LayerRecord
from pycrid.adapters.oci.images.unpack import UnpackError
from pycrid.adapters.oci.images.unpackers import Unpackers

log = logging.getLogger("pycrid.oci.pull")

MIB = 1024 * 1024

T = TypeVar("T")
CredentialsFor = Callable[[str], Credentials]


REPORT_EVERY = 5.0
"""Seconds between two progress lines of one pull in the log."""


@dataclass
class PullStats:
    """What one pull did, for logs and benchmarks."""

    downloaded_bytes: int = 0
    layers_fetched: int = 0
    layers_reused: int = 0
    unpacked_bytes: int = 0
    unpack_seconds: float = 0.0
    name: str = ""
    layers_total: int = 0
    bytes_total: int = 0
    started: float = field(default_factory=time.monotonic)
    last_report: float = field(default_factory=time.monotonic)

    def downloaded(self, count: int) -> None:
        """``count`` more bytes arrived; a progress line now and then."""
        self.downloaded_bytes += count
        now = time.monotonic()
        if now - self.last_report < REPORT_EVERY:
            return
        self.last_report = now
        log.info(
            "pulling %s: %d of %d layers done, %.1f of %.1f MiB downloaded",
            self.name,
            self.layers_fetched + self.layers_reused,
            self.layers_total,
            self.downloaded_bytes / MIB,
            self.bytes_total / MIB,
        )


def _failure(what: str, problems: list[tuple[Endpoint, RegistryError]]) -> errors.CRIError:
    """One CRI error for a step that failed on every endpoint."""
    detail = "; ".join(str(problem) for _, problem in problems)
    # The registry itself (not a mirror), or every endpoint, saying it has no such thing settles it.
    missing = [e for e, p in problems if isinstance(p, Missing)]
    if missing and (len(missing) == len(problems) or any(not e.mirror for e in missing)):
        return errors.NotFound(f"{what}: not found ({detail})")
    refused = [p for e, p in problems if isinstance(p, Unauthorized) and not e.mirror]
    if refused:
        return errors.FailedPrecondition(f"{what}: {refused[0]}")
    if any(isinstance(p, Corrupt) for _, p in problems):
        return errors.Internal(f"{what}: content does not match its digest ({detail})")
    return errors.Unavailable(f"{what}: {detail}")


class Puller:
    """Pulls images for one adapter; layers shared between pulls are unpacked once."""

    def __init__(
        self,
        config: Config,
        store: ContentStore,
        client: RegistryClient,
        executor: concurrent.futures.Executor,
        max_concurrent_downloads: int = 3,
    ) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.executor = executor
        self.unpackers = Unpackers(executor)
        self.max_concurrent_downloads = max_concurrent_downloads
        """Layers fetched at once by each pull, as containerd counts them."""
        self._layer_locks: dict[str, asyncio.Lock] = {}
        self._bad_endpoints: dict[str, float] = {}
        self.last_stats = PullStats()

    # Endpoints.

    def _endpoints(self, ref: Reference) -> list[Endpoint]:
        """Mirrors and the registry; an insecure registry's HTTPS that just failed goes last."""
        now = time.monotonic()
        found = endpoints_for(self.config, ref.domain)
        good = [e for e in found if self._bad_endpoints.get(e.base_url, 0) < now]
        return good + [e for e in found if e not in good]

    @staticmethod
    def _tentative(endpoint: Endpoint) -> bool:
        """An HTTPS attempt at an insecure or loopback registry, which may speak HTTP only."""
        return not endpoint.verify_tls and not endpoint.plain_http

    def _note_failure(self, endpoint: Endpoint, problem: RegistryError) -> None:
        if self._tentative(endpoint) and not isinstance(problem, Missing | Unauthorized | Corrupt):
            self._bad_endpoints[endpoint.base_url] = time.monotonic() + 300

    async def _on_endpoints(
        self,
        what: str,
        endpoints: list[Endpoint],
        step: Callable[[Endpoint], Awaitable[T]],
    ) -> tuple[Endpoint, T]:
        problems: list[tuple[Endpoint, RegistryError]] = []
        for endpoint in endpoints:
            try:
                return endpoint, await step(endpoint)
            except Stalled as e:
                raise errors.DeadlineExceeded(
                    f"{what}: cancelled, no progress for {self.client.progress_timeout:g}s ({e})"
                ) from None
            except RegistryError as e:
                log.info("%s: %s", what, e)
                self._note_failure(endpoint, e)
                problems.append((endpoint, e))
        # When the plain-HTTP endpoint of a host answered, its HTTPS attempt is only noise.
        over_http = {e.host for e, _ in problems if e.plain_http}
        relevant = [(e, p) for e, p in problems if not (self._tentative(e) and e.host in over_http)]
        raise _failure(what, relevant or problems)

    # The pull.

    async def pull(self, ref: Reference, credentials_for: CredentialsFor) -> ImageRecord:
        stats = PullStats(name=str(ref))
        started = time.monotonic()
        log.info("pulling %s", ref)
        endpoints = self._endpoints(ref)
        if not endpoints:
            raise errors.Unavailable(f"no usable endpoint for {ref.domain}")
        for url in refused_mirrors(self.config, ref.domain):
            log.warning("mirror %s of %s is plain HTTP and not insecure; skipped", url, ref.domain)
        pins: list[str] = []
        try:
            record = await self._pull(ref, credentials_for, endpoints, pins, stats)
        finally:
            self.store.unpin(pins)
        log.info(
            "pulled %s as %s in %.2fs: %d layers fetched (%d bytes), %d reused",
            ref,
            record.id,
            time.monotonic() - started,
            stats.layers_fetched,
            stats.downloaded_bytes,
            stats.layers_reused,
        )
        self.last_stats = stats
        return record

    def _pin(self, pins: list[str], *keys: str) -> None:
        self.store.pin(keys)
        pins.extend(keys)

    async def _pull(
        self,
        ref: Reference,
        credentials_for: CredentialsFor,
        endpoints: list[Endpoint],
        pins: list[str],
        stats: PullStats,
    ) -> ImageRecord:
        name = str(ref)

        async def top(endpoint: Endpoint) -> tuple[bytes, str, str]:
            return await self.client.fetch_manifest(
                endpoint,
                ref.path,
                ref.digest or ref.tag,
                credentials_for(endpoint.host),
                expected_digest=ref.digest,
            )

        endpoint, (data, content_type, top_digest) = await self._on_endpoints(
            f"pulling {name}", endpoints, top
        )
        # The endpoint that answered first serves the rest; the others stay as fallbacks.
        endpoints = [endpoint, *(e for e in endpoints if e != endpoint)]
        self._pin(pins, top_digest)
        manifests = [top_digest]
        document = self._parse(name, data, content_type)
        blobs: dict[str, bytes] = {top_digest: data}
        if isinstance(document, mf.Index):
            try:
                chosen = pf.select(document)
            except mf.ManifestError as e:
                raise errors.NotFound(f"pulling {name}: {e}") from None

            async def child(endpoint: Endpoint) -> tuple[bytes, str, str]:
                return await self.client.fetch_manifest(
                    endpoint,
                    ref.path,
                    chosen.digest,
                    credentials_for(endpoint.host),
                    expected_digest=chosen.digest,
                )

            _, (data, content_type, digest) = await self._on_endpoints(
                f"pulling {name} ({chosen.platform})", endpoints, child
            )
            self._pin(pins, digest)
            manifests.append(digest)
            blobs[digest] = data
            document = self._parse(name, data, content_type or chosen.media_type)
            if isinstance(document, mf.Index):
                raise errors.InvalidArgument(f"pulling {name}: nested indexes are not supported")
        image_manifest = document
        config_digest = image_manifest.config.digest
        self._pin(pins, config_digest)
        config_data = await self._config(name, ref, image_manifest, endpoints, credentials_for)
        try:
            config = mf.parse_config(config_data)
        except mf.ManifestError as e:
            raise errors.InvalidArgument(f"pulling {name}: {e}") from None
        if len(config.diff_ids) != len(image_manifest.layers):
            raise errors.InvalidArgument(
                f"pulling {name}: the manifest has {len(image_manifest.layers)} layers "
                f"but the config {len(config.diff_ids)} diff_ids"
            )
        for layer, diff_id in zip(image_manifest.layers, config.diff_ids, strict=True):
            self._pin(pins, layer.digest, diff_id)
        for digest, content in blobs.items():
            if not self.store.has_blob(digest):
                await self._run(self.store.write_blob, digest, content)
        faults.reach("oci.pull.after-manifests")
        stats.layers_total = len(image_manifest.layers)
        stats.bytes_total = sum(layer.size for layer in image_manifest.layers)
        downloads = asyncio.Semaphore(self.max_concurrent_downloads)
        layers = await asyncio.gather(
            *(
                self._layer(name, ref, layer, diff_id, endpoints, credentials_for, stats, downloads)
                for layer, diff_id in zip(image_manifest.layers, config.diff_ids, strict=True)
            )
        )
        tags = [f"{ref.repository}:{ref.tag}"] if ref.tag and not ref.digest else []
        record = ImageRecord(
            id=config_digest,
            repo_tags=tags,
            repo_digests=[f"{ref.repository}@{top_digest}"],
            manifests=manifests,
            layers=list(layers),
            user=config.user,
            platform=str(config.platform),
            pulled_at=time.time_ns(),
        )
        faults.reach("oci.pull.before-commit")
        committed = await self._run(self.store.commit, record)
        faults.reach("oci.pull.after-commit")
        return committed

    @staticmethod
    def _parse(name: str, data: bytes, content_type: str) -> mf.Manifest | mf.Index:
        try:
            return mf.parse(data, content_type)
        except mf.ManifestError as e:
            raise errors.InvalidArgument(f"pulling {name}: {e}") from None

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def _config(
        self,
        name: str,
        ref: Reference,
        image_manifest: mf.Manifest,
        endpoints: list[Endpoint],
        credentials_for: CredentialsFor,
    ) -> bytes:
        descriptor = image_manifest.config
        if self.store.has_blob(descriptor.digest):
            data = await self._run(self.store.read_blob, descriptor.digest)
            if sha256_of(data) == descriptor.digest:
                return data

        async def fetch(endpoint: Endpoint) -> bytes:
            return await self.client.fetch_blob_bytes(
                endpoint, ref.path, descriptor, credentials_for(endpoint.host)
            )

        _, data = await self._on_endpoints(f"pulling {name} (config)", endpoints, fetch)
        await self._run(self.store.write_blob, descriptor.digest, data)
        return data

    async def _layer(
        self,
        name: str,
        ref: Reference,
        layer: mf.Descriptor,
        diff_id: str,
        endpoints: list[Endpoint],
        credentials_for: CredentialsFor,
        stats: PullStats,
        downloads: asyncio.Semaphore,
    ) -> LayerRecord:
        lock = self._layer_locks.setdefault(diff_id, asyncio.Lock())
        async with lock:
            # A snapshot can outlive its blob: a container's lease keeps the
            # snapshot of an image removed under it. The record needs both, so
            # the blob is fetched again, but the layer is not unpacked twice.
            if not self.store.has_blob(layer.digest):
                async with downloads:
                    await self._download(name, ref, layer, endpoints, credentials_for, stats)
            if not self.store.has_snapshot(diff_id):
                await self._unpack(name, layer, diff_id, stats)
            else:
                stats.layers_reused += 1
        if not lock.locked():
            self._layer_locks.pop(diff_id, None)
        return LayerRecord(
            digest=layer.digest,
            media_type=layer.media_type,
            size=layer.size,
            diff_id=diff_id,
            unpacked_size=self.store.snapshot_size(diff_id),
        )

    async def _download(
        self,
        name: str,
        ref: Reference,
        layer: mf.Descriptor,
        endpoints: list[Endpoint],
        credentials_for: CredentialsFor,
        stats: PullStats,
    ) -> None:
        def progress(count: int) -> None:
            stats.downloaded(count)

        with self.store.ingest(layer.digest) as (path, commit):

            async def fetch(endpoint: Endpoint) -> None:
                await self.client.fetch_blob(
                    endpoint,
                    ref.path,
                    layer,
                    credentials_for(endpoint.host),
                    lambda: open(path, "wb"),  # noqa: SIM115 - the client closes it
                    progress,
                )

            await self._on_endpoints(f"pulling {name} (layer {layer.digest})", endpoints, fetch)
            await self._run(commit)
        stats.layers_fetched += 1

    async def _unpack(
        self, name: str, layer: mf.Descriptor, diff_id: str, stats: PullStats
    ) -> None:
        work = self.store.new_unpack_dir()
        try:
            (work / "fs").mkdir()
            started = time.monotonic()
            result = await self.unpackers.unpack(
                self.store.blob_path(layer.digest), work / "fs", diff_id
            )
            stats.unpack_seconds += time.monotonic() - started
            stats.unpacked_bytes += result.size
            faults.reach("oci.pull.after-unpack")
            await self._run(self.store.commit_snapshot, work, diff_id, result.size)
        except UnpackError as e:
            raise errors.InvalidArgument(f"pulling {name}: layer {layer.digest}: {e}") from None
        except OSError as e:
            raise errors.Internal(f"pulling {name}: unpacking layer {layer.digest}: {e}") from None
        finally:
            if work.exists():
                await self._run(shutil.rmtree, work, True)
