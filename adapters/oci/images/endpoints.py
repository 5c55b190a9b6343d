"""Where an image's registry is reached: its mirrors in order, then the registry.

The ``[registries."<host>"]`` tables of pycrid's configuration (the same ones
the docker adapter reads) give each host's mirrors, whether the registry itself
is tried after them (``upstream``) and whether it is insecure.
HTTPS is the rule; plain HTTP is allowed only towards loopback addresses and
hosts configured ``insecure = true``, which are tried over HTTPS (without
certificate checks) first, the way Docker treats insecure registries.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from pycrid.adapters.config import Config

# Docker Hub's API is served from a host other than the one in image names.
API_HOSTS = {"docker.io": "registry-1.docker.io"}


@dataclass(frozen=True)
class Endpoint:
    """One place to fetch a repository from."""

    base_url: str
    """``scheme://host[:port][/path]``; API paths go below it (``/v2/...``)."""
    host: str
    """``host[:port]`` as it appears in the URL; credentials are looked up by it."""
    verify_tls: bool = True
    mirror: bool = False

    @property
    def plain_http(self) -> bool:
        return self.base_url.startswith("http://")

    def verifies_tls_for(self, url: str) -> bool:
        """Certificate checks for ``url``: off only towards an insecure endpoint's own host."""
        return self.verify_tls or urlsplit(url).netloc != self.host

    def allows(self, url: str) -> bool:
        """Whether this endpoint may send us (a redirect, a token realm) to ``url``."""
        parts = urlsplit(url)
        if parts.scheme == "https":
            return True
        return parts.scheme == "http" and (
            is_loopback(parts.netloc) or (self.plain_http and parts.netloc == self.host)
        )

    def __str__(self) -> str:
        return self.base_url


def hostname(host: str) -> str:
    """``host[:port]`` or ``[v6]:port`` -> the bare host name or address."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    name = hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_http_allowed(config: Config, host: str) -> bool:
    return is_loopback(host) or config.registry(host).insecure


def _mirror(config: Config, url: str) -> Endpoint | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    host = parts.netloc.rsplit("@", 1)[-1]
    if parts.scheme == "http" and not plain_http_allowed(config, host):
        # A plain-HTTP mirror must be loopback or declared insecure under its own host.
        return None
    base = f"{parts.scheme}://{host}{parts.path.rstrip('/')}"
    if base.endswith("/v2"):
        base = base[: -len("/v2")]
    return Endpoint(
        base_url=base,
        host=host,
        verify_tls=not config.registry(host).insecure,
        mirror=True,
    )


def endpoints_for(config: Config, domain: str) -> list[Endpoint]:
    """The endpoints to try for images named ``domain/...``, in order."""
    found: list[Endpoint] = []
    for url in config.registry(domain).mirrors:
        endpoint = _mirror(config, url)
        if endpoint is not None and endpoint not in found:
            found.append(endpoint)
    if found and not config.registry(domain).upstream:
        return found  # an air-gapped host: the mirrors only
    host = API_HOSTS.get(domain, domain)
    if plain_http_allowed(config, domain):
        found.append(Endpoint(f"https://{host}", host, verify_tls=False))
        found.append(Endpoint(f"http://{host}", host))
    else:
        found.append(Endpoint(f"https://{host}", host))
    return found


def refused_mirrors(config: Config, domain: str) -> list[str]:
    """Configured mirrors that are never used, for error messages and logs."""
    return [url for url in config.registry(domain).mirrors if _mirror(config, url) is None]
