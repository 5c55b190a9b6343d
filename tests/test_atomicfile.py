"""Crash-safe small files, and what a write killed half-way leaves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pycrid.adapters.node import atomicfile


def test_a_write_leaves_only_the_file(tmp_path: Path) -> None:
    target = tmp_path / "state" / "a.json"
    atomicfile.write_json(target, {"n": 1})
    atomicfile.write_json(target, {"n": 2})
    assert atomicfile.read_json(target) == {"n": 2}
    assert os.listdir(target.parent) == ["a.json"]
    assert atomicfile.read_json(tmp_path / "missing.json", "none") == "none"


def test_leftovers_of_killed_writes_are_removed_and_nothing_else(tmp_path: Path) -> None:
    atomicfile.write_json(tmp_path / "a.json", {})
    leftover = tmp_path / f".a.json.k3j2h1g0{atomicfile.TEMPORARY_SUFFIX}"
    leftover.write_text("{")
    kept = [tmp_path / ".hidden", tmp_path / "b.partial", tmp_path / ".a.json.k3j2h1g0"]
    for path in kept:
        path.write_text("")
    assert atomicfile.remove_leftovers(tmp_path) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(["a.json", *(p.name for p in kept)])
    assert atomicfile.remove_leftovers(tmp_path / "missing") == 0


def test_a_durable_write_syncs_the_file_and_its_directory_and_another_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    atomicfile.write_json(tmp_path / "record.json", {"n": 1})
    assert len(synced) == 2
    synced.clear()
    atomicfile.write_json(tmp_path / "config.json", {"n": 1}, durable=False)
    assert synced == []
    assert atomicfile.read_json(tmp_path / "config.json") == {"n": 1}
    assert sorted(os.listdir(tmp_path)) == ["config.json", "record.json"]
