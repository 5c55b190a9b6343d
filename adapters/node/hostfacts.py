"""What the host allows containers, read once at start-up.

Some hosts withhold what a runtime would normally grant (a capability
bounding set without CAP_SYS_RESOURCE, no AppArmor); both adapters translate
CRI configs with these facts in hand, and tests pass them in as values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CAP_SYS_RESOURCE = 24

# Linux capabilities by number (linux/capability.h).
CAPABILITY_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip


@dataclass(frozen=True)
class HostFacts:
    """What the host allows, read once at start-up."""

    apparmor: bool = False
    negative_oom_score_adj: bool = True
    bounding_capabilities: frozenset[str] | None = None
    """The capabilities pycrid may grant, when that is fewer than the kernel knows.

    None means all of them. Docker grants privileged containers, and ``ALL``,
    every capability it knows of; runc then fails with "unable to apply caps"
    on a host whose bounding set lacks some. There pycrid grants what the
    bounding set holds instead, as containerd does.
    """

    @classmethod
    def probe(cls, last_cap: int | None = None) -> HostFacts:
        """Read the host; ``last_cap`` caps the capabilities a backend knows by name."""
        return cls(
            apparmor=_apparmor_enabled(),
            negative_oom_score_adj=_has_cap_sys_resource(),
            bounding_capabilities=_bounding_capabilities(last_cap),
        )


def _apparmor_enabled() -> bool:
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


def _bounding_capabilities(last_cap: int | None) -> frozenset[str] | None:
    """``CAP_`` names in this process's bounding set, or None when it lacks none."""
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                break
        else:
            return None
    except (OSError, ValueError):
        return None
    if last_cap is not None:
        last = min(last, last_cap)
    known = CAPABILITY_NAMES[: min(last, len(CAPABILITY_NAMES) - 1) + 1]
    held = frozenset(f"CAP_{name}" for bit, name in enumerate(known) if mask >> bit & 1)
    return None if len(held) == len(known) else held


def _has_cap_sys_resource() -> bool:
    """Without CAP_SYS_RESOURCE in the bounding set, runc cannot lower oom_score_adj."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    except (OSError, ValueError):
        pass
    return True
