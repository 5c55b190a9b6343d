"""Running CNI plugins: the network of a pod, for any adapter.

The CNI specification (https://www.cni.dev/docs/spec/) in the parts pycrid
needs: a network configuration list is loaded from ``cni_conf_dir`` (the
lexically first ``.conflist``, ``.conf`` or ``.json`` that parses), each
plugin binary is found in ``cni_bin_dirs``, and ADD runs the plugins in order,
each one getting the previous one's result as ``prevResult``; DEL runs them in
reverse with the cached result; CHECK runs them in order with it. Capability
arguments (``portMappings``) reach only the plugins that declare them.

The caller keeps the configuration that ADD used and the result it returned
(on disk), and hands both back to DEL and CHECK: pod IPs are read from that
result, never by entering the namespace.

``parse_result`` and ``error_message`` are plain functions over the plugins'
output bytes, tested without running anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrid.adapters import errors
from pycrid.adapters.backendmetrics import timed_cni_call
from pycrid.adapters.deadline import seconds_left
from pycrid.adapters.node.dirwatch import DirectoryWatch

log = logging.getLogger("pycrid.cni")

CONFIG_SUFFIXES = (".conflist", ".conf", ".json")
DEFAULT_TIMEOUT = 60.0
CHAINING_SINCE = (0, 3, 0)
PREV_RESULT_ON_DEL_SINCE = (0, 4, 0)


class NetworkNotReady(errors.FailedPrecondition):
    """No usable CNI configuration: pods cannot get a network."""


class PluginError(errors.Internal):
    """A CNI plugin failed; the message is the plugin's own."""


@dataclass(frozen=True)
class NetworkList:
    """A CNI network configuration list, as loaded from one file."""

    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cniVersion": self.cni_version, "plugins": list(self.plugins)}

    @classmethod
    def from_dict(cls, value: dict[str, Any], source: str = "") -> NetworkList:
        """Validate a parsed ``.conflist`` (or a single-plugin ``.conf``)."""
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        if "plugins" not in value and "type" in value:
            value = {
                "name": value.get("name"),
                "cniVersion": value.get("cniVersion", "0.2.0"),
                "plugins": [value],
            }
        name = value.get("name")
        plugins = value.get("plugins")
        if not isinstance(name, str) or not name:
            raise ValueError("the network has no name")
        if not isinstance(plugins, list) or not plugins:
            raise ValueError("the network has no plugins")
        for plugin in plugins:
            if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
                raise ValueError("every plugin needs a type")
        return cls(
            name=name,
            cni_version=str(value.get("cniVersion") or "0.2.0"),
            plugins=tuple(plugins),
            source=source,
        )


