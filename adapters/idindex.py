"""Unique-prefix lookup of object IDs, the way crictl's short IDs need it."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from pycrid.adapters.errors import InvalidArgument, NotFound


class IdIndex:
    """A sorted set of full IDs that resolves unique prefixes.

    crictl prints 13-character IDs and passes what the user typed straight
    through, so every call that takes an ID must accept a unique prefix.
    """

    def __init__(self, kind: str, ids: Iterable[str] = ()) -> None:
        self._kind = kind
        self._ids: list[str] = sorted(set(ids))

    def add(self, full_id: str) -> None:
        pos = bisect.bisect_left(self._ids, full_id)
        if pos == len(self._ids) or self._ids[pos] != full_id:
            self._ids.insert(pos, full_id)

    def discard(self, full_id: str) -> None:
        pos = bisect.bisect_left(self._ids, full_id)
        if pos < len(self._ids) and self._ids[pos] == full_id:
            del self._ids[pos]

    def replace(self, ids: Iterable[str]) -> None:
        self._ids = sorted(set(ids))

    def __contains__(self, full_id: object) -> bool:
        if not isinstance(full_id, str):
            return False
        pos = bisect.bisect_left(self._ids, full_id)
        return pos < len(self._ids) and self._ids[pos] == full_id

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ids))

    def __len__(self) -> int:
        return len(self._ids)

    def matching(self, prefix: str) -> list[str]:
        """All IDs that start with ``prefix``."""
        start = bisect.bisect_left(self._ids, prefix)
        found = []
        for full_id in self._ids[start:]:
            if not full_id.startswith(prefix):
                break
            found.append(full_id)
        return found

    def resolve(self, prefix: str) -> str:
        """The one ID that starts with ``prefix``.

        Raises InvalidArgument for an empty or ambiguous prefix and NotFound
        when nothing matches.
        """
        if not prefix:
            raise InvalidArgument(f"{self._kind} ID must not be empty")
        found = self.matching(prefix)
        if not found:
            raise NotFound(f"{self._kind} {prefix!r} not found")
        if len(found) > 1 and found[0] != prefix:
            raise InvalidArgument(
                f"{self._kind} ID prefix {prefix!r} is ambiguous ({len(found)} matches)"
            )
        return found[0]
