"""Content digests (``sha256:<hex>``) and checking bytes against them.

Everything pycrid takes from a registry is named by its digest, so everything
is hashed while it arrives and refused when the hash or the size differs.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

_DIGEST = re.compile(r"^(sha256|sha512):([0-9a-f]+)$")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}


class DigestError(Exception):
    """Content does not match the digest or size that names it."""


def parse_digest(digest: str) -> tuple[str, str]:
    """Split ``digest`` into (algorithm, hex); ValueError when it is malformed."""
    match = _DIGEST.match(digest)
    if not match or len(match.group(2)) != _HEX_LENGTH[match.group(1)]:
        raise ValueError(f"malformed digest {digest!r}")
    return match.group(1), match.group(2)


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Verifier:
    """Hashes bytes as they pass and checks them against an expected digest and size."""

    def __init__(self, digest: str, size: int | None = None) -> None:
        algorithm, _ = parse_digest(digest)
        self.digest = digest
        self.size = size
        self.seen = 0
        self._hash: Any = hashlib.new(algorithm)

    def update(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        if self.size is not None and self.seen > self.size:
            raise DigestError(f"{self.digest}: more than the {self.size} bytes announced")
        self._hash.update(chunk)

    def actual(self) -> str:
        return f"{self.digest.split(':', 1)[0]}:{self._hash.hexdigest()}"

    def verify(self) -> None:
        """Raise DigestError unless every byte has arrived and they hash to the digest."""
        if self.size is not None and self.seen != self.size:
            raise DigestError(f"{self.digest}: got {self.seen} bytes, expected {self.size}")
        actual = self.actual()
        if actual != self.digest:
            raise DigestError(f"content has digest {actual}, expected {self.digest}")


def verify_bytes(data: bytes, digest: str, size: int | None = None) -> None:
    verifier = Verifier(digest, size)
    verifier.update(data)
    verifier.verify()
