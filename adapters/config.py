"""pycrid's configuration: one TOML file, overridden by command-line flags.

The key names are a contract with users' files and scripts; add keys, never
rename them. Unknown keys are refused so that a typo does not silently fall
back to a default.
"""

from __future__ import annotations

import dataclasses
import grp
import hashlib
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_CONFIG_PATH = Path("/etc/pycrid/config.toml")
DEFAULT_STATE_DIR = "/var/lib/pycrid"
DEFAULT_RUN_DIR = "/run/pycrid"
ADAPTERS = ("docker", "oci")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
NETWORK_MODES = ("cni", "docker")
CGROUP_MANAGERS = ("systemd", "cgroupfs")
ADOPTABLE = ("cri-dockerd",)
FD_SCHEME = "fd://"
MAX_SECONDS = 24 * 3600.0


class ConfigError(Exception):
    """The configuration cannot be used; the message names the problem."""


@dataclass
class StreamingConfig:
    address: str = "127.0.0.1"
    port: int = 0
    tls_cert: str = ""
    tls_key: str = ""


@dataclass
class MetricsConfig:
    address: str = ""
    """``host:port`` of the Prometheus endpoint; empty: no endpoint."""


@dataclass
class NetworkConfig:
    mode: str = "cni"
    cni_conf_dir: str = "/etc/cni/net.d"
    cni_bin_dirs: list[str] = field(default_factory=lambda: ["/usr/lib/cni", "/opt/cni/bin"])


@dataclass
class DockerConfig:
    endpoint: str = "unix:///var/run/docker.sock"
    startup_timeout: float = 20.0
    """Seconds to wait for dockerd to answer when the daemon starts."""
    pull_progress_timeout: float = 60.0
    """Seconds a pull may go without a word from dockerd before it is cancelled."""
    adopt: list[str] = field(default_factory=list)
    """Other runtimes whose pods on this dockerd are taken over at start ("cri-dockerd")."""
    cri_dockerd_root: str = "/var/lib/cri-dockerd"
    """cri-dockerd's ``--cri-dockerd-root-directory`` (its sandbox files are below it)."""


@dataclass
class OciConfig:
    pull_progress_timeout: float = 60.0
    """Seconds a pull may make no progress before it is cancelled."""
    max_concurrent_downloads: int = 3
    """Layers of one pull fetched at the same time."""
    cgroup_manager: str = ""
    """"systemd" or "cgroupfs"; empty: systemd when the host booted with systemd."""


@dataclass
class LimitsConfig:
    """Caps on what one request may ask for, checked before any work is done.

    The defaults are beyond what kubelet sends: an environment above 6 MiB
    cannot be passed to execve on any kernel, Kubernetes supports 5,000
    services per namespace (7 variables each with service links), and pods
    with hundreds of ports, mounts or devices are already rare.
    """

    max_request_bytes: int = 16 << 20
    """Largest gRPC request the daemon reads; above it the call is RESOURCE_EXHAUSTED."""
    max_env_vars: int = 65536
    """Environment variables of one container."""
    max_env_bytes: int = 8 << 20
    """Their total size, names and values."""
    max_port_mappings: int = 512
    """Port mappings of one pod."""
    max_mounts: int = 1024
    """Mounts of one container."""
    max_devices: int = 1024
    """Devices of one container."""


# (minimum, maximum) of each limit.
LIMIT_RANGES = {
    "max_request_bytes": (1 << 20, 1 << 30),
    "max_env_vars": (1, 1 << 20),
    "max_env_bytes": (1 << 10, 1 << 30),
    "max_port_mappings": (0, 65535),
    "max_mounts": (0, 1 << 16),
    "max_devices": (0, 1 << 16),
}


@dataclass
class RegistryConfig:
    mirrors: list[str] = field(default_factory=list)
    insecure: bool = False
    upstream: bool = True
    """Whether the registry itself is tried after its mirrors (air-gapped hosts say no)."""


