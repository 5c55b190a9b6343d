"""The kernel's own word on which cgroups had a task OOM-killed, from /dev/kmsg.

A memory cgroup's OOM count dies with the cgroup, and Docker removes a
container's cgroup before it reports the exit; dockerd's own ``oom`` event can
come after the ``die`` (its shim watches the cgroup and the exit on separate
paths), and kubelet keeps the first reason it sees. The kernel logs every
OOM kill, with the victim's memory cgroup, before the victim dies, so by the
time any runtime reports the exit the line is already in the log (kubelet's
own OOM watcher reads the same lines).

The log is read without blocking, only when an exit needs the answer, from
where it stood when pycrid started. The kernel rate-limits the summary line
(ten in five seconds); past that, the runtime's own event is the fallback.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger("pycrid.node.oomlog")

KMSG = Path("/dev/kmsg")
RECORD_SIZE = 8192
"""One read of /dev/kmsg returns one record; the kernel caps a record below this."""
KEEP = 512
"""Cgroups remembered: far more than can exit between two of pycrid's reads."""

_TASK_MEMCG = re.compile(r"(?:^|[;,])oom-kill:.*?[,:]task_memcg=([^,\s]*)")


def cgroup_name(path: str) -> str:
    """The container ID in a memory cgroup path, as runtimes name their cgroups:
    ``/docker/<id>``, ``.../docker-<id>.scope``, ``.../<id>``."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    name = name.removesuffix(".scope")
    for prefix in ("docker-", "cri-containerd-", "crio-", "pycrid-"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


class KernelOomLog:
    """Which cgroups the kernel logged an OOM kill in since this was made."""

    def __init__(self, path: Path = KMSG) -> None:
        self._killed: OrderedDict[str, None] = OrderedDict()
        self._fd = -1
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as e:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            log.info("%s cannot be read (%s): OOM kills known from events only", path, e.strerror)

    @property
    def available(self) -> bool:
        return self._fd >= 0

    def killed_in(self, container_id: str) -> bool:
        """Whether a task of ``container_id``'s cgroup was OOM-killed."""
        self._read()
        return container_id in self._killed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _read(self) -> None:
        while self._fd >= 0:
            try:
                record = os.read(self._fd, RECORD_SIZE)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EPIPE:
                    continue  # the ring overwrote records before they were read
                log.warning("reading the kernel log: %s; OOM kills known from events only", e)
                self.close()
                return
            if not record:
                return
            for line in record.decode(errors="replace").splitlines():
                self._take(line)

    def _take(self, line: str) -> None:
        match = _TASK_MEMCG.search(line)
        if match is None:
            return
        name = cgroup_name(match.group(1))
        self._killed[name] = None
        self._killed.move_to_end(name)
        while len(self._killed) > KEEP:
            self._killed.popitem(last=False)
