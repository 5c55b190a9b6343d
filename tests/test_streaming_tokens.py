"""Single-use, expiring, bounded tokens."""

from __future__ import annotations

import pytest

from pycrid.adapters.errors import ResourceExhausted
from pycrid.server.streaming.tokens import TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_used_once() -> None:
    cache: TokenCache[str] = TokenCache(clock=Clock())
    token = cache.insert("session")
    assert len(token) >= 16 and token.replace("-", "").replace("_", "").isalnum()
    assert cache.consume(token) == "session"
    assert cache.consume(token) is None
    assert cache.consume("made-up") is None


def test_tokens_expire_after_a_minute() -> None:
    clock = Clock()
    cache: TokenCache[str] = TokenCache(clock=clock)
    early, late = cache.insert("early"), None
    clock.now += 30
    late = cache.insert("late")
    clock.now += 31
    assert cache.consume(early) is None
    assert cache.consume(late) == "late"


def test_pending_tokens_are_bounded() -> None:
    clock = Clock()
    cache: TokenCache[int] = TokenCache(max_pending=3, clock=clock)
    tokens = [cache.insert(i) for i in range(3)]
    with pytest.raises(ResourceExhausted):
        cache.insert(3)
    assert cache.consume(tokens[0]) == 0
    cache.insert(4)  # a used token frees its place
    clock.now += 61
    assert len(cache) == 0  # and so does expiry
    cache.insert(5)


def test_tokens_are_distinct() -> None:
    cache: TokenCache[int] = TokenCache()
    assert len({cache.insert(i) for i in range(200)}) == 200