@dataclass
class Config:
    listen: str = "unix:///run/pycrid/pycrid.sock"
    adapter: str = "docker"
    state_dir: str = DEFAULT_STATE_DIR
    run_dir: str = DEFAULT_RUN_DIR
    """Defaults to one derived from ``state_dir`` when that is not the default."""
    log_level: str = "info"
    log_format: str = "text"
    """``text`` or ``json`` (one object a line)."""
    log_file: str = ""
    """Absolute path the log is appended to; empty: stderr."""
    socket_group: str = ""
    """Group (name or number) that owns the CRI socket; empty: the daemon's own group."""
    pause_image: str = "registry.k8s.io/pause:3.10"
    shutdown_grace: float = 10.0
    """Seconds in-flight calls get to finish after SIGTERM."""
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    docker: DockerConfig = field(default_factory=DockerConfig)
    oci: OciConfig = field(default_factory=OciConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    registries: dict[str, RegistryConfig] = field(default_factory=dict)

    @property
    def socket_path(self) -> Path:
        """The filesystem path of the Unix socket named by ``listen``."""
        return Path(self.listen.removeprefix("unix://"))

    @property
    def socket_activated(self) -> bool:
        """True when ``listen`` names a socket passed by systemd (``fd://``)."""
        return self.listen.startswith(FD_SCHEME)

    def registry(self, host: str) -> RegistryConfig:
        """Settings for one registry host (empty settings when unconfigured)."""
        return self.registries.get(host, RegistryConfig())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {
    "streaming": StreamingConfig,
    "metrics": MetricsConfig,
    "network": NetworkConfig,
    "docker": DockerConfig,
    "oci": OciConfig,
    "limits": LimitsConfig,
}


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key {where}{key!r}")
        default = getattr(cls(), key)
        if isinstance(default, bool) != isinstance(value, bool) or (
            not isinstance(value, type(default))
            and not (isinstance(default, float) and isinstance(value, int))
        ):
            raise ConfigError(
                f"{where}{key} must be a {type(default).__name__}, not {type(value).__name__}"
            )
        if isinstance(default, list) and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}{key} must be a list of strings")
        kwargs[key] = float(value) if isinstance(default, float) else value
    return cls(**kwargs)


def derived_run_dir(state_dir: str) -> str:
    """A run directory of its own for a daemon with a state directory of its own.

    Two daemons must never share one (each cleans it up at start-up), so a
    daemon given only ``--state-dir`` gets ``/run/pycrid-<hash of it>``.
    """
    digest = hashlib.sha256(os.path.abspath(state_dir).encode()).hexdigest()[:12]
    return f"{DEFAULT_RUN_DIR}-{digest}"


def parse_config(values: dict[str, Any]) -> Config:
    """Build a validated Config from a TOML document's values."""
    values = dict(values)
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        if name in values:
            raw = values.pop(name)
            if not isinstance(raw, dict):
                raise ConfigError(f"[{name}] must be a table")
            sections[name] = _build(cls, raw, f"{name}.")
    registries: dict[str, RegistryConfig] = {}
    raw_registries = values.pop("registries", {})
    if not isinstance(raw_registries, dict):
        raise ConfigError("[registries] must be a table of registry hosts")
    for host, raw in raw_registries.items():
        if not isinstance(raw, dict):
            raise ConfigError(f'[registries."{host}"] must be a table')
        registries[host] = _build(RegistryConfig, raw, f'registries."{host}".')
    config = _build(Config, values, "")
    if "run_dir" not in values and config.state_dir != DEFAULT_STATE_DIR:
        config.run_dir = derived_run_dir(config.state_dir)
    for name, section in sections.items():
        setattr(config, name, section)
    config.registries = registries
    validate(config)
    return config


