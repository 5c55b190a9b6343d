"""Registry credentials and the WWW-Authenticate challenge.

Credentials come from the CRI request's AuthConfig, or else from a Docker
``config.json`` (``$DOCKER_CONFIG/config.json``, then ``~/.docker/config.json``).
Credential helpers (``credsStore``/``credHelpers``) are not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pycrid.api.cri import api_pb2 as cri


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    """An OAuth2 refresh token, exchanged at the token endpoint."""
    registry_token: str = ""
    """A bearer token sent to the registry as is."""

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token or self.registry_token)

    def basic(self) -> str:
        """The value of a Basic Authorization header."""
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()


NO_CREDENTIALS = Credentials()


def _host_of(server_address: str) -> str:
    """``https://index.docker.io/v1/`` -> ``index.docker.io``; a bare host stays as it is."""
    text = server_address.strip()
    text = re.sub(r"^[a-z]+://", "", text)
    return text.split("/", 1)[0]


def _same_host(a: str, b: str) -> bool:
    aliases = {"index.docker.io": "docker.io", "registry-1.docker.io": "docker.io"}
    return aliases.get(a, a) == aliases.get(b, b)


def _decode_auth(value: str) -> tuple[str, str]:
    try:
        username, _, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return username, password


def from_auth_config(auth: cri.AuthConfig, host: str) -> Credentials:
    """The request's credentials for ``host``.

    kubelet sends the credentials meant for the image's registry; they are used
    for ``host`` only when the AuthConfig names no server or names ``host``, so
    a mirror never sees credentials that were meant for another registry.
    """
    if auth.server_address and not _same_host(_host_of(auth.server_address), host):
        return NO_CREDENTIALS
    username, password = auth.username, auth.password
    if auth.auth and not username:
        username, password = _decode_auth(auth.auth)
    return Credentials(
        username=username,
        password=password,
        identity_token=auth.identity_token,
        registry_token=auth.registry_token,
    )


def docker_config_paths() -> list[Path]:
    paths = []
    if os.environ.get("DOCKER_CONFIG"):
        paths.append(Path(os.environ["DOCKER_CONFIG"]) / "config.json")
    paths.append(Path.home() / ".docker" / "config.json")
    return paths


def from_docker_config(host: str, paths: list[Path] | None = None) -> Credentials:
    """Credentials for ``host`` from the first Docker config.json that has some."""
    for path in paths if paths is not None else docker_config_paths():
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        auths = document.get("auths") if isinstance(document, dict) else None
        if not isinstance(auths, dict):
            continue
        for key, entry in auths.items():
            if not isinstance(entry, dict) or not _same_host(_host_of(key), host):
                continue
            username, password = entry.get("username", ""), entry.get("password", "")
            if entry.get("auth") and not username:
                username, password = _decode_auth(entry["auth"])
            found = Credentials(
                username=username,
                password=password,
                identity_token=entry.get("identitytoken", ""),
                registry_token=entry.get("registrytoken", ""),
            )
            if found:
                return found
    return NO_CREDENTIALS


@dataclass(frozen=True)
class Challenge:
    scheme: str
    """Lower case: ``bearer`` or ``basic``."""
    params: dict[str, str]


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*,?')
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate header value (RFC 7235) into its challenges."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        while pos < len(header) and header[pos] in ", ":
            pos += 1
        scheme = _SCHEME.match(header, pos)
        if not scheme:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while pos < len(header):
            param = _PARAM.match(header, pos)
            if not param:
                break
            # A token followed by '=' is a parameter; a bare token starts the next challenge.
            value = param.group(2) if param.group(2) is not None else param.group(3)
            params[param.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges
