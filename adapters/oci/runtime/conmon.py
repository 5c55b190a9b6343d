"""conmon: the monitor that runs ``runc create`` and outlives pycrid.

Create, the way CRI-O does it (conmon 2.1): pycrid starts conmon with two
socketpair ends, ``_OCI_SYNCPIPE`` and ``_OCI_STARTPIPE``. conmon blocks on
the start pipe until pycrid has moved it into its own cgroup, then forks: the
parent writes the child's PID to ``<bundle>/conmon.pid`` and exits, the child
detaches (``setsid``, stdio on /dev/null, child subreaper) and runs
``runc create``. It reports one JSON line on the sync pipe: ``{"pid": N}``
when runc created the container, ``{"pid": -1, "message": <runc's stderr>}``
when it failed.

conmon then copies the container's output into the CRI log at ``log_path``
(``k8s-file``), serves attach clients on ``<bundle>/attach`` (``--full-attach``:
bundle paths may be longer than a socket path may be, so pycrid connects
through ``/proc/self/fd``), takes control messages on the ``<bundle>/ctl``
FIFO (``1 <height> <width>`` resizes the tty, ``2 0 0`` reopens the log), and
when the container exits writes its exit status to ``<persist_dir>/exit``
(and ``<exit_dir>/<id>``), plus an empty ``oom`` file in the bundle and the
persist dir after an OOM kill.

runc is given ``--log <bundle>/runc.log --log-format json``: its stderr,
which conmon forwards, then carries only its plain error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import time
from pathlib import Path

from pycrid.adapters import errors
from pycrid.adapters.deadline import without_deadline
from pycrid.adapters.node import proctree
from pycrid.adapters.oci.runtime import conmoncgroup
from pycrid.adapters.oci.runtime.execsync import kill_group
from pycrid.adapters.oci.runtime.runc import Runc, time_limit

log = logging.getLogger("pycrid.oci.conmon")

CREATE_TIMEOUT = 240.0  # seconds for runc create without a call deadline (CRI-O's)
REOPEN_TIMEOUT = 10.0  # seconds for conmon to open a new log file
CLEANUP_TIMEOUT = 10.0  # seconds for runc delete after a failed create
POLL_INTERVAL = 0.01
MONITOR_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Files in the bundle, written by conmon.
CONMON_PIDFILE = "conmon.pid"
CONTAINER_PIDFILE = "pidfile"
CTL = "ctl"
ATTACH = "attach"
RUNC_LOG = "runc.log"
EXIT_FILE = "exit"
OOM_FILE = "oom"

# Control message types on the ctl FIFO.
CTL_RESIZE = 1
CTL_REOPEN_LOG = 2


def ascii_name(name: str) -> str:
    """The name conmon shows (in its log lines): pod metadata may hold any
    character, and conmon refuses non-ASCII arguments where the locale lacks UTF-8."""
    return name.encode("ascii", "backslashreplace").decode("ascii")


class Conmon:
    """conmon 2.1 running runc, with runc's cgroupfs or systemd cgroup driver.

    Under the systemd driver (``scope_slice`` set) each conmon starts in a
    transient scope of its own in that slice, ``pycrid-conmon-<id>.scope``,
    made by ``systemd-run --scope`` before conmon runs: stopping or restarting
    pycrid.service then never touches a monitor, and systemd accounts for
    each one (CRI-O's ``MoveConmonToCgroup`` does the same over D-Bus).
    """

    def __init__(
        self,
        binary: str,
        runtime_binary: str,
        runtime_root: Path,
        log_level: str = "warn",
        syslog: bool = False,
        scope_slice: str | None = None,
        systemd_run: str = "systemd-run",
    ) -> None:
        self.binary = binary
        self.runtime_binary = runtime_binary
        self.runtime_root = Path(runtime_root)
        self.log_level = log_level
        self.syslog = syslog
        self.scope_slice = scope_slice
        self.systemd_run = systemd_run
        self.runc = Runc(runtime_binary, self.runtime_root, systemd_cgroup=bool(scope_slice))

    def running(self, bundle: Path, container_id: str) -> bool:
        return conmon_running(bundle, container_id)

    def argv(
        self,
        container_id: str,
        bundle: Path,
        log_path: str,
        exit_dir: Path,
        persist_dir: Path,
        tty: bool,
        stdin: bool,
        stdin_once: bool,
        name: str,
        runtime: str | None = None,
    ) -> list[str]:
        """conmon's command line for creating a container; ``runtime`` stands in
        for runc (a wrapper that runs it)."""
        argv = [
            *self.scope_argv(container_id),
            self.binary,
            *("-b", str(bundle), "-c", container_id, "-u", container_id, "-n", ascii_name(name)),
            *("-r", runtime or self.runtime_binary),
            *("--runtime-arg", f"--root={self.runtime_root}"),
            *("--runtime-arg", f"--log={bundle / RUNC_LOG}", "--runtime-arg", "--log-format=json"),
            *("-l", f"k8s-file:{log_path}", "--log-level", self.log_level),
            *("--exit-dir", str(exit_dir), "--persist-dir", str(persist_dir)),
            *("-P", str(bundle / CONMON_PIDFILE), "-p", str(bundle / CONTAINER_PIDFILE)),
            "--full-attach",
        ]
        if self.syslog:
            argv.append("--syslog")
        if self.scope_slice:
            argv += ["--systemd-cgroup", "--runtime-arg", "--systemd-cgroup"]
        if tty:
            argv.append("-t")
        elif stdin:
            argv.append("-i")
            if not stdin_once:
                argv.append("--leave-stdin-open")
        return argv

    def scope_argv(self, container_id: str) -> list[str]:
        """What runs conmon in a scope of its own (systemd-run execs conmon in place,
        so the PID, the environment and the inherited pipes stay conmon's)."""
        if not self.scope_slice:
            return []
        return [
            self.systemd_run,
            "--scope",
            "--quiet",
            "--collect",
            f"--unit={conmon_scope(container_id)}",
            f"--slice={self.scope_slice}",
            "--",
        ]

    async def create(
        self,
        container_id: str,
        bundle: Path,
        log_path: str,
        exit_dir: Path,
        persist_dir: Path,
        tty: bool = False,
        stdin: bool = False,
        stdin_once: bool = False,
        name: str | None = None,
        cgroup: str | None = None,
        runtime: str | None = None,
    ) -> int:
        """Create the container under a new conmon; the container's PID.

        ``cgroup`` (an absolute cgroup path, e.g. ``/pycrid/conmon-<id>``)
        is where conmon is put; None leaves it in pycrid's. ``runtime``: what
        conmon runs instead of runc (a wrapper that ends by running it). On any failure,
        conmon and whatever runc left are removed before raising: runc's
        message as Internal, DeadlineExceeded when it took too long.
        """
        limit = time_limit(CREATE_TIMEOUT, f"creating container {container_id}")
        exit_dir.mkdir(parents=True, exist_ok=True)
        persist_dir.mkdir(parents=True, exist_ok=True)
        argv = self.argv(
            container_id,
            bundle,
            log_path,
            exit_dir,
            persist_dir,
            tty=tty,
            stdin=stdin,
            stdin_once=stdin_once,
            name=name or container_id,
            runtime=runtime,
        )
        sync, child_sync = socket.socketpair()
        start, child_start = socket.socketpair()
        try:
            proc = await self._spawn(argv, bundle, child_sync.fileno(), child_start.fileno())
            child_sync.close()
            child_start.close()
            try:
                return await asyncio.wait_for(
                    self._handshake(proc, sync, start, container_id, cgroup), limit
                )
            except TimeoutError:
                with without_deadline():
                    await asyncio.shield(self._abandon(proc, container_id, bundle, cgroup))
                raise errors.DeadlineExceeded(
                    f"conmon did not create container {container_id} within {limit:.1f}s"
                ) from None
            except BaseException:
                with without_deadline():
                    await asyncio.shield(self._abandon(proc, container_id, bundle, cgroup))
                raise
        finally:
            for end in (sync, start, child_sync, child_start):
                end.close()

    async def _spawn(
        self, argv: list[str], bundle: Path, sync_fd: int, start_fd: int
    ) -> asyncio.subprocess.Process:
        env = {
            "PATH": MONITOR_PATH,
            "_OCI_SYNCPIPE": str(sync_fd),
            "_OCI_STARTPIPE": str(start_fd),
            # conmon's option parser refuses any non-ASCII argument (a log path
            # from the pod's log directory) in the C locale.
            "LC_ALL": "C.UTF-8",
        }
        if "XDG_RUNTIME_DIR" in os.environ:
            env["XDG_RUNTIME_DIR"] = os.environ["XDG_RUNTIME_DIR"]
        log.debug("running %s", argv)
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                cwd=bundle,
                env=env,
                pass_fds=(sync_fd, start_fd),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # pycrid's signals and terminal are not conmon's
            )
        except OSError as e:
            raise errors.Internal(f"cannot run conmon {self.binary}: {e}") from None

    async def _handshake(
        self,
        proc: asyncio.subprocess.Process,
        sync: socket.socket,
        start: socket.socket,
        container_id: str,
        cgroup: str | None,
    ) -> int:
        if cgroup:
            await asyncio.to_thread(conmoncgroup.move_to_cgroup, proc.pid, cgroup)
        start.sendall(b"\0")  # conmon may fork now
        _, stderr = await proc.communicate()
        if proc.returncode != 0:
            message = stderr.decode(errors="replace").strip()
            raise errors.Internal(
                f"conmon for {container_id} exited with status {proc.returncode}: {message}"
            )
        report = await _read_line(sync)
        return _container_pid(report, container_id)

    async def _abandon(
        self,
        proc: asyncio.subprocess.Process,
        container_id: str,
        bundle: Path,
        cgroup: str | None,
    ) -> None:
        """Kill conmon (runc dies with it: PDEATHSIG) and delete what runc created."""
        await kill_group(proc)
        pid = conmon_pid(bundle)
        if pid and _is_conmon(pid, container_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            with contextlib.suppress(errors.NotFound):
                await self.runc.run(["delete", "--force", container_id], timeout=CLEANUP_TIMEOUT)
        except errors.CRIError as e:
            log.warning("container %s: cleanup after a failed create: %s", container_id[:12], e)
        if cgroup:
            await _remove_cgroup_when_empty(cgroup)


def conmon_scope(container_id: str) -> str:
    return f"pycrid-conmon-{container_id}.scope"


async def _remove_cgroup_when_empty(cgroup: str, wait: float = 2.0) -> None:
    """Remove conmon's cgroup once the killed conmon has left it."""
    give_up = time.monotonic() + wait
    while conmoncgroup.populated(cgroup) and time.monotonic() < give_up:
        await asyncio.sleep(POLL_INTERVAL)
    conmoncgroup.remove_cgroup(cgroup)


async def _read_line(sock: socket.socket) -> bytes:
    """One line from conmon's sync pipe (up to end of file)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    data = b""
    while b"\n" not in data:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def _container_pid(report: bytes, container_id: str) -> int:
    if not report:
        raise errors.Internal(f"conmon for {container_id} exited without reporting a result")
    try:
        parsed = json.loads(report)
        pid = int(parsed["pid"])
    except (ValueError, KeyError, TypeError):
        raise errors.Internal(f"conmon for {container_id} reported {report[:200]!r}") from None
    if pid <= 0:
        message = str(parsed.get("message") or "runc create failed").strip()
        raise errors.Internal(f"runc create {container_id}: {message}")
    return pid


def _is_conmon(pid: int, container_id: str) -> bool:
    """True when ``pid`` is the conmon of this container (not a reused PID)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"conmon") and container_id.encode() in argv


def conmon_pid(bundle: Path) -> int | None:
    """The PID of the container's conmon, as conmon wrote it."""
    try:
        return int((bundle / CONMON_PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return None


def conmon_running(bundle: Path, container_id: str) -> bool:
    """True while the container's conmon runs."""
    pid = conmon_pid(bundle)
    return bool(pid) and _is_conmon(pid, container_id)  # type: ignore[arg-type]


def exit_code(persist_dir: Path) -> tuple[int, int] | None:
    """(exit code, finish time in ns) from conmon's exit file; None before the exit.

    The code is 128 + the signal for a killed container, -1 when conmon
    could not tell. The finish time is when conmon wrote the file (its ctime).
    """
    return read_exit_file(f"{persist_dir}/{EXIT_FILE}")


def read_exit_file(path: str) -> tuple[int, int] | None:
    """(exit code, finish time in ns) from one of conmon's exit files; None without one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        text = os.read(fd, 256).decode(errors="replace").strip()
        finished = os.fstat(fd).st_ctime_ns
    finally:
        os.close(fd)
    if not text:
        return None  # being written
    try:
        return int(text), finished
    except ValueError:
        raise errors.Internal(f"conmon's exit file {path} holds {text[:40]!r}") from None


def oom_killed(directory: Path) -> bool:
    """True when conmon saw the container killed for lack of memory (bundle or persist dir)."""
    return (directory / OOM_FILE).exists()


def _send_control(bundle: Path, kind: int, height: int = 0, width: int = 0) -> None:
    message = f"{kind} {height} {width}\n".encode()
    try:
        fd = os.open(bundle / CTL, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):  # no reader: conmon is gone
            raise errors.FailedPrecondition(
                f"container in {bundle.name} is not running (no conmon)"
            ) from None
        raise errors.Internal(f"cannot open conmon's control FIFO: {e}") from None
    try:
        os.write(fd, message)
    except OSError as e:
        raise errors.Internal(f"cannot write to conmon's control FIFO: {e}") from None
    finally:
        os.close(fd)


def resize(bundle: Path, width: int, height: int) -> None:
    """Resize the container's tty."""
    _send_control(bundle, CTL_RESIZE, height, width)


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


async def reopen_log(bundle: Path, log_path: str) -> None:
    """Make conmon open a new file at ``log_path``; return once it exists.

    kubelet renames the log before asking; conmon writes the new file
    under a temporary name and renames it into place, so the file at
    ``log_path`` is new once its inode differs from the one before.
    """
    limit = time_limit(REOPEN_TIMEOUT, "reopening the log")
    before = _inode(log_path)
    monitor = conmon_pid(bundle)
    _send_control(bundle, CTL_REOPEN_LOG)
    give_up = None if limit is None else time.monotonic() + limit
    while (now := _inode(log_path)) is None or now == before:
        # A container that just exited has a conmon that reads no more messages.
        if monitor and proctree.gone(monitor, zombie_too=True):
            raise errors.FailedPrecondition(f"container in {bundle.name} is not running")
        if give_up is not None and time.monotonic() > give_up:
            pending = " (its .tmp file exists)" if os.path.exists(log_path + ".tmp") else ""
            raise errors.DeadlineExceeded(
                f"conmon did not reopen {log_path} within {limit:.1f}s{pending}"
            )
        await asyncio.sleep(POLL_INTERVAL)
