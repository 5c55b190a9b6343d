"""The network figures of a process's network namespace, from /proc/<pid>/net/dev."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class InterfaceSample:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int
    rx_packets: int = field(default=0, compare=False)
    tx_packets: int = field(default=0, compare=False)
    """Packets: only the CRI metrics use them (the stats messages have no place for them)."""


def parse_net_dev(text: str) -> list[InterfaceSample]:
    """/proc/<pid>/net/dev, one entry per interface."""
    interfaces = []
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        values = rest.split()
        if not sep or len(values) < 16 or not all(v.isdigit() for v in values):
            continue
        interfaces.append(
            InterfaceSample(
                name=name.strip(),
                rx_bytes=int(values[0]),
                rx_errors=int(values[2]),
                tx_bytes=int(values[8]),
                tx_errors=int(values[10]),
                rx_packets=int(values[1]),
                tx_packets=int(values[9]),
            )
        )
    return interfaces


def read_net_dev(pid: int) -> list[InterfaceSample] | None:
    """The interfaces of ``pid``'s network namespace; None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/net/dev").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    return parse_net_dev(text)
