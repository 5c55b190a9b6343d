"""The ``pycrid`` command: serve, config, version, doctor, compare, install-units.

Every failure before the daemon serves is one line on stderr,
``pycrid: error: ...``, and an exit status from ``server/exitcodes.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, NoReturn

import tomli_w

from pycrid.adapters.base import StartupError
from pycrid.adapters.config import (
    ADAPTERS,
    DEFAULT_CONFIG_PATH,
    LOG_FORMATS,
    LOG_LEVELS,
    NETWORK_MODES,
    Config,
    ConfigError,
    load_config,
)
from pycrid.adapters.version import PYCRID_VERSION
from pycrid.server import exitcodes
from pycrid.tools.compare.command import add_parser as add_compare_parser

DOCS_HINT = "Every key, its default and its flag: docs/configuration.md."


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, naming the command that was wrong."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(exitcodes.USAGE)


def _config_flags() -> _Parser:
    d = Config()
    flags = _Parser(add_help=False)
    add = flags.add_argument
    add("--config", type=Path, help=f"config file (default: {DEFAULT_CONFIG_PATH}, if present)")
    add("--listen", help=f"CRI socket: unix:///path, or fd:// under systemd (default: {d.listen})")
    add("--group", help="group owning the CRI socket (default: the daemon's)")
    add("--adapter", help=f"backend: {' or '.join(ADAPTERS)} (default: {d.adapter})")
    add("--state-dir", help=f"persistent state directory (default: {d.state_dir})")
    add("--run-dir", help=f"runtime files directory (default: {d.run_dir})")
    add("--log-level", help=f"{', '.join(LOG_LEVELS)}, any case (default: {d.log_level})")
    add("--log-format", help=f"{' or '.join(LOG_FORMATS)} (default: {d.log_format})")
    add("--log-file", help="append the log to this absolute path (default: stderr)")
    add(
        "--metrics-address",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)",
    )
    add("--docker-endpoint", help=f"Docker Engine API address (default: {d.docker.endpoint})")
    add(
        "--docker-startup-timeout",
        type=float,
        help=f"seconds to wait for dockerd at start (default: {d.docker.startup_timeout:g})",
    )
    add("--network-mode", help=f"{' or '.join(NETWORK_MODES)} (default: {d.network.mode})")
    add("--cni-conf-dir", help=f"CNI network configs (default: {d.network.cni_conf_dir})")
    add("--pause-image", help=f"pod sandbox image (default: {d.pause_image})")
    add("--streaming-port", type=int, help="streaming server port (default: 0, any free port)")
    return flags


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "listen": args.listen,
        "socket_group": args.group,
        "adapter": args.adapter,
        "state_dir": args.state_dir,
        "run_dir": args.run_dir,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "log_file": args.log_file,
        "metrics.address": args.metrics_address,
        "pause_image": args.pause_image,
        "docker.endpoint": args.docker_endpoint,
        "docker.startup_timeout": args.docker_startup_timeout,
        "network.mode": args.network_mode,
        "network.cni_conf_dir": args.cni_conf_dir,
        "streaming.port": args.streaming_port,
    }


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="pycrid",
        description="A Kubernetes CRI runtime server.",
        epilog="Exit statuses: 0 ok, 1 start-up failed, 2 bad command line, "
        "3 bad configuration, 4 doctor found a problem.",
    )
    top.add_argument("--version", action="version", version=f"pycrid {PYCRID_VERSION}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    flags = _config_flags()
    commands.add_parser(
        "serve",
        parents=[flags],
        help="run the CRI daemon",
        description="Run the CRI daemon until SIGTERM or SIGINT. Flags override the config file.",
        epilog=DOCS_HINT,
    )
    commands.add_parser(
        "config",
        parents=[flags],
        help="check and print the effective configuration",
        epilog=DOCS_HINT,
    )
    commands.add_parser(
        "version",
        parents=[flags],
        help="print the versions of pycrid, the CRI, Python, grpc, protobuf and the backend",
    )
    commands.add_parser(
        "doctor",
        parents=[flags],
        help="check that this node has what the configured adapter needs",
    )
    adopt = commands.add_parser(
        "adopt",
        parents=[flags],
        help="list the pods of another runtime on this dockerd that pycrid would take over",
        epilog=DOCS_HINT,
    )
    adopt.add_argument(
        "--check", action="store_true", required=True, help="a dry run: change nothing"
    )
    add_compare_parser(commands)
    units = commands.add_parser(
        "install-units", help="write pycrid.service and pycrid.socket for systemd"
    )
    units.add_argument(
        "--dir", type=Path, default=Path("/etc/systemd/system"), help="(default: %(default)s)"
    )
    units.add_argument("--group", default="", help="group owning the CRI socket")
    units.add_argument(
        "--no-socket",
        action="store_true",
        help="no socket activation: the service listens where the configuration says",
    )
    units.add_argument("--force", action="store_true", help="replace existing unit files")
    return top


def _fail(message: str, status: int = exitcodes.STARTUP_FAILED) -> int:
    print(f"pycrid: error: {message}", file=sys.stderr)
    return status


def run_serve(config: Config) -> int:
    from pycrid.server.daemon import serve
    from pycrid.server.logsetup import setup_logging

    try:
        setup_logging(config.log_level, config.log_format, config.log_file)
    except OSError as e:
        return _fail(f"cannot open log_file {config.log_file}: {e.strerror}")
    try:
        asyncio.run(serve(config))
    except StartupError as e:
        return _fail(str(e))
    return exitcodes.OK


def _version(args: argparse.Namespace) -> int:
    from pycrid.tools.versioninfo import version_lines

    try:
        config: Config | None = load_config(args.config, _overrides(args))
    except ConfigError as e:
        print(f"(backend not asked: {e})", file=sys.stderr)
        config = None
    print("\n".join(version_lines(config)))
    return exitcodes.OK


def _install_units(args: argparse.Namespace) -> int:
    from pycrid.tools.installunits import install_units

    try:
        written = install_units(
            args.dir, socket_activation=not args.no_socket, group=args.group, force=args.force
        )
    except OSError as e:
        return _fail(str(e))
    for path in written:
        print(f"wrote {path}")
    enable = "pycrid.service" if args.no_socket else "pycrid.socket pycrid.service"
    print(f"next: systemctl daemon-reload && systemctl enable --now {enable}")
    return exitcodes.OK


def _adopt_check(config: Config) -> int:
    from pycrid.adapters.docker.adopt import check
    from pycrid.adapters.errors import CRIError

    try:
        found = asyncio.run(check(config))
    except (CRIError, StartupError) as e:
        return _fail(f"cannot ask docker: {e}")
    lines = found.lines()
    print("\n".join(lines) if lines else "nothing made by cri-dockerd on this dockerd")
    return exitcodes.OK


def main(argv: list[str] | None = None) -> int:
    top = parser()
    args, extra = top.parse_known_args(argv)
    if extra:
        # Name the command whose flags were wrong, not the top-level usage.
        commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
        chosen = commands.choices.get(args.command, top) if args.command else top
        chosen.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        top.print_help()
        return exitcodes.OK
    if args.command == "version":
        return _version(args)
    if args.command == "install-units":
        return _install_units(args)
    if args.command == "compare":
        from pycrid.tools.compare.command import run as run_compare

        return run_compare(args)
    try:
        config = load_config(args.config, _overrides(args))
    except ConfigError as e:
        return _fail(str(e), exitcodes.CONFIG_INVALID)
    if args.command == "config":
        print(tomli_w.dumps(config.to_dict()), end="")
        return exitcodes.OK
    if args.command == "adopt":
        return _adopt_check(config)
    if args.command == "doctor":
        from pycrid.tools.doctor.report import run_doctor

        return run_doctor(config)
    return run_serve(config)


if __name__ == "__main__":
    sys.exit(main())