@dataclass(frozen=True)
class Attachment:
    """One pod's network attachment: who, in which namespace, on which interface."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: dict[str, str] = field(default_factory=dict)
    """CNI_ARGS, e.g. K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID."""


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def load_network(conf_dir: str | Path) -> NetworkList:
    """The network configuration pods get: the first valid file in ``conf_dir``."""
    directory = Path(conf_dir)
    try:
        candidates = sorted(p for p in directory.iterdir() if p.suffix in CONFIG_SUFFIXES)
    except OSError:
        candidates = []
    problems = []
    for path in candidates:
        try:
            return NetworkList.from_dict(json.loads(path.read_bytes()), source=str(path))
        except (OSError, ValueError) as e:
            problems.append(f"{path.name}: {e}")
    if problems:
        raise NetworkNotReady(f"no valid CNI network config in {directory} ({'; '.join(problems)})")
    raise NetworkNotReady(f"no CNI network config found in {directory}")


def find_plugin(plugin_type: str, bin_dirs: list[str]) -> Path:
    if "/" in plugin_type or plugin_type in ("", ".", ".."):
        raise NetworkNotReady(f"invalid CNI plugin type {plugin_type!r}")
    for directory in bin_dirs:
        candidate = Path(directory) / plugin_type
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NetworkNotReady(f"CNI plugin {plugin_type!r} not found in {', '.join(bin_dirs)}")


@dataclass
class _Checked:
    """The last answer of ``network_problem`` for one set of directories."""

    mark: tuple[object, ...]
    problem: str
    watch: DirectoryWatch | None
    linked: bool
    """A config entry is a symbolic link: no watch is tried while one is."""


MAX_WATCHED = 4
"""Directory sets followed with inotify at once (a daemon has one; tests make many)."""

_checked: dict[tuple[str, tuple[str, ...]], _Checked] = {}
_checked_lock = threading.Lock()


def network_problem(conf_dir: str, bin_dirs: list[str]) -> str:
    """Why pods cannot get a CNI network right now, or "" when it can.

    kubelet asks Status every few seconds. The directories are followed with
    inotify: while nothing in them changed, the last answer stands at the
    cost of one system call. Otherwise (and where they cannot be followed)
    they are looked at, and the config read and its plugins looked up again
    only when an entry of the config directory or one of the plugin
    directories changed since the last answer.
    """
    key = (conf_dir, tuple(bin_dirs))
    with _checked_lock:
        kept = _checked.get(key)
        if kept is not None and kept.watch is not None and not kept.watch.changed():
            return kept.problem
        watch = kept.watch if kept is not None else None
        if watch is not None and watch.broken:
            watch.close()
            watch = None
        if watch is None and (kept is None or not kept.linked):
            # Made before the directories are looked at: what changes meanwhile shows next time.
            watch = _new_watch(key)
        mark, linked = _fingerprint(conf_dir, bin_dirs)
        if linked and watch is not None:  # a config behind a symlink can change unseen
            watch.close()
            watch = None
        if kept is not None and kept.mark == mark:
            problem = kept.problem
        else:
            problem = _network_problem(conf_dir, bin_dirs)
        _checked.pop(key, None)
        _checked[key] = _Checked(mark, problem, watch, linked)
        return problem


def _new_watch(key: tuple[str, tuple[str, ...]]) -> DirectoryWatch | None:
    followed = [k for k, kept in _checked.items() if kept.watch is not None and k != key]
    for oldest in followed[: max(0, len(followed) - MAX_WATCHED + 1)]:
        old = _checked.pop(oldest)
        if old.watch is not None:
            old.watch.close()
    try:
        return DirectoryWatch((key[0], *key[1]))
    except OSError:
        return None


def _fingerprint(conf_dir: str, bin_dirs: list[str]) -> tuple[tuple[object, ...], bool]:
    """What changes when a config file or a plugin directory changes; and whether a
    config entry is a symbolic link."""
    marks: list[object] = []
    linked = False
    for directory in (conf_dir, *bin_dirs):
        try:
            st = os.stat(directory)
        except OSError:
            marks.append(None)
        else:
            marks.append((st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
    with contextlib.suppress(OSError), os.scandir(conf_dir) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                linked = linked or entry.is_symlink()
                st = entry.stat()
                marks.append((entry.name, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size))
    return tuple(marks), linked


def _network_problem(conf_dir: str, bin_dirs: list[str]) -> str:
    try:
        network = load_network(conf_dir)
        for plugin in network.plugins:
            find_plugin(plugin["type"], bin_dirs)
    except NetworkNotReady as e:
        return str(e)
    return ""


def error_message(stdout: bytes, stderr: bytes, returncode: int) -> str:
    """The message of a failed plugin: its JSON error, else its output."""
    with contextlib.suppress(ValueError, AttributeError):
        error = json.loads(stdout)
        message = str(error.get("msg") or "")
        if error.get("details"):
            message += f": {error['details']}"
        if message:
            return f"{message} (code {error.get('code', '?')})"
    text = (stdout or stderr).decode(errors="replace").strip()
    return text or f"exit status {returncode}"


def parse_result(stdout: bytes) -> dict[str, Any]:
    """A plugin's ADD result; raises PluginError when it is not a JSON object."""
    try:
        result = json.loads(stdout or b"{}")
    except ValueError as e:
        raise PluginError(f"CNI plugin returned invalid JSON: {e}") from None
    if not isinstance(result, dict):
        raise PluginError("CNI plugin returned a result that is not an object")
    return result


def result_ips(result: dict[str, Any], ifname: str = "eth0") -> list[str]:
    """The pod's addresses in a CNI result (any version), IPv4 first.

    Addresses on a named interface other than ``ifname`` (such as ``lo``)
    are left out.
    """
    found: list[str] = []
    interfaces = result.get("interfaces") or []
    for entry in result.get("ips") or []:
        index = entry.get("interface")
        named = isinstance(index, int) and 0 <= index < len(interfaces)
        if named and interfaces[index].get("name") not in (ifname, None):
            continue
        found.append(entry.get("address", ""))
    for legacy in ("ip4", "ip6"):  # CNI 0.1 and 0.2
        if isinstance(result.get(legacy), dict):
            found.append(result[legacy].get("ip", ""))
    ips = []
    for address in found:
        with contextlib.suppress(ValueError):
            ip = str(ipaddress.ip_interface(address).ip)
            if ip not in ips:
                ips.append(ip)
    return sorted(ips, key=lambda ip: ipaddress.ip_address(ip).version)


