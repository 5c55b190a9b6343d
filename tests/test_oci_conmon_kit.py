"""Shared by the tests that run real runc and conmon: a busybox bundle and clean-up.

Each test gets an ``OciKit`` with a runc root, exit and persist dirs of its
own under a temporary directory; every container it makes is deleted, every
conmon it started killed and every cgroup it left removed afterwards, even
when the test failed. Containers use the host network (no CNI needed) and
the cgroup ``/pycrid-test/<id>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pycrid.adapters.oci.runtime import conmon as conmon_files
from pycrid.adapters.oci.runtime.conmon import Conmon
from pycrid.adapters.oci.runtime.runc import Runc
from pycrid.adapters.streaming import TerminalSize

RUNC = shutil.which("runc") or "/usr/sbin/runc"
CONMON = shutil.which("conmon") or "/usr/bin/conmon"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = (
    *("sh", "echo", "cat", "sleep", "ls", "id", "ps", "pidof", "top", "grep"),
    *("head", "tr", "kill", "stty", "printf", "wc", "true"),
)
CGROUP_PARENT = "pycrid-test"
CAPABILITIES = [
    f"CAP_{c}"
    for c in [
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    ]
]


def _static_busybox() -> bool:
    try:
        out = subprocess.run(["file", "-L", BUSYBOX], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "statically linked" in out.stdout


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for binary in (RUNC, CONMON):
        if not os.access(binary, os.X_OK):
            return f"{binary} is not installed"
    if not _static_busybox():
        return f"{BUSYBOX} is not a static busybox (apt-get install busybox-static)"
    return None


requires_runtime = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")

T = TypeVar("T")


def bounded(seconds: float) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Fail an async test that runs longer than ``seconds`` (no pytest-timeout here)."""

    def wrap(test: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> T:
            return await asyncio.wait_for(test(*args, **kwargs), seconds)

        return run

    return wrap


def make_rootfs(rootfs: Path) -> None:
    """A root filesystem of busybox: applets as hard links (it runs them in-process)."""
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc", "root"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        os.link(rootfs / "bin" / "busybox", rootfs / "bin" / applet)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")


MOUNTS = [
    ("/proc", "proc", "proc", "nosuid,noexec,nodev"),
    ("/dev", "tmpfs", "tmpfs", "nosuid,strictatime,mode=755,size=65536k"),
    ("/dev/pts", "devpts", "devpts", "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5"),
    ("/sys", "sysfs", "sysfs", "nosuid,noexec,nodev,ro"),
]


def _mount(destination: str, kind: str, source: str, options: str) -> dict[str, Any]:
    return {
        "destination": destination,
        "type": kind,
        "source": source,
        "options": options.split(","),
    }


def spec(
    container_id: str,
    args: list[str],
    tty: bool = False,
    memory_limit: int | None = None,
) -> dict[str, Any]:
    """A minimal OCI config: new pid/ipc/uts/mount namespaces, the host network."""
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if memory_limit is not None:
        resources["memory"] = {"limit": memory_limit, "swap": memory_limit}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": tty,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "HOME=/root", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: CAPABILITIES for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
            "oomScoreAdj": 0,  # a negative one needs CAP_SYS_RESOURCE, absent here
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "pycrid-test",
        "mounts": [_mount(*m) for m in MOUNTS],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "cgroupsPath": f"/{CGROUP_PARENT}/{container_id}",
            "resources": resources,
        },
    }


def process(args: list[str]) -> dict[str, Any]:
    """An OCI Process for exec, as a container's own would be."""
    return {**spec("x", args)["process"], "terminal": False}


@dataclass
class Started:
    """A container created under conmon."""

    id: str
    bundle: Path
    persist: Path
    log_path: Path
    pid: int


