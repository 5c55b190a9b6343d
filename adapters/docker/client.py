"""A typed, asynchronous face on the docker SDK's low-level client.

The SDK blocks on every call, so calls run in a bounded thread pool. Docker's
errors become pycrid's error vocabulary here and nowhere else, and each call
is bounded by the deadline of the CRI call that made it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from pycrid.adapters import errors
from pycrid.adapters.base import StartupError
from pycrid.adapters.deadline import seconds_left

log = logging.getLogger("pycrid.docker")

T = TypeVar("T")

DEFAULT_CALL_TIMEOUT = 120.0
POOL_SIZE = 16


def map_docker_error(error: Exception, endpoint: str) -> errors.CRIError:
    """The CRI error that stands for a failed Docker API call."""
    if isinstance(error, docker.errors.NotFound):
        return errors.NotFound(_explanation(error))
    if isinstance(error, docker.errors.APIError):
        status = error.status_code or 500
        text = _explanation(error)
        if status == 400:
            return errors.InvalidArgument(text)
        if status == 409:
            if "already in use" in text or "already exists" in text:
                return errors.AlreadyExists(text)
            return errors.FailedPrecondition(text)
        if status in (401, 403):
            return errors.FailedPrecondition(text)
        return errors.Internal(f"docker: {text}")
    if isinstance(error, requests.exceptions.Timeout):
        return errors.DeadlineExceeded(f"docker at {endpoint} did not answer in time")
    if isinstance(error, requests.exceptions.ConnectionError | ConnectionError | FileNotFoundError):
        return errors.Unavailable(f"docker is not reachable at {endpoint}")
    if isinstance(error, docker.errors.DockerException):
        if "Connection" in str(error) or "connect" in str(error):
            return errors.Unavailable(f"docker is not reachable at {endpoint}")
        return errors.Internal(f"docker: {error}")
    return errors.Internal(f"docker: {error}")


def _explanation(error: docker.errors.APIError) -> str:
    explanation = error.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or error)


class DockerClient:
    """Runs docker SDK calls off the event loop; see the module docstring."""

    def __init__(self, endpoint: str, pool_size: int = POOL_SIZE) -> None:
        self.endpoint = endpoint
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="docker")
        self._api: docker.APIClient | None = None

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            raise errors.Unavailable(f"docker is not reachable at {self.endpoint}")
        return self._api

    async def connect(self, wait: float) -> None:
        """Negotiate the API version, retrying for ``wait`` seconds."""
        deadline = time.monotonic() + wait
        last_error = "no answer"
        while True:
            remaining = deadline - time.monotonic()
            try:
                self._api = await asyncio.wait_for(
                    self._run(self._negotiate, max(1.0, remaining)), timeout=max(0.1, remaining)
                )
                return
            except (TimeoutError, Exception) as e:
                last_error = str(e) or type(e).__name__
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"docker at {self.endpoint} did not answer within {wait:g}s ({last_error})"
                )
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def _negotiate(self, timeout: float) -> docker.APIClient:
        return docker.APIClient(base_url=self.endpoint, version="auto", timeout=int(timeout) or 1)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``APIClient.<method>`` with Docker errors mapped to CRI errors."""
        return await self.run(getattr(self.api, method), *args, **kwargs)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking function that uses the SDK, as ``call`` does."""
        what = getattr(fn, "__name__", "call")
        timeout = seconds_left()
        if timeout is not None and timeout <= 0:
            raise errors.DeadlineExceeded(f"no time left for docker {what}")
        try:
            return await asyncio.wait_for(self._run(fn, *args, **kwargs), timeout=timeout)
        except TimeoutError:
            raise errors.DeadlineExceeded(f"docker {what} outlived the call's deadline") from None
        except errors.CRIError:
            raise
        except Exception as e:
            raise map_docker_error(e, self.endpoint) from e

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._run(self.api.ping), timeout=5))
        except Exception:
            return False

    async def close(self) -> None:
        if self._api is not None:
            self._api.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
