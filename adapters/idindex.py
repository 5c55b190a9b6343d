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
        self._members: set[str] = set(ids)
        """The same IDs as a set: full IDs, what kubelet passes, are found without a search."""
        self._ids: list[str] = sorted(self._members)

    def add(self, full_id: str) -> None:
        if full_id not in self._members:
            self._members.add(full_id)
            bisect.insort(self._ids, full_id)

    def discard(self, full_id: str) -> None:
        if full_id in self._members:
            self._members.discard(full_id)
            del self._ids[bisect.bisect_left(self._ids, full_id)]

    def replace(self, ids: Iterable[str]) -> None:
        self._members = set(ids)
        self._ids = sorted(self._members)

    def __contains__(self, full_id: object) -> bool:
        return isinstance(full_id, str) and full_id in self._members

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
        if prefix in self._members:
            return prefix  # a full ID wins over the longer IDs it is a prefix of
        found = self.matching(prefix)
        if not found:
            raise NotFound(f"{self._kind} {prefix!r} not found")
        if len(found) > 1 and found[0] != prefix:
            raise InvalidArgument(
                f"{self._kind} ID prefix {prefix!r} is ambiguous ({len(found)} matches)"
            )
        return found[0]
