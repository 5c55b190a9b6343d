"""A container's capability sets, from the CRI's add/drop lists and the host's bounding set.

containerd's rules: start from its 14 defaults; ``ALL`` in add grants every
capability and ``ALL`` in drop removes every one, both before the named
entries, so ``add [ALL], drop [CHOWN]`` is everything but CAP_CHOWN. The CRI
spells names without ``CAP_``. A privileged container gets every capability.

pycrid then keeps only what the host's bounding set holds (runc fails with
"unable to apply caps" otherwise), and says what it left out. Ambient
capabilities (``add_ambient_capabilities``) go into all five sets: the kernel
raises an ambient capability only if it is permitted and inheritable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.node.hostfacts import CAPABILITY_NAMES
from pycrid.api.cri import api_pb2 as cri

KNOWN = tuple(f"CAP_{name}" for name in CAPABILITY_NAMES)
ORDER = {name: number for number, name in enumerate(KNOWN)}
DEFAULT_CAPABILITIES = frozenset(
    f"CAP_{name}"
    for name in (
        "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
        "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
        "AUDIT_WRITE",
    )
)  # fmt: skip
"""containerd's defaults (Docker's too)."""


@dataclass(frozen=True)
class CapabilitySets:
    granted: tuple[str, ...]
    """Bounding, effective and permitted, in capability-number order."""
    ambient: tuple[str, ...] = ()
    """Inheritable and ambient."""
    withheld: tuple[str, ...] = field(default=(), compare=False)
    """Asked for but not in the host's bounding set."""

    def to_oci(self) -> dict[str, Any]:
        return {
            "bounding": list(self.granted),
            "effective": list(self.granted),
            "permitted": list(self.granted),
            "inheritable": list(self.ambient),
            "ambient": list(self.ambient),
        }


def capability_name(name: str) -> str:
    """``CAP_X`` for the CRI's ``x``, ``X`` or ``CAP_X``; unknown names are refused."""
    upper = name.upper()
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in ORDER:
        raise InvalidArgument(f"unknown capability {name[:64]!r}")
    return full


def capability_sets(
    capability: cri.Capability,
    privileged: bool,
    host_bounding: frozenset[str] | None,
) -> CapabilitySets:
    """The sets for a container; ``host_bounding`` None means the host holds every one."""
    available = set(KNOWN) if host_bounding is None else set(host_bounding) & set(KNOWN)
    if privileged:
        return CapabilitySets(_ordered(available))
    wanted = set(DEFAULT_CAPABILITIES)
    added = [n for n in capability.add_capabilities if n.upper() != "ALL"]
    dropped = [n for n in capability.drop_capabilities if n.upper() != "ALL"]
    if len(added) < len(capability.add_capabilities):
        wanted = set(available)
    if len(dropped) < len(capability.drop_capabilities):
        wanted = set()
    wanted |= {capability_name(n) for n in added}
    wanted -= {capability_name(n) for n in dropped}
    ambient = {capability_name(n) for n in capability.add_ambient_capabilities}
    wanted |= ambient
    return CapabilitySets(
        granted=_ordered(wanted & available),
        ambient=_ordered(ambient & available),
        withheld=_ordered(wanted - available),
    )


def _ordered(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=ORDER.__getitem__))