class CniRunner:
    """Runs the plugins of a network list for ADD, DEL and CHECK."""

    def __init__(self, bin_dirs: list[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.bin_dirs = list(bin_dirs)
        self.timeout = timeout

    def _plugin_config(
        self,
        network: NetworkList,
        plugin: dict[str, Any],
        prev_result: dict[str, Any] | None,
        capabilities: dict[str, Any],
    ) -> bytes:
        config = dict(plugin)
        config["name"] = network.name
        config["cniVersion"] = network.cni_version
        if prev_result is not None:
            config["prevResult"] = prev_result
        declared = plugin.get("capabilities") or {}
        runtime_config = {
            name: value for name, value in capabilities.items() if declared.get(name) is True
        }
        if runtime_config:
            config["runtimeConfig"] = runtime_config
        return json.dumps(config).encode()

    def _env(self, command: str, attachment: Attachment) -> dict[str, str]:
        cni_args = ";".join(["IgnoreUnknown=1", *(f"{k}={v}" for k, v in attachment.args.items())])
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": attachment.container_id,
            "CNI_NETNS": attachment.netns,
            "CNI_IFNAME": attachment.ifname,
            "CNI_ARGS": cni_args,
            "CNI_PATH": os.pathsep.join(self.bin_dirs),
        }

    async def _run(
        self, command: str, plugin_type: str, attachment: Attachment, stdin: bytes
    ) -> bytes:
        with timed_cni_call(command, plugin_type):
            return await self._invoke(command, plugin_type, attachment, stdin)

    async def _invoke(
        self, command: str, plugin_type: str, attachment: Attachment, stdin: bytes
    ) -> bytes:
        binary = find_plugin(plugin_type, self.bin_dirs)
        process = await asyncio.create_subprocess_exec(
            str(binary),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env(command, attachment),
        )
        left = seconds_left()
        timeout = self.timeout if left is None else max(0.0, min(self.timeout, left))
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout)
        except (TimeoutError, asyncio.CancelledError) as e:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            if isinstance(e, TimeoutError):
                raise errors.DeadlineExceeded(
                    f"CNI {command} of plugin {plugin_type} did not finish in {timeout:.1f}s"
                ) from None
            raise
        if process.returncode != 0:
            raise PluginError(
                f"CNI {command} of plugin {plugin_type}: "
                + error_message(stdout, stderr, process.returncode or 0)
            )
        return stdout

    async def add(
        self, network: NetworkList, attachment: Attachment, capabilities: dict[str, Any]
    ) -> dict[str, Any]:
        """Run ADD through the list; the final result."""
        chained = version_tuple(network.cni_version) >= CHAINING_SINCE
        result: dict[str, Any] | None = None
        for plugin in network.plugins:
            stdin = self._plugin_config(network, plugin, result if chained else None, capabilities)
            output = await self._run("ADD", plugin["type"], attachment, stdin)
            if output.strip() or result is None:
                result = parse_result(output)
        return result or {}

    async def delete(
        self,
        network: NetworkList,
        attachment: Attachment,
        capabilities: dict[str, Any],
        prev_result: dict[str, Any] | None,
    ) -> None:
        """Run DEL through the list in reverse; every plugin runs, the first failure is raised."""
        if version_tuple(network.cni_version) < PREV_RESULT_ON_DEL_SINCE:
            prev_result = None
        failure: PluginError | None = None
        for plugin in reversed(network.plugins):
            stdin = self._plugin_config(network, plugin, prev_result, capabilities)
            try:
                await self._run("DEL", plugin["type"], attachment, stdin)
            except PluginError as e:
                log.warning("%s", e)
                failure = failure or e
        if failure is not None:
            raise failure

    async def check(
        self,
        network: NetworkList,
        attachment: Attachment,
        capabilities: dict[str, Any],
        prev_result: dict[str, Any],
    ) -> None:
        """Run CHECK (CNI 0.4.0 and later); raises PluginError when the network is broken."""
        if version_tuple(network.cni_version) < PREV_RESULT_ON_DEL_SINCE:
            return
        for plugin in network.plugins:
            stdin = self._plugin_config(network, plugin, prev_result, capabilities)
            await self._run("CHECK", plugin["type"], attachment, stdin)
