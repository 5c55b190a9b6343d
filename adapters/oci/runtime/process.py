"""A container's command line, environment and working directory.

Command line (containerd's rules, from Docker's): the CRI ``command``
replaces the image's Entrypoint and then the image's Cmd is dropped; the CRI
``args`` alone replace the Cmd; neither keeps Entrypoint+Cmd. An image
ENTRYPOINT of ``[""]`` means "no entrypoint".

Environment: PATH's default and HOSTNAME first, then the image's variables,
then the CRI's, each replacing an earlier one with the same name; HOME from
the user's passwd entry and TERM for a terminal are added when missing.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.oci.runtime.imageconfig import ImageConfig
from pycrid.api.cri import api_pb2 as cri

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def container_args(config: cri.ContainerConfig, image: ImageConfig) -> list[str]:
    command, args = list(config.command), list(config.args)
    if not command:
        if not args:
            args = list(image.cmd)
        if image.entrypoint != ("",):
            command = list(image.entrypoint)
    argv = command + args
    if not argv:
        raise InvalidArgument("no command specified: neither the container nor its image has one")
    if not argv[0]:
        raise InvalidArgument("the command's first word is empty")
    return argv


def sandbox_args(image: ImageConfig) -> list[str]:
    """The pause process: the image's Entrypoint+Cmd, which must not be empty."""
    argv = list(image.entrypoint) + list(image.cmd)
    if not argv or not argv[0]:
        raise InvalidArgument("the pause image has no entrypoint or cmd")
    return argv


def merge_env(base: Iterable[str], overrides: Iterable[str]) -> list[str]:
    """``base`` with each ``KEY=value`` of ``overrides`` replacing or appended; a bare
    ``KEY`` (no ``=``) removes the variable, as in Docker and containerd."""
    merged: dict[str, str | None] = {}
    for entry in [*base, *overrides]:
        key, sep, _ = entry.partition("=")
        merged[key] = entry if sep else None
    return [entry for entry in merged.values() if entry is not None]


def cri_env(envs: Iterable[cri.KeyValue]) -> list[str]:
    """``KEY=value`` for the CRI's variables; values are bytes on the wire."""
    return [f"{kv.key}={_text(kv.value)}" for kv in envs]


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def container_env(
    config: cri.ContainerConfig, image: ImageConfig, hostname: str, home: str
) -> list[str]:
    env = merge_env([f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"], image.env)
    env = merge_env(env, cri_env(config.envs))
    return add_missing(env, {"HOME": home, **({"TERM": "xterm"} if config.tty else {})})


def add_missing(env: list[str], defaults: dict[str, str]) -> list[str]:
    names = {entry.partition("=")[0] for entry in env}
    return env + [f"{key}={value}" for key, value in defaults.items() if key not in names]


def working_dir(config_dir: str, image_dir: str) -> str:
    """The CRI's directory, else the image's (made absolute, as Docker does), else /."""
    if config_dir:
        if not posixpath.isabs(config_dir):
            raise InvalidArgument(f"working_dir {config_dir[:64]!r} is not an absolute path")
        return config_dir
    if image_dir:
        return posixpath.normpath(posixpath.join("/", image_dir))
    return "/"
