"""``DockerApi`` on dockerd, through the docker SDK's low-level client.

The SDK blocks on every call, so calls run in a bounded thread pool. Each is
bounded by the deadline of the CRI call that made it (``seconds_left``; a
default when there is none), twice over: the awaiting coroutine gives up at
the deadline, and the HTTP request itself times out then too, so that the
pool thread is given back instead of waiting on a dockerd that never answers.
The SDK fixes its HTTP timeout when it connects; ``_TimedAPIClient`` replaces
it, per request, with the deadline that the pool thread's current call set.

Failures become pycrid's errors in one place (errormap.py), by status code
and by what that code means for the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from pycrid.adapters import errors
from pycrid.adapters.backendmetrics import timed_backend_call
from pycrid.adapters.base import StartupError
from pycrid.adapters.deadline import seconds_left
from pycrid.adapters.docker import errormap
from pycrid.adapters.docker.api import (
    AsyncStream,
    ContainerInspect,
    ContainerSummary,
    DiskUsage,
    Document,
    ExecInspect,
    Filters,
    ImageInspect,
    ImageSummary,
    RawStream,
    SystemInfo,
)
from pycrid.adapters.docker.hijack import Hijacked, hijack
from pycrid.adapters.docker.httpstream import get_stream
from pycrid.adapters.docker.sdk import docker, requests

T = TypeVar("T")

DEFAULT_CALL_TIMEOUT = 120.0
"""Seconds a call may take when the CRI call that made it has no deadline."""
DEFAULT_PULL_TIMEOUT = 1800.0
"""The same for a pull, which moves whole images."""
PING_TIMEOUT = 5.0
POOL_SIZE = 16

# Docker's resource field names as the SDK's update_container takes them.
_UPDATE_KWARGS = {
    "CpuShares": "cpu_shares",
    "CpuPeriod": "cpu_period",
    "CpuQuota": "cpu_quota",
    "CpusetCpus": "cpuset_cpus",
    "CpusetMems": "cpuset_mems",
    "Memory": "mem_limit",
    "MemorySwap": "memswap_limit",
}

_thread_deadline = threading.local()
"""``until``: the monotonic time at which the pool thread's current call must end;
``idle``: the longest wait for one read of a streamed answer (a pull's progress)."""


def _until() -> float | None:
    until: float | None = getattr(_thread_deadline, "until", None)
    return until


class _TimedAPIClient(docker.APIClient):
    """The SDK's client, with each request's timeout taken from its thread's call."""

    def _set_request_timeout(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        until = _until()
        if until is None:
            return cast(dict[str, Any], super()._set_request_timeout(kwargs))
        left = until - time.monotonic()
        if left <= 0:
            raise requests.exceptions.Timeout("the call's deadline passed before the request")
        given = kwargs.get("timeout")
        kwargs["timeout"] = left if given is None else min(float(given), left)
        idle: float | None = getattr(_thread_deadline, "idle", None)
        if idle is not None:
            kwargs["timeout"] = min(kwargs["timeout"], idle)
        return kwargs


class _SocketStream:
    """An exec's hijacked connection, as the SDK hands it over.

    The socket still has the timeout of the request that started the exec;
    a command may be silent for longer, so reads wait without one (``interrupt``
    ends them).
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        sock = getattr(stream, "_sock", stream)
        self._sock: socket.socket | None = sock if isinstance(sock, socket.socket) else None
        if self._sock is not None:
            self._sock.settimeout(None)

    def read(self, size: int) -> bytes:
        if self._sock is not None:
            return self._sock.recv(size)
        return cast(bytes, self._stream.read(size))

    def interrupt(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()
        if self._sock is not None:
            self._sock.close()


class _ResponseStream:
    """A streamed HTTP answer (the event stream)."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response

    def read(self, size: int) -> bytes:
        try:
            return cast(bytes, self._response.raw.read1(size))
        except Exception as e:  # urllib3, socket and requests errors alike
            raise OSError(str(e)) from e

    def interrupt(self) -> None:
        connection = getattr(self._response.raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._response.close()


class DockerClient:
    """Runs docker SDK calls off the event loop; see the module docstring."""

    def __init__(self, endpoint: str, pool_size: int = POOL_SIZE) -> None:
        self._endpoint = endpoint
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="docker")
        self._api: _TimedAPIClient | None = None

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def _sdk(self) -> _TimedAPIClient:
        if self._api is None:
            raise errors.Unavailable(f"docker is not reachable at {self.endpoint}")
        return self._api

    @property
    def api_version(self) -> str:
        """The API version negotiated with dockerd."""
        return str(self._sdk.api_version)

    # Connecting.

    async def connect(self, wait: float) -> None:
        """Negotiate the API version, retrying for ``wait`` seconds."""
        give_up = time.monotonic() + wait
        last_error = "no answer"
        while True:
            remaining = max(0.5, give_up - time.monotonic())
            try:
                self._api = await self._run("version", self._negotiate, remaining)
                return
            except Exception as e:
                last_error = str(errormap.map_error(e, self.endpoint))
            if time.monotonic() >= give_up:
                raise StartupError(
                    f"docker at {self.endpoint} did not answer within {wait:g}s ({last_error})"
                )
            await asyncio.sleep(min(0.5, max(0.0, give_up - time.monotonic())))

    def _negotiate(self) -> _TimedAPIClient:
        return _TimedAPIClient(base_url=self.endpoint, version="auto", timeout=DEFAULT_CALL_TIMEOUT)

    async def close(self) -> None:
        if self._api is not None:
            self._api.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # Running a call.

    async def _call(
        self, call: str, fn: Callable[[], T], *, default: float = DEFAULT_CALL_TIMEOUT
    ) -> T:
        """Run ``fn``, the SDK's side of the ``DockerApi`` method ``call``, in the pool.

        It ends by the CRI call's deadline, or after ``default`` seconds
        without one; its errors are mapped as errormap.py says for ``call``.
        """
        left = seconds_left()
        if left is not None and left <= 0:
            raise errors.DeadlineExceeded(f"no time left for docker {call}")
        try:
            with timed_backend_call("docker", call):
                return await self._run(call, fn, default if left is None else left)
        except errors.CRIError:
            raise
        except Exception as e:
            raise errormap.map_error(e, self.endpoint, call) from e

    async def _run(self, what: str, fn: Callable[[], T], limit: float) -> T:
        """``fn`` in a pool thread whose HTTP requests end within ``limit`` seconds."""
        until = time.monotonic() + limit

        def in_thread() -> T:
            _thread_deadline.until = until
            try:
                return fn()
            finally:
                _thread_deadline.until = None

        future = asyncio.get_running_loop().run_in_executor(self._pool, in_thread)
        try:
            return await asyncio.wait_for(future, limit)
        except TimeoutError:
            raise errors.DeadlineExceeded(f"docker {what} outlived the call's deadline") from None

    # The daemon.

    async def ping(self) -> bool:
        left = seconds_left()
        limit = PING_TIMEOUT if left is None else max(0.1, min(PING_TIMEOUT, left))
        try:
            return bool(await self._run("ping", self._sdk.ping, limit))
        except Exception:
            return False

    async def info(self) -> SystemInfo:
        api = self._sdk
        return cast(SystemInfo, await self._call("info", api.info))

    async def df(self) -> DiskUsage:
        api = self._sdk
        return cast(DiskUsage, await self._call("df", api.df))

    # Containers.

    async def list_containers(self, filters: Filters) -> list[ContainerSummary]:
        api = self._sdk
        listed = await self._call(
            "list_containers", lambda: api.containers(all=True, filters=dict(filters))
        )
        return cast(list[ContainerSummary], listed)

    async def inspect_container(self, container: str) -> ContainerInspect:
        api = self._sdk
        found = await self._call("inspect_container", lambda: api.inspect_container(container))
        return cast(ContainerInspect, found)

    async def create_container(self, name: str, body: Document) -> str:
        api = self._sdk
        created = await self._call(
            "create_container",
            lambda: api.create_container_from_config(dict(body), name),
        )
        return str(created["Id"])

    async def start_container(self, container_id: str) -> None:
        api = self._sdk
        await self._call("start_container", lambda: api.start(container_id))

    async def stop_container(self, container_id: str, timeout: int) -> None:
        api = self._sdk
        await self._call(
            "stop_container",
            lambda: api.stop(container_id, timeout=timeout),
            default=DEFAULT_CALL_TIMEOUT + timeout,
        )

    async def remove_container(
        self, container_id: str, *, force: bool = False, volumes: bool = False
    ) -> None:
        api = self._sdk
        await self._call(
            "remove_container", lambda: api.remove_container(container_id, v=volumes, force=force)
        )

    async def update_container(self, container_id: str, resources: Document) -> None:
        api = self._sdk
        unknown = sorted(set(resources) - set(_UPDATE_KWARGS))
        if unknown:
            raise errors.InvalidArgument(f"docker cannot update {', '.join(unknown)}")
        kwargs = {_UPDATE_KWARGS[key]: value for key, value in resources.items()}
        await self._call("update_container", lambda: api.update_container(container_id, **kwargs))

    async def resize_container(self, container_id: str, height: int, width: int) -> None:
        api = self._sdk
        await self._call(
            "resize_container", lambda: api.resize(container_id, height=height, width=width)
        )

    async def attach_container(
        self, container_id: str, *, stdin: bool, stdout: bool, stderr: bool
    ) -> Hijacked:
        flags = {"stream": True, "stdin": stdin, "stdout": stdout, "stderr": stderr}
        query = "&".join(f"{name}={int(on)}" for name, on in flags.items())
        return await hijack(
            self.endpoint, self.api_version, f"/containers/{container_id}/attach?{query}"
        )

    def open_events(self, filters: Filters) -> RawStream:
        api = self._sdk
        url = f"{api.base_url}/v{api.api_version}/events"
        params = {"filters": json.dumps(dict(filters))}
        try:
            # No timeout: events come when something happens, which may be never.
            response = api.get(url, params=params, stream=True, timeout=None)
        except requests.RequestException as e:
            raise errormap.map_error(e, self.endpoint) from e
        if response.status_code >= 400:
            text = response.text.strip()
            response.close()
            raise errormap.error_for_status(response.status_code, text, "open_events")
        return _ResponseStream(response)

    async def stream_logs(
        self, container_id: str, *, follow: bool, since: str | None
    ) -> AsyncStream:
        query: dict[str, str | int] = {"stdout": 1, "stderr": 1, "timestamps": 1}
        query["follow"] = int(follow)
        if since is not None:
            query["since"] = since
        # Not through the SDK: a followed log lasts as long as its container,
        # and the SDK would hold a thread for it (httpstream.py).
        return await get_stream(
            self.endpoint,
            f"/v{self.api_version}/containers/{container_id}/logs",
            query,
            call="stream_logs",
        )

    # Images.

    async def inspect_image(self, image: str) -> ImageInspect:
        api = self._sdk
        return cast(
            ImageInspect, await self._call("inspect_image", lambda: api.inspect_image(image))
        )

    async def list_images(self) -> list[ImageSummary]:
        api = self._sdk
        return cast(list[ImageSummary], await self._call("list_images", api.images))

    async def pull_image(
        self,
        repository: str,
        tag: str,
        auth: Mapping[str, str] | None = None,
        *,
        idle_timeout: float | None = None,
        progress: Callable[[Mapping[str, object]], None] | None = None,
    ) -> None:
        api = self._sdk
        credentials = dict(auth) if auth else None

        def pull() -> None:
            # Every read of the stream waits at most idle_timeout (requests'
            # read timeout is per read): a pull that stalls ends then.
            _thread_deadline.idle = idle_timeout
            try:
                events = api.pull(
                    repository, tag=tag, stream=True, decode=True, auth_config=credentials
                )
                try:
                    for event in events:
                        if "error" in event:
                            raise errormap.pull_stream_error(event.get("error") or "", repository)
                        if progress is not None:
                            progress(event)
                        until = _until()
                        if until is not None and time.monotonic() > until:
                            raise errors.DeadlineExceeded(
                                f"pulling {repository} outlived its deadline"
                            )
                finally:
                    events.close()
            except errors.CRIError:
                raise
            except Exception as e:
                if idle_timeout is not None and errormap.timed_out(e):
                    raise errors.DeadlineExceeded(
                        f"pulling {repository}: cancelled, no progress for {idle_timeout:g}s"
                    ) from None
                raise
            finally:
                _thread_deadline.idle = None

        await self._call("pull_image", pull, default=DEFAULT_PULL_TIMEOUT)

    async def tag_image(self, image: str, repository: str, tag: str) -> None:
        api = self._sdk
        await self._call("tag_image", lambda: api.tag(image, repository, tag))

    async def remove_image(self, image: str, *, force: bool = False, prune: bool = True) -> None:
        api = self._sdk
        await self._call(
            "remove_image", lambda: api.remove_image(image, force=force, noprune=not prune)
        )

    # Exec.

    async def exec_create(
        self,
        container_id: str,
        cmd: Sequence[str],
        *,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        tty: bool = False,
    ) -> str:
        api = self._sdk
        created = await self._call(
            "exec_create",
            lambda: api.exec_create(
                container_id, list(cmd), stdout=stdout, stderr=stderr, stdin=stdin, tty=tty
            ),
        )
        return str(created["Id"])

    async def exec_start(self, exec_id: str) -> RawStream:
        api = self._sdk
        sock = await self._call("exec_start", lambda: api.exec_start(exec_id, socket=True))
        return _SocketStream(sock)

    async def exec_attach(self, exec_id: str, *, tty: bool) -> Hijacked:
        return await hijack(
            self.endpoint,
            self.api_version,
            f"/exec/{exec_id}/start",
            {"Detach": False, "Tty": tty},
        )

    async def exec_inspect(self, exec_id: str) -> ExecInspect:
        api = self._sdk
        return cast(
            ExecInspect, await self._call("exec_inspect", lambda: api.exec_inspect(exec_id))
        )

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        api = self._sdk
        await self._call(
            "exec_resize", lambda: api.exec_resize(exec_id, height=height, width=width)
        )
