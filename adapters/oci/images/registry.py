"""A client for the OCI distribution protocol over aiohttp.

It fetches manifests and blobs from one endpoint at a time (choosing among
mirrors is the puller's job), answers the registry's WWW-Authenticate
challenge (a bearer token from the token service, or basic auth), follows
blob redirects without carrying credentials to other hosts, retries what is
transient and checks every byte against its digest. A read that waits longer
than ``progress_timeout`` for the next byte ends the download as stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp

from pycrid.adapters.oci.images import manifest as mf
from pycrid.adapters.oci.images import tokens
from pycrid.adapters.oci.images.auth import Credentials
from pycrid.adapters.oci.images.digest import DigestError, Verifier, sha256_of, verify_bytes
from pycrid.adapters.oci.images.endpoints import Endpoint
from pycrid.adapters.oci.images.failures import (
    TRANSIENT_STATUS,
    Corrupt,
    Missing,
    RegistryError,
    Stalled,
    Transient,
    Unauthorized,
)
from pycrid.adapters.version import PYCRID_VERSION

log = logging.getLogger("pycrid.oci.registry")

USER_AGENT = f"pycrid/{PYCRID_VERSION}"
CHUNK = 256 * 1024
WRITE_BATCH = 4 * 1024 * 1024
"""Bytes of a blob received before they are hashed and written, in a thread: a pull of
several large layers must not hash and write them one after the other on the event loop."""
MAX_REDIRECTS = 5

T = TypeVar("T")


@dataclass
class _Token:
    header: str
    expires: float


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class RegistryClient:
    """Talks to registries; one instance serves every pull of the adapter."""

    def __init__(
        self,
        progress_timeout: float = 60.0,
        retries: int = 3,
        retry_delay: float = 0.5,
    ) -> None:
        self.progress_timeout = progress_timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self._session: aiohttp.ClientSession | None = None
        # (endpoint, repository, credentials) -> Authorization header that worked.
        self._tokens: dict[tuple[str, str, Credentials], _Token] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=32, limit_per_host=8),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self.progress_timeout,
                    sock_read=self.progress_timeout,
                ),
                auto_decompress=False,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # Requests, authentication and redirects.

    async def _send(
        self, method: str, url: str, endpoint: Endpoint, headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        try:
            return await self._client().request(
                method,
                url,
                headers=headers,
                allow_redirects=False,
                ssl=endpoint.verifies_tls_for(url),
            )
        except aiohttp.SocketTimeoutError as e:
            raise Stalled(f"{endpoint}: no answer for {self.progress_timeout:g}s") from e
        except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as e:
            # Not worth retrying: the endpoint does not speak TLS, or not with a valid certificate.
            raise RegistryError(f"{endpoint}: TLS failed: {e}") from e
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise Transient(f"{endpoint}: {type(e).__name__}: {e}") from e

    @contextlib.asynccontextmanager
    async def _open(
        self,
        endpoint: Endpoint,
        repository: str,
        path: str,
        credentials: Credentials,
        accept: tuple[str, ...] = (),
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET ``path`` below the repository, authenticated, redirects followed.

        Yields a 200 response; anything else raises.
        """
        url = f"{endpoint.base_url}/v2/{repository}/{path}"
        headers: dict[str, str] = {}
        if accept:
            headers["Accept"] = ", ".join(accept)
        key = (endpoint.base_url, repository, credentials)
        token = self._tokens.get(key)
        if token is not None and token.expires > time.monotonic():
            headers["Authorization"] = token.header
        response = await self._send("GET", url, endpoint, headers)
        if response.status == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            response.release()
            headers["Authorization"] = await self._authorize(
                endpoint, repository, credentials, challenge
            )
            response = await self._send("GET", url, endpoint, headers)
            if response.status == 401:
                response.release()
                raise Unauthorized(tokens.refusal(endpoint, repository, credentials))
        redirects = 0
        while response.status in (301, 302, 303, 307, 308):
            location = response.headers.get("Location", "")
            response.release()
            redirects += 1
            if not location or redirects > MAX_REDIRECTS:
                raise RegistryError(f"{endpoint}: too many or empty redirects for {path}")
            target = urljoin(url, location)
            if not endpoint.allows(target):
                raise RegistryError(f"{endpoint}: refusing redirect to plain-HTTP {target}")
            if _origin(target) != _origin(url):
                # Credentials belong to the registry, never to the storage it redirects to.
                headers.pop("Authorization", None)
            url = target
            response = await self._send("GET", url, endpoint, headers)
        try:
            if response.status == 200:
                yield response
                return
            text = (await response.content.read(512)).decode("utf-8", "replace").strip()
        except aiohttp.SocketTimeoutError as e:
            raise Stalled(f"{endpoint}: no data for {self.progress_timeout:g}s") from e
        except (aiohttp.ClientError, OSError) as e:
            raise Transient(f"{endpoint}: {type(e).__name__}: {e}") from e
        finally:
            response.release()
        detail = f"{endpoint}: {path}: HTTP {response.status} {text[:200]}".rstrip()
        if response.status == 404:
            raise Missing(detail)
        if response.status == 403:
            raise Unauthorized(f"registry {endpoint.host} denied access to {repository}: {detail}")
        if response.status in TRANSIENT_STATUS:
            raise Transient(detail)
        raise RegistryError(detail)

    async def _authorize(
        self, endpoint: Endpoint, repository: str, credentials: Credentials, header: str
    ) -> str:
        """Answer a 401's challenge with an Authorization header value (and remember it)."""
        value, lifetime = await tokens.authorization(
            self._client(), endpoint, repository, credentials, header
        )
        now = time.monotonic()
        for stale in [k for k, t in self._tokens.items() if t.expires <= now]:
            del self._tokens[stale]
        key = (endpoint.base_url, repository, credentials)
        self._tokens[key] = _Token(value, now + max(lifetime - 10, 1))
        return value

    # Retries.

    async def _retrying(
        self, what: str, attempt: Callable[[], Awaitable[T]], retries: int | None = None
    ) -> T:
        retries = self.retries if retries is None else retries
        delay = self.retry_delay
        for n in range(retries + 1):
            try:
                return await attempt()
            except Transient as e:
                if n == retries:
                    raise
                log.info("%s failed (%s); retrying in %.1fs", what, e, delay)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # The two things a pull needs.

    async def fetch_manifest(
        self,
        endpoint: Endpoint,
        repository: str,
        reference: str,
        credentials: Credentials,
        expected_digest: str = "",
        accept: tuple[str, ...] = mf.ACCEPT,
    ) -> tuple[bytes, str, str]:
        """(content, media type, digest) of a manifest or index, by tag or digest."""

        async def attempt() -> tuple[bytes, str, str]:
            async with self._open(
                endpoint, repository, f"manifests/{reference}", credentials, accept
            ) as response:
                announced = response.content_length
                if announced is not None and announced > mf.MAX_MANIFEST_BYTES:
                    raise RegistryError(f"{endpoint}: manifest of {announced} bytes is too large")
                data = await self._read_limited(response, endpoint, mf.MAX_MANIFEST_BYTES)
                content_type = response.headers.get("Content-Type", "")
                header_digest = response.headers.get("Docker-Content-Digest", "")
            digest = expected_digest or sha256_of(data)
            try:
                verify_bytes(data, digest)
            except DigestError as e:
                raise Corrupt(f"{endpoint}: manifest {reference}: {e}") from None
            if header_digest and header_digest != digest and header_digest.startswith("sha256:"):
                raise Corrupt(
                    f"{endpoint}: manifest {reference} hashes to {digest} but the registry "
                    f"says {header_digest}"
                )
            return data, content_type, digest

        # One retry only: another endpoint (mirror or registry) is usually next in line.
        return await self._retrying(
            f"manifest {repository}:{reference} from {endpoint}", attempt, retries=1
        )

    async def _read_limited(
        self, response: aiohttp.ClientResponse, endpoint: Endpoint, limit: int
    ) -> bytes:
        chunks: list[bytes] = []
        total = 0
        try:
            async for chunk in response.content.iter_chunked(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise RegistryError(f"{endpoint}: document larger than {limit} bytes")
                chunks.append(chunk)
        except aiohttp.SocketTimeoutError as e:
            raise Stalled(f"{endpoint}: no data for {self.progress_timeout:g}s") from e
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as e:
            raise Transient(f"{endpoint}: {type(e).__name__}: {e}") from e
        return b"".join(chunks)

    async def fetch_blob_bytes(
        self,
        endpoint: Endpoint,
        repository: str,
        descriptor: mf.Descriptor,
        credentials: Credentials,
    ) -> bytes:
        """A small blob (an image config) in memory, verified."""

        async def attempt() -> bytes:
            async with self._open(
                endpoint, repository, f"blobs/{descriptor.digest}", credentials
            ) as response:
                data = await self._read_limited(
                    response, endpoint, max(descriptor.size, mf.MAX_CONFIG_BYTES)
                )
            try:
                verify_bytes(data, descriptor.digest, descriptor.size)
            except DigestError as e:
                raise Corrupt(f"{endpoint}: blob {descriptor.digest}: {e}") from None
            return data

        return await self._retrying(f"blob {descriptor.digest} from {endpoint}", attempt)

    async def fetch_blob(
        self,
        endpoint: Endpoint,
        repository: str,
        descriptor: mf.Descriptor,
        credentials: Credentials,
        open_target: Callable[[], BinaryIO],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob into a file from ``open_target`` (called once per attempt), verified.

        Raises Corrupt when the bytes do not match the descriptor; the target
        then holds garbage and the caller discards it.
        """

        async def attempt() -> None:
            verifier = Verifier(descriptor.digest, descriptor.size)
            with open_target() as target:
                async with self._open(
                    endpoint, repository, f"blobs/{descriptor.digest}", credentials
                ) as response:
                    try:
                        batch: list[bytes] = []
                        batched = 0
                        async for chunk in response.content.iter_chunked(CHUNK):
                            batch.append(chunk)
                            batched += len(chunk)
                            if batched >= WRITE_BATCH:
                                await asyncio.to_thread(_absorb, verifier, target, batch)
                                if progress is not None:
                                    progress(batched)
                                batch, batched = [], 0
                        if batch:
                            await asyncio.to_thread(_absorb, verifier, target, batch)
                            if progress is not None:
                                progress(batched)
                    except aiohttp.SocketTimeoutError as e:
                        raise Stalled(
                            f"{endpoint}: blob {descriptor.digest}: no data for "
                            f"{self.progress_timeout:g}s"
                        ) from e
                    except DigestError as e:
                        raise Corrupt(f"{endpoint}: blob {descriptor.digest}: {e}") from None
                    except (
                        aiohttp.ClientPayloadError,
                        aiohttp.ClientConnectionError,
                        OSError,
                    ) as e:
                        raise Transient(f"{endpoint}: {type(e).__name__}: {e}") from e
            try:
                verifier.verify()
            except DigestError as e:
                if verifier.seen < (descriptor.size or 0):
                    raise Transient(
                        f"{endpoint}: blob {descriptor.digest} cut short: {e}"
                    ) from None
                raise Corrupt(f"{endpoint}: blob {descriptor.digest}: {e}") from None

        await self._retrying(f"blob {descriptor.digest} from {endpoint}", attempt)


def _absorb(verifier: Verifier, target: BinaryIO, chunks: list[bytes]) -> None:
    """Hash and write received chunks (in a thread: both release the GIL)."""
    for chunk in chunks:
        verifier.update(chunk)
    target.writelines(chunks)
