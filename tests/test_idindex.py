from __future__ import annotations

import pytest

from pycrid.adapters.errors import InvalidArgument, NotFound
from pycrid.adapters.idindex import IdIndex


def test_unique_prefix_resolves_to_the_full_id():
    index = IdIndex("container", ["abc123", "abd456", "ffff"])
    assert index.resolve("abc") == "abc123"
    assert index.resolve("f") == "ffff"
    assert index.resolve("abd456") == "abd456"


def test_ambiguous_prefix_is_invalid_argument():
    index = IdIndex("container", ["abc123", "abd456"])
    with pytest.raises(InvalidArgument, match="ambiguous"):
        index.resolve("ab")


def test_full_id_that_prefixes_another_still_resolves():
    index = IdIndex("container", ["abc", "abcdef"])
    assert index.resolve("abc") == "abc"


def test_unknown_and_empty_ids():
    index = IdIndex("pod sandbox", ["abc"])
    with pytest.raises(NotFound, match="pod sandbox"):
        index.resolve("x")
    with pytest.raises(InvalidArgument):
        index.resolve("")


def test_add_discard_and_matching():
    index = IdIndex("container")
    index.add("b2")
    index.add("b1")
    index.add("b1")
    assert list(index) == ["b1", "b2"]
    assert index.matching("b") == ["b1", "b2"]
    index.discard("b1")
    index.discard("zz")
    assert "b1" not in index and "b2" in index
    assert len(index) == 1


def test_replace_and_membership_agree_with_prefix_lookup():
    index = IdIndex("pod sandbox", ["aa", "ab"])
    index.replace(["ab", "ac"])
    assert "aa" not in index and "ab" in index and 1 not in index
    assert index.matching("a") == ["ab", "ac"]
    assert index.resolve("ab") == "ab"
    index.discard("ab")
    assert index.resolve("a") == "ac"
    index.add("ab")
    assert list(index) == ["ab", "ac"]
