"""Checks of pod networking (CNI) and of the registry mirrors."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from pycrid.adapters.config import Config
from pycrid.adapters.node.cni import NetworkNotReady, find_plugin, load_network
from pycrid.tools.doctor.result import Result, failed, passed

MIRROR_TIMEOUT = 3.0


def check_cni(config: Config) -> list[Result]:
    net = config.network
    if config.adapter == "docker" and net.mode == "docker":
        return [passed("CNI", "not used (network.mode = docker: Docker's own bridge)")]
    try:
        network = load_network(net.cni_conf_dir)
    except NetworkNotReady as e:
        return [
            failed(
                "CNI config",
                str(e),
                f"put a network config (.conflist) into {net.cni_conf_dir}: the cluster's "
                "network add-on writes one, or copy docs/cni/10-pycrid-bridge.conflist",
            )
        ]
    results = [passed("CNI config", f"{network.name} from {network.source}")]
    missing = []
    for plugin in network.plugins:
        try:
            find_plugin(str(plugin.get("type", "")), net.cni_bin_dirs)
        except NetworkNotReady:
            missing.append(str(plugin.get("type", "")))
    types = ", ".join(str(p.get("type", "")) for p in network.plugins)
    if missing:
        results.append(
            failed(
                "CNI plugins",
                f"{', '.join(missing)} not found in {', '.join(net.cni_bin_dirs)}",
                "install the CNI plugins (Debian: apt-get install containernetworking-plugins) "
                "or add their directory to network.cni_bin_dirs",
            )
        )
    else:
        results.append(passed("CNI plugins", types))
    return results


def _probe_mirror(url: str, insecure: bool) -> str:
    """ "" when the mirror answers ``/v2/`` as a registry does (200 or 401), else why not."""
    request = urllib.request.Request(url.rstrip("/") + "/v2/", method="GET")
    context = ssl._create_unverified_context() if insecure else None
    try:
        with urllib.request.urlopen(request, timeout=MIRROR_TIMEOUT, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return f"not reachable: {reason}"
    return "" if status in (200, 401) else f"answered HTTP {status} to /v2/"


def check_mirrors(config: Config) -> list[Result]:
    results = []
    for host, registry in config.registries.items():
        for mirror in registry.mirrors:
            mirror_host = urlsplit(mirror).netloc
            problem = _probe_mirror(mirror, config.registry(mirror_host).insecure)
            name = f"mirror of {host}"
            if problem:
                results.append(
                    failed(
                        name,
                        f"{mirror} {problem}",
                        f'start the registry at {mirror}, or remove it from [registries."{host}"]'
                        " mirrors",
                    )
                )
            else:
                results.append(passed(name, f"{mirror} answers"))
    return results