@dataclass
class OciKit:
    base: Path
    runc: Runc = field(init=False)
    conmon: Conmon = field(init=False)
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runc = Runc(RUNC, self.base / "runc")
        self.conmon = Conmon(CONMON, RUNC, self.base / "runc")
        self.exits = self.base / "exits"
        self.logs = self.base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def new_id(self) -> str:
        container_id = secrets.token_hex(32)
        self.ids.append(container_id)
        return container_id

    def bundle(self, container_id: str, config: dict[str, Any]) -> Path:
        bundle = self.base / "bundles" / container_id
        make_rootfs(bundle / "rootfs")
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def prepare(
        self, args: list[str], tty: bool = False, memory_limit: int | None = None
    ) -> Started:
        """A bundle and the paths of a container not created yet (pid 0)."""
        container_id = self.new_id()
        bundle = self.bundle(container_id, spec(container_id, args, tty, memory_limit))
        persist = self.base / "persist" / container_id
        log_path = self.logs / f"{container_id[:12]}.log"
        return Started(container_id, bundle, persist, log_path, 0)

    async def create(
        self,
        args: list[str],
        tty: bool = False,
        stdin: bool = False,
        stdin_once: bool = False,
        memory_limit: int | None = None,
        cgroup: str | None = None,
    ) -> Started:
        prepared = self.prepare(args, tty, memory_limit)
        pid = await self.conmon.create(
            prepared.id,
            prepared.bundle,
            str(prepared.log_path),
            self.exits,
            prepared.persist,
            tty=tty,
            stdin=stdin,
            stdin_once=stdin_once,
            cgroup=cgroup,
        )
        prepared.pid = pid
        return prepared

    async def run(self, args: list[str], **kwargs: Any) -> Started:
        """Create and start a container."""
        started = await self.create(args, **kwargs)
        await self.runc.start(started.id)
        return started

    async def cleanup(self) -> None:
        for container_id in self.ids:
            bundle = self.base / "bundles" / container_id
            pid = conmon_files.conmon_pid(bundle)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.runc.delete(container_id, force=True), 20)
            if pid and conmon_files.conmon_running(bundle, container_id):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                await wait_gone(pid)
            remove_cgroup(f"/{CGROUP_PARENT}/{container_id}")
            remove_cgroup(f"/{CGROUP_PARENT}/conmon-{container_id}")
        shutil.rmtree(self.base, ignore_errors=True)


def remove_cgroup(path: str) -> None:
    for root in Path("/sys/fs/cgroup").iterdir():
        directory = root / path.strip("/")
        with contextlib.suppress(OSError):
            directory.rmdir()


async def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat[stat.rfind(")") + 2 :].startswith(("Z", "X")):
            return True
        await asyncio.sleep(0.02)
    return False


async def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
    """Poll ``predicate`` until it returns something true."""
    give_up = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def exit_of(started: Started, timeout: float = 10.0) -> int:
    found = await wait_for(
        lambda: conmon_files.exit_code(started.persist), timeout, f"exit of {started.id[:12]}"
    )
    return found[0]


class ScriptedInput:
    """Client input: each chunk after its delay, then end of input (or never, with hold)."""

    def __init__(self, *chunks: bytes, delay: float = 0.0, hold: bool = False) -> None:
        self.chunks = list(chunks)
        self.delay = delay
        self.hold = hold

    async def read(self) -> bytes:
        if self.chunks:
            await asyncio.sleep(self.delay)
            return self.chunks.pop(0)
        if self.hold:
            await asyncio.Event().wait()
        return b""


class CollectedOutput:
    """What the session wrote to the client."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.changed = asyncio.Event()

    async def write(self, data: bytes) -> None:
        self.data += data
        self.changed.set()

    async def wait_for(self, text: bytes, timeout: float = 10.0) -> None:
        give_up = time.monotonic() + timeout
        while text not in self.data:
            self.changed.clear()
            left = give_up - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not in {bytes(self.data)!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


class Resizes:
    """Terminal sizes from the client, each after ``delay``; then none until the end."""

    def __init__(self, *sizes: tuple[int, int], delay: float = 0.0) -> None:
        self.sizes = [TerminalSize(width=w, height=h) for w, h in sizes]
        self.delay = delay

    async def __aiter__(self) -> AsyncIterator[TerminalSize]:
        for size in self.sizes:
            await asyncio.sleep(self.delay)
            yield size
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def oci_kit(base: Path) -> AsyncIterator[OciKit]:
    kit = OciKit(base)
    try:
        yield kit
    finally:
        await kit.cleanup()


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[OciKit]:
    async with oci_kit(tmp_path / "oci") as k:
        yield k


def teardown_module() -> None:
    remove_cgroup(f"/{CGROUP_PARENT}")
