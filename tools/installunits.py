"""``pycrid install-units``: write the systemd units shipped with pycrid.

The units are package data (``pycrid/tools/units/``). The shipped service runs
``/usr/local/bin/pycrid``; the written one runs the pycrid that is installing
it, so a virtualenv or ``pip install --prefix`` needs no hand edits.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

SHIPPED_BINARY = "/usr/local/bin/pycrid"
UNIT_NAMES = ("pycrid.service", "pycrid.socket")
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")


def unit_text(name: str) -> str:
    """A unit file as shipped."""
    return resources.files("pycrid.tools").joinpath("units", name).read_text()


def this_pycrid() -> str:
    """The command that runs this installation of pycrid."""
    script = Path(sys.executable).parent / "pycrid"
    if script.is_file():
        return str(script)
    return f"{sys.executable} -m pycrid.tools.cli"


def render_units(command: str, socket_activation: bool = True, group: str = "") -> dict[str, str]:
    """The unit files to write, by name.

    Without socket activation there is no ``pycrid.socket``, and the service
    listens where the configuration says (``listen``).
    """
    service = unit_text("pycrid.service").replace(SHIPPED_BINARY, command)
    units = {}
    if socket_activation:
        socket_unit = unit_text("pycrid.socket")
        if group:
            socket_unit = socket_unit.replace("SocketGroup=root", f"SocketGroup={group}")
        units["pycrid.socket"] = socket_unit
    else:
        lines = []
        for line in service.splitlines():
            if line == "Requires=pycrid.socket":
                continue
            if line == "Also=pycrid.socket":
                # Without a socket, boot must start it (and waits for its READY=1).
                line = "WantedBy=multi-user.target"
            if line.startswith("ExecStart="):
                line = line.replace(" --listen fd://", f" --group {group}" if group else "")
            lines.append(line.replace(" pycrid.socket", ""))
        service = "\n".join(lines) + "\n"
    units["pycrid.service"] = service
    return units


def install_units(
    directory: Path,
    command: str | None = None,
    socket_activation: bool = True,
    group: str = "",
    force: bool = False,
) -> list[Path]:
    """Write the units into ``directory``; refuse to overwrite unless ``force``."""
    units = render_units(command or this_pycrid(), socket_activation, group)
    targets = [directory / name for name in units]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} already exist (--force replaces them)")
    directory.mkdir(parents=True, exist_ok=True)
    for target in targets:
        target.write_text(units[target.name])
        target.chmod(0o644)
    return targets
