"""Image references and image users, by Docker's normalisation rules.

``busybox`` is ``docker.io/library/busybox:latest``; ``localhost:5000/x`` keeps
its registry; a reference may carry a tag, a digest, or both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pycrid.adapters.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    """A normalised image reference."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """``domain/path``, the name without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def with_domain(self, domain: str) -> Reference:
        return Reference(domain, self.path, self.tag, self.digest)


def is_image_id(text: str) -> bool:
    """True for a full image ID, with or without ``sha256:``."""
    return bool(_IMAGE_ID.match(text))


def parse_reference(text: str) -> Reference:
    """Parse and normalise ``text``; a missing tag (and digest) becomes ``latest``."""
    original = text
    if not text or text != text.strip():
        raise InvalidArgument(f"invalid image reference {original!r}")
    digest = ""
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidArgument(f"invalid digest in image reference {original!r}")
    tag = ""
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        text, tag = text.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InvalidArgument(f"invalid tag in image reference {original!r}")
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        domain, path = first, rest
        if not _DOMAIN.match(domain):
            raise InvalidArgument(f"invalid registry in image reference {original!r}")
    else:
        domain, path = DEFAULT_DOMAIN, text
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    if not path or not all(_COMPONENT.match(part) for part in path.split("/")):
        raise InvalidArgument(f"invalid repository name in image reference {original!r}")
    if not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def repo_digest_for(requested: str, repo_digests: list[str]) -> str:
    """The repo digest of the repository ``requested`` names, or "" when there is none.

    An image pulled through a mirror, or also under another name, has repo
    digests for several repositories; a container's ``imageRef`` must name
    the one it was asked for, never the first in the list.
    """
    if is_image_id(requested):
        return ""
    try:
        ref = parse_reference(requested)
    except InvalidArgument:
        return ""
    if ref.digest and f"{ref.repository}@{ref.digest}" in repo_digests:
        return f"{ref.repository}@{ref.digest}"
    for candidate in repo_digests:
        repository, _, digest = candidate.partition("@")
        if digest and _same_repository(repository, ref.repository):
            return candidate
    return ""


def _same_repository(recorded: str, wanted: str) -> bool:
    try:
        return parse_reference(recorded).repository == wanted
    except InvalidArgument:
        return False


def parse_image_user(user: str) -> tuple[int | None, str]:
    """Split an image config's USER into (uid, username); the group is ignored.

    ``"1002"`` gives (1002, ""), ``"www-data:www-data"`` gives (None, "www-data").
    """
    name = user.split(":", 1)[0]
    if not name:
        return None, ""
    if name.isdigit():
        return int(name), ""
    return None, name
