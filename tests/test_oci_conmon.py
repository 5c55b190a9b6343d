"""Containers under the real conmon and runc: exit and OOM files, logs, attach, ctl."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.deadline import set_call_deadline
from pycrid.adapters.oci.runtime import conmon
from pycrid.adapters.oci.runtime.attach import attach
from pycrid.adapters.oci.runtime.conmon import Conmon
from pycrid.adapters.oci.runtime.conmoncgroup import hierarchy_dirs, remove_cgroup
from pycrid.adapters.streaming import SessionIO

from .test_oci_conmon_kit import (
    CGROUP_PARENT,
    CONMON,
    RUNC,
    CollectedOutput,
    OciKit,
    Resizes,
    ScriptedInput,
    bounded,
    exit_of,
    kit,
    process,
    requires_runtime,
    teardown_module,
    wait_for,
    wait_gone,
)

__all__ = ["kit", "teardown_module"]


def test_conmon_argv_follows_cri_o() -> None:
    monitor = Conmon("/usr/bin/conmon", "/usr/sbin/runc", Path("/run/pycrid/runc"))
    bundle, exits, persist = Path("/b"), Path("/x"), Path("/p")

    def argv(**kw: bool) -> list[str]:
        flags = {"tty": False, "stdin": False, "stdin_once": False, **kw}
        return monitor.argv("c1", bundle, "/l/0.log", exits, persist, name="n", **flags)

    base = argv()
    assert base[:7] == ["/usr/bin/conmon", "-b", "/b", "-c", "c1", "-u", "c1"]
    pairs = dict(itertools.pairwise(base))
    assert pairs["-r"] == "/usr/sbin/runc" and pairs["-l"] == "k8s-file:/l/0.log"
    assert pairs["-P"] == "/b/conmon.pid" and pairs["-p"] == "/b/pidfile"
    assert pairs["--exit-dir"] == "/x" and pairs["--persist-dir"] == "/p"
    runtime_args = [base[i + 1] for i, a in enumerate(base) if a == "--runtime-arg"]
    assert runtime_args == ["--root=/run/pycrid/runc", "--log=/b/runc.log", "--log-format=json"]
    assert "--full-attach" in base
    assert not {"-t", "-i", "--leave-stdin-open"} & set(base)
    assert argv(tty=True, stdin=True)[len(base) :] == ["-t"]
    assert argv(stdin=True)[len(base) :] == ["-i", "--leave-stdin-open"]
    assert argv(stdin=True, stdin_once=True)[len(base) :] == ["-i"]


LOG_LINE = re.compile(
    rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d (stdout|stderr) ([FP]) (.*)$"
)
TICKER = ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done"]


def log_entries(path: Path) -> list[tuple[str, str, str]]:
    """(stream, tag, message) of each line of a k8s-file log; fails on a malformed line."""
    entries = []
    for line in path.read_bytes().splitlines():
        match = LOG_LINE.match(line)
        assert match, f"malformed log line {line!r}"
        entries.append((match[1].decode(), match[2].decode(), match[3].decode()))
    return entries


@requires_runtime
@bounded(30)
async def test_exit_code_from_the_exit_file(kit: OciKit) -> None:
    started = await kit.create(["sh", "-c", "exit 3"])
    assert started.pid > 0
    assert conmon.exit_code(started.persist) is None
    before = time.time_ns()
    await kit.runc.start(started.id)
    assert await exit_of(started) == 3
    _, finished = conmon.exit_code(started.persist) or (0, 0)
    assert before <= finished <= time.time_ns()
    assert (kit.exits / started.id).read_text() == "3"
    assert not conmon.oom_killed(started.bundle)
    await wait_for(lambda: not conmon.conmon_running(started.bundle, started.id), what="conmon")


@requires_runtime
@bounded(30)
async def test_a_non_ascii_name_and_log_path_are_fine(kit: OciKit) -> None:
    """Pod metadata and log directories may hold any character; conmon parses them."""
    prepared = kit.prepare(["sh", "-c", "echo hi"])
    log_path = kit.logs / "pöd" / "0.log"
    log_path.parent.mkdir()
    pid = await kit.conmon.create(
        prepared.id,
        prepared.bundle,
        str(log_path),
        kit.exits,
        prepared.persist,
        tty=False,
        stdin=False,
        stdin_once=False,
        name="èó_08",
    )
    assert pid > 0
    await kit.runc.start(prepared.id)
    assert await exit_of(prepared) == 0
    await wait_for(lambda: b"hi" in log_path.read_bytes(), what="the log line")


def test_conmon_names_are_ascii() -> None:
    assert conmon.ascii_name("ns_web") == "ns_web"
    assert conmon.ascii_name("èó_08") == "\\xe8\\xf3_08"


@requires_runtime
@bounded(30)
async def test_killed_container_exits_137(kit: OciKit) -> None:
    started = await kit.run(["sh", "-c", "sh -c 'kill -9 $$'; exec sleep 1000"])
    # The inner shell killed itself; the container's init (pid 1) ignores its own SIGKILL.
    await asyncio.sleep(0.2)
    await kit.runc.kill(started.id, 9)
    assert await exit_of(started) == 137


@requires_runtime
@bounded(30)
async def test_log_has_both_streams_and_partial_lines(kit: OciKit) -> None:
    script = "echo hello; echo oops >&2; printf partial; sleep 0.2; echo; printf end"
    started = await kit.run(["sh", "-c", script])
    assert await exit_of(started) == 0
    entries = log_entries(started.log_path)
    assert ("stdout", "F", "hello") in entries
    assert ("stderr", "F", "oops") in entries
    assert ("stdout", "P", "partial") in entries
    assert entries[-1] == ("stdout", "P", "end")


@requires_runtime
@bounded(30)
async def test_attach_stdin_round_trip(kit: OciKit) -> None:
    started = await kit.run(["cat"], stdin=True, stdin_once=True)
    assert len(str(started.bundle / "attach")) > 108  # longer than a socket address may be
    out, err = CollectedOutput(), CollectedOutput()
    io = SessionIO(False, ScriptedInput(b"hello\n", delay=0.3), out, err, None)
    await attach(started.bundle, io)
    # Closing the client's stdin closed cat's (stdin_once): the container is done.
    assert await exit_of(started) == 0
    assert (bytes(out.data), bytes(err.data)) == (b"hello\n", b"")
    assert ("stdout", "F", "hello") in log_entries(started.log_path)


@requires_runtime
@bounded(30)
async def test_attach_keeps_streams_apart(kit: OciKit) -> None:
    script = "read x; echo out $x; echo err $x >&2"
    started = await kit.run(["sh", "-c", script], stdin=True, stdin_once=True)
    out, err = CollectedOutput(), CollectedOutput()
    await attach(started.bundle, SessionIO(False, ScriptedInput(b"it\n"), out, err, None))
    assert (bytes(out.data), bytes(err.data)) == (b"out it\n", b"err it\n")


@requires_runtime
@bounded(30)
async def test_attach_with_stdin_left_open(kit: OciKit) -> None:
    started = await kit.run(["cat"], stdin=True, stdin_once=False)
    watcher_out = CollectedOutput()
    watcher = asyncio.create_task(
        attach(started.bundle, SessionIO(False, None, watcher_out, None, None))
    )
    for word in (b"one\n", b"two\n"):
        io = SessionIO(False, ScriptedInput(word, delay=0.2), CollectedOutput(), None, None)
        # The session ends with the client's input; cat's stdin stays open.
        await attach(started.bundle, io, leave_stdin_open=True)
        await watcher_out.wait_for(word)
    assert not watcher.done()
    state = await kit.runc.state(started.id)
    assert state is not None and state.status == "running"
    entries = log_entries(started.log_path)
    assert ("stdout", "F", "one") in entries and ("stdout", "F", "two") in entries
    await kit.runc.kill(started.id, 9)
    await asyncio.wait_for(watcher, 10)  # conmon closed the socket


@requires_runtime
@bounded(30)
async def test_attach_large_input(kit: OciKit) -> None:
    started = await kit.run(["sh", "-c", "wc -c"], stdin=True, stdin_once=True)
    out = CollectedOutput()
    io = SessionIO(False, ScriptedInput(b"x" * 100_000, delay=0.2), out, None, None)
    await attach(started.bundle, io)
    assert bytes(out.data).strip() == b"100000"


@requires_runtime
@bounded(30)
async def test_tty_attach_and_resize(kit: OciKit) -> None:
    started = await kit.run(["sh"], tty=True, stdin=True)
    conmon.resize(started.bundle, 120, 50)
    size = ["stty", "-F", "/dev/console", "size"]
    seen = b""
    for _ in range(50):
        seen = (await kit.runc.exec_sync(started.id, process(size), timeout=5)).stdout
        if seen == b"50 120\n":
            break
        await asyncio.sleep(0.05)
    assert seen == b"50 120\n"
    out = CollectedOutput()
    stdin = ScriptedInput(b"stty size\n", b"exit 5\n", delay=0.5)
    await attach(started.bundle, SessionIO(True, stdin, out, None, Resizes((100, 40))))
    assert b"40 100\r\n" in out.data
    assert await exit_of(started) == 5


@requires_runtime
@bounded(30)
async def test_reopen_log(kit: OciKit) -> None:
    started = await kit.run(TICKER)
    await wait_for(lambda: b"tick 3" in started.log_path.read_bytes(), what="ticks")
    rotated = started.log_path.with_name(started.log_path.name + ".1")
    started.log_path.rename(rotated)
    await conmon.reopen_log(started.bundle, str(started.log_path))
    await wait_for(lambda: b"tick" in started.log_path.read_bytes(), what="ticks in the new log")
    size = rotated.stat().st_size
    await asyncio.sleep(0.3)
    assert rotated.stat().st_size == size
    assert log_entries(started.log_path)[0][2].startswith("tick")
    await kit.runc.kill(started.id, 9)
    await exit_of(started)
    with pytest.raises(errors.FailedPrecondition):
        await conmon.reopen_log(started.bundle, str(started.log_path))
    await wait_for(lambda: not conmon.conmon_running(started.bundle, started.id), what="exit")
    with pytest.raises(errors.FailedPrecondition):
        await attach(started.bundle, SessionIO(False, None, CollectedOutput(), None, None))


@requires_runtime
@bounded(30)
async def test_a_runc_failure_carries_runcs_message(kit: OciKit) -> None:
    with pytest.raises(errors.Internal) as raised:
        await kit.create(["/no/such"])
    message = str(raised.value)
    assert "/no/such" in message and "no such file or directory" in message
    container_id = kit.ids[-1]
    assert await kit.runc.state(container_id) is None
    bundle = kit.base / "bundles" / container_id
    pid = conmon.conmon_pid(bundle)
    assert pid is None or await wait_gone(pid)


@requires_runtime
@bounded(30)
async def test_a_hanging_runc_create_is_killed_at_the_deadline(kit: OciKit) -> None:
    pid_file = kit.base / "fake.pid"
    fake = kit.base / "fake-runc"
    script = f'case "$*" in *" create "*) echo $$ > {pid_file}; exec sleep 4321;; esac\n'
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    monitor = Conmon(CONMON, str(fake), kit.runc.root)
    prepared = kit.prepare(["true"])
    set_call_deadline(1.0)
    began = time.monotonic()
    try:
        with pytest.raises(errors.DeadlineExceeded):
            await monitor.create(
                prepared.id, prepared.bundle, str(prepared.log_path), kit.exits, prepared.persist
            )
    finally:
        set_call_deadline(None)
    assert time.monotonic() - began < 5
    assert await wait_gone(int(pid_file.read_text()), timeout=5)
    pid = conmon.conmon_pid(prepared.bundle)
    assert pid is not None and await wait_gone(pid, timeout=5)


@requires_runtime
@bounded(30)
async def test_oom_kill_is_recorded(kit: OciKit) -> None:
    eat = 'x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo survived'
    started = await kit.run(["sh", "-c", eat], memory_limit=16 << 20)
    assert await exit_of(started, timeout=20) == 137
    await wait_for(lambda: conmon.oom_killed(started.persist), what="the oom file")
    assert conmon.oom_killed(started.bundle)
    assert not any(e[2] == "survived" for e in log_entries(started.log_path))


@requires_runtime
@bounded(30)
async def test_conmon_in_its_own_cgroup(kit: OciKit) -> None:
    prepared = kit.prepare(["cat"])
    cgroup = f"/{CGROUP_PARENT}/conmon-{prepared.id}"
    await kit.conmon.create(
        prepared.id, prepared.bundle, str(prepared.log_path), kit.exits, prepared.persist,
        stdin=True, cgroup=cgroup,
    )  # fmt: skip
    pid = conmon.conmon_pid(prepared.bundle)
    assert pid is not None
    cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    assert f":memory:{cgroup}\n" in cgroups and f":pids:{cgroup}\n" in cgroups
    assert f":cpuset:{cgroup}\n" in cgroups
    directories = hierarchy_dirs(cgroup)
    await kit.runc.delete(prepared.id, force=True)
    await wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="conmon gone")
    remove_cgroup(cgroup)
    assert directories and not any(d.exists() for d in directories)


CREATE_AND_EXIT = """
import asyncio, json, sys
from pathlib import Path
from pycrid.adapters.oci.runtime.conmon import Conmon
from pycrid.adapters.oci.runtime.runc import Runc

