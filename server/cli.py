"""The ``pycrid`` command: serve, version, config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import tomli_w

from pycrid.adapters.base import StartupError
from pycrid.adapters.config import ADAPTERS, LOG_LEVELS, Config, ConfigError, load_config
from pycrid.adapters.version import KUBELET_API_VERSION, PYCRID_VERSION, RUNTIME_API_VERSION


def _config_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--config", type=Path, help="config file (default /etc/pycrid/config.toml)")
    flags.add_argument("--listen", help="CRI socket, unix:///path")
    flags.add_argument("--adapter", help=f"backend: {' or '.join(ADAPTERS)}")
    flags.add_argument("--state-dir", help="persistent state directory")
    flags.add_argument("--run-dir", help="runtime files directory")
    flags.add_argument("--log-level", help=f"one of {', '.join(LOG_LEVELS)}")
    flags.add_argument("--docker-endpoint", help="Docker Engine API address")
    flags.add_argument(
        "--docker-startup-timeout", type=float, help="seconds to wait for dockerd at start"
    )
    flags.add_argument("--network-mode", help="docker adapter networking: cni or docker")
    flags.add_argument("--cni-conf-dir", help="directory of CNI network configs")
    flags.add_argument("--pause-image", help="image of the pod sandbox container")
    flags.add_argument("--streaming-port", type=int, help="streaming server port (0: any)")
    return flags


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "listen": args.listen,
        "adapter": args.adapter,
        "state_dir": args.state_dir,
        "run_dir": args.run_dir,
        "log_level": args.log_level,
        "pause_image": args.pause_image,
        "docker.endpoint": args.docker_endpoint,
        "docker.startup_timeout": args.docker_startup_timeout,
        "network.mode": args.network_mode,
        "network.cni_conf_dir": args.cni_conf_dir,
        "streaming.port": args.streaming_port,
    }


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="pycrid", description="A Kubernetes CRI runtime server.")
    commands = top.add_subparsers(dest="command", required=True)
    flags = _config_flags()
    commands.add_parser("serve", parents=[flags], help="run the CRI daemon")
    commands.add_parser("config", parents=[flags], help="print the effective configuration")
    commands.add_parser("version", help="print pycrid's version")
    return top


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Libraries stay at WARNING; --log-level is about pycrid's own lines.
    logging.getLogger("pycrid").setLevel(getattr(logging, level.upper()))


def _fail(message: str) -> int:
    print(f"pycrid: error: {message}", file=sys.stderr)
    return 1


def run_serve(config: Config) -> int:
    from pycrid.server.daemon import serve

    _setup_logging(config.log_level)
    try:
        asyncio.run(serve(config))
    except StartupError as e:
        return _fail(str(e))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "version":
        print(f"pycrid {PYCRID_VERSION} (CRI {RUNTIME_API_VERSION}, API {KUBELET_API_VERSION})")
        return 0
    try:
        config = load_config(args.config, _overrides(args))
    except ConfigError as e:
        return _fail(str(e))
    if args.command == "config":
        print(tomli_w.dumps(config.to_dict()), end="")
        return 0
    return run_serve(config)


if __name__ == "__main__":
    sys.exit(main())