def validate(config: Config) -> None:
    """Refuse values no part of pycrid can work with, before anything starts."""
    config.log_level = config.log_level.lower()
    _choice("adapter", config.adapter, ADAPTERS)
    _choice("log level", config.log_level, LOG_LEVELS)
    _choice("log format", config.log_format, LOG_FORMATS)
    if config.log_file:
        _absolute("log_file", config.log_file)
    if config.metrics.address:
        try:
            split_host_port(config.metrics.address)
        except ValueError as e:
            raise ConfigError(f"metrics.address {config.metrics.address!r}: {e}") from None
    _choice("network mode", config.network.mode, NETWORK_MODES)
    _validate_listen(config.listen)
    _validate_group(config.socket_group)
    for key, path in (
        ("state_dir", config.state_dir),
        ("run_dir", config.run_dir),
        ("network.cni_conf_dir", config.network.cni_conf_dir),
        *(("network.cni_bin_dirs", d) for d in config.network.cni_bin_dirs),
        ("streaming.tls_cert", config.streaming.tls_cert or "/"),
        ("streaming.tls_key", config.streaming.tls_key or "/"),
    ):
        _absolute(key, path)
    _seconds("shutdown_grace", config.shutdown_grace, allow_zero=True)
    _seconds("docker.startup_timeout", config.docker.startup_timeout)
    _seconds("docker.pull_progress_timeout", config.docker.pull_progress_timeout)
    _seconds("oci.pull_progress_timeout", config.oci.pull_progress_timeout)
    if config.oci.cgroup_manager:
        _choice("oci.cgroup_manager", config.oci.cgroup_manager, CGROUP_MANAGERS)
    if not 1 <= config.oci.max_concurrent_downloads <= 64:
        raise ConfigError(
            f"oci.max_concurrent_downloads {config.oci.max_concurrent_downloads} "
            "is out of range (1 to 64)"
        )
    for key, (low, high) in LIMIT_RANGES.items():
        value = getattr(config.limits, key)
        if not low <= value <= high:
            raise ConfigError(f"limits.{key} {value} is out of range ({low} to {high})")
    if not 0 <= config.streaming.port <= 65535:
        raise ConfigError(f"streaming.port {config.streaming.port} is out of range (0 to 65535)")
    try:
        ipaddress.ip_address(config.streaming.address)
    except ValueError:
        raise ConfigError(
            f"streaming.address {config.streaming.address!r} is not an IP address"
        ) from None
    if bool(config.streaming.tls_cert) != bool(config.streaming.tls_key):
        raise ConfigError("streaming.tls_cert and streaming.tls_key must be set together")
    _validate_docker_endpoint(config.docker.endpoint)
    for runtime in config.docker.adopt:
        _choice("docker.adopt runtime", runtime, ADOPTABLE)
    _absolute("docker.cri_dockerd_root", config.docker.cri_dockerd_root)
    if not config.pause_image.strip() or config.pause_image != config.pause_image.strip():
        raise ConfigError(f"pause_image {config.pause_image!r} is not an image reference")
    for host, registry in config.registries.items():
        for mirror in registry.mirrors:
            _validate_mirror(host, mirror)


def split_host_port(address: str) -> tuple[str, int]:
    """``"127.0.0.1:9090"`` or ``"[::1]:9090"`` as (IP address, port); ValueError if neither."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("must be host:port, an IP address and a port")
    host = host.removeprefix("[").removesuffix("]") if host.startswith("[") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range (0 to 65535)")
    return host, int(port)


def _choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r} (choose one of {', '.join(choices)})")


def _absolute(key: str, path: str) -> None:
    if not os.path.isabs(path):
        raise ConfigError(f"{key} must be an absolute path, not {path!r}")


def _seconds(key: str, value: float, allow_zero: bool = False) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    if not low_ok or value > MAX_SECONDS or value != value:
        floor = "0" if allow_zero else "above 0"
        raise ConfigError(f"{key} {value:g} is out of range ({floor} to {MAX_SECONDS:g} seconds)")


def _validate_listen(listen: str) -> None:
    if listen.startswith("unix://"):
        path = listen.removeprefix("unix://")
        if not os.path.isabs(path):
            raise ConfigError(f"listen {listen!r} must name an absolute socket path")
        return
    if listen.startswith(FD_SCHEME):
        name = listen.removeprefix(FD_SCHEME)
        if name and not all(c.isalnum() or c in "._-:" for c in name):
            raise ConfigError(f"listen {listen!r}: a socket name has letters, digits and ._-:")
        return
    raise ConfigError(f"listen must be a unix:// socket address or fd:// (systemd), not {listen!r}")


def _validate_group(group: str) -> None:
    if not group:
        return
    try:
        if group.isdigit():
            grp.getgrgid(int(group))
        else:
            grp.getgrnam(group)
    except KeyError:
        raise ConfigError(f"socket_group {group!r} does not exist on this host") from None


def _validate_docker_endpoint(endpoint: str) -> None:
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in ("unix", "tcp", "http", "https") or not rest:
        raise ConfigError(f"docker.endpoint {endpoint!r} must be unix:///path or tcp://host:port")
    if scheme == "unix" and not os.path.isabs(rest):
        raise ConfigError(f"docker.endpoint {endpoint!r} must name an absolute socket path")


def _validate_mirror(host: str, mirror: str) -> None:
    where = f'registries."{host}" mirror {mirror!r}'
    if not mirror.startswith(("http://", "https://")):
        raise ConfigError(f"{where} must start with http:// or https://")
    try:
        parsed = urlsplit(mirror)
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise ConfigError(f"{where} is not a URL: {e}") from None
    if not parsed.hostname:
        raise ConfigError(f"{where} has no host")


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read the config file (the default one may be absent) and apply flag overrides.

    ``overrides`` maps dotted keys (``"docker.endpoint"``) to values.
    """
    explicit = path is not None
    path = path or DEFAULT_CONFIG_PATH
    values: dict[str, Any] = {}
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        table = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            table = table.setdefault(part, {})
        table[leaf] = value
    return parse_config(values)
