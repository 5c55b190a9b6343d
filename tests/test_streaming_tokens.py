"""Single-use, expiring, bounded tokens."""

from __future__ import annotations

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


def test_pending_tokens_are_bounded_by_evicting_the_oldest() -> None:
    clock = Clock()
    cache: TokenCache[int] = TokenCache(max_pending=3, clock=clock)
    tokens = [cache.insert(i) for i in range(3)]
    newest = cache.insert(3)  # never refused: the oldest goes instead
    assert len(cache) == 3
    assert cache.consume(tokens[0]) is None
    assert [cache.consume(t) for t in tokens[1:]] == [1, 2]
    assert cache.consume(newest) == 3
    clock.now += 61
    assert len(cache) == 0


def test_get_leaves_the_token_usable() -> None:
    cache: TokenCache[str] = TokenCache(clock=Clock())
    token = cache.insert("session")
    assert cache.get(token) == "session"
    assert cache.get(token) == "session"
    assert cache.consume(token) == "session"
    assert cache.get(token) is None


def test_tokens_are_distinct() -> None:
    cache: TokenCache[int] = TokenCache()
    assert len({cache.insert(i) for i in range(200)}) == 200
