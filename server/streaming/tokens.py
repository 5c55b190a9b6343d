"""Single-use tokens that name prepared streaming sessions.

A token is random, may be used once, and expires a minute after it was
issued. At most ``max_pending`` wait at any time: a new token evicts the
oldest, so that a client that asks for URLs and never uses them can neither
grow the cache without bound nor lock others out. A token is spent only by a
request that starts its session (``consume``); one that fails its handshake
or names the wrong route leaves it usable (``get``).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

TOKEN_TTL = 60.0
MAX_PENDING = 1000
TOKEN_BYTES = 18  # 24 URL-safe characters


class TokenCache(Generic[T]):
    def __init__(
        self,
        ttl: float = TOKEN_TTL,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_pending = max_pending
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def insert(self, value: T) -> str:
        """A new token for ``value``; the oldest pending one goes when the cache is full."""
        self._expire()
        while len(self._entries) >= self._max_pending:
            self._entries.popitem(last=False)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        while token in self._entries:
            token = secrets.token_urlsafe(TOKEN_BYTES)
        self._entries[token] = (self._clock() + self._ttl, value)
        return token

    def get(self, token: str) -> T | None:
        """The value of a live token, which stays usable; None if unknown, used or expired."""
        self._expire()
        entry = self._entries.get(token)
        return None if entry is None else entry[1]

    def consume(self, token: str) -> T | None:
        """The value of a live token, which is used up; None if unknown, used or expired."""
        self._expire()
        entry = self._entries.pop(token, None)
        return None if entry is None else entry[1]

    def _expire(self) -> None:
        # Entries are in insertion order and share one TTL, so expiry order too.
        now = self._clock()
        while self._entries:
            token, (deadline, _) = next(iter(self._entries.items()))
            if deadline > now:
                break
            del self._entries[token]