conmon_bin, runc_bin, root, cid, bundle, log, exits, persist = sys.argv[1:]

async def main():
    pid = await Conmon(conmon_bin, runc_bin, Path(root)).create(
        cid, Path(bundle), log, Path(exits), Path(persist)
    )
    await Runc(runc_bin, Path(root)).start(cid)
    print(json.dumps({"pid": pid}))

asyncio.run(main())
"""


@requires_runtime
@bounded(30)
async def test_conmon_outlives_the_process_that_started_it(kit: OciKit) -> None:
    prepared = kit.prepare(["sleep", "1000"])
    argv = [
        *(CONMON, RUNC, str(kit.runc.root), prepared.id, str(prepared.bundle)),
        *(str(prepared.log_path), str(kit.exits), str(prepared.persist)),
    ]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CREATE_AND_EXIT, *argv],
        capture_output=True,
        timeout=20,
        check=True,
    )
    assert json.loads(done.stdout)["pid"] > 0
    pid = conmon.conmon_pid(prepared.bundle)
    assert pid is not None and conmon.conmon_running(prepared.bundle, prepared.id)
    assert os.getsid(pid) == pid
    assert os.getsid(pid) != os.getsid(0)
    state = await kit.runc.state(prepared.id)
    assert state is not None and state.status == "running"
    await kit.runc.kill(prepared.id, 9)
    assert await exit_of(prepared) == 137
