"""adapters/node/dirwatch.py and its use by cni.network_problem."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pycrid.adapters.node import cni
from pycrid.adapters.node.dirwatch import DirectoryWatch


def test_a_watch_sees_entries_made_changed_and_removed(tmp_path: Path) -> None:
    watch = DirectoryWatch([str(tmp_path)])
    try:
        assert not watch.changed()
        entry = tmp_path / "10-net.conflist"
        entry.write_text("{}")
        assert watch.changed()
        assert not watch.changed()  # each change is told once
        with entry.open("a") as f:
            f.write(" ")
        assert watch.changed()
        entry.chmod(0o600)
        assert watch.changed()
        entry.unlink()
        assert watch.changed()
        assert not watch.broken
    finally:
        watch.close()


def test_a_missing_directory_counts_as_changed_once_it_exists(tmp_path: Path) -> None:
    later = tmp_path / "later"
    watch = DirectoryWatch([str(tmp_path / "there"), str(later)])
    try:
        assert not watch.changed()
        later.mkdir()
        assert watch.changed()
        assert watch.broken  # to be watched, not looked for: the caller makes a new watch
    finally:
        watch.close()


def test_a_removed_directory_breaks_the_watch(tmp_path: Path) -> None:
    directory = tmp_path / "conf"
    directory.mkdir()
    watch = DirectoryWatch([str(directory)])
    try:
        directory.rmdir()
        assert watch.changed()
        assert watch.broken
        assert watch.changed()  # for good: the caller makes a new one
    finally:
        watch.close()


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        DirectoryWatch([str(tmp_path / "link")])


def _bridge_setup(tmp_path: Path) -> tuple[Path, Path]:
    conf, bin_dir = tmp_path / "conf", tmp_path / "bin"
    conf.mkdir(parents=True)
    bin_dir.mkdir()
    network = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}]}
    (conf / "10-n.conflist").write_text(json.dumps(network))
    return conf, bin_dir


def _linked_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``_bridge_setup`` with the config file moved out and a symbolic link left to it."""
    conf, bin_dir = _bridge_setup(tmp_path)
    target = tmp_path / "elsewhere.conflist"
    os.rename(conf / "10-n.conflist", target)
    (conf / "10-n.conflist").symlink_to(target)
    return conf, bin_dir, target


def _counting_fingerprints(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    looked = []
    real = cni._fingerprint

    def counted(conf_dir: str, bin_dirs: list[str]) -> tuple[tuple[object, ...], bool]:
        looked.append(conf_dir)
        return real(conf_dir, bin_dirs)

    monkeypatch.setattr(cni, "_fingerprint", counted)
    return looked


def test_followed_directories_are_not_looked_at_while_nothing_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, bin_dir = _bridge_setup(tmp_path)
    looked = _counting_fingerprints(monkeypatch)
    assert "bridge" in cni.network_problem(str(conf), [str(bin_dir)])
    for _ in range(5):
        assert "bridge" in cni.network_problem(str(conf), [str(bin_dir)])
    assert len(looked) == 1
    plugin = bin_dir / "bridge"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    assert cni.network_problem(str(conf), [str(bin_dir)]) == ""
    assert len(looked) == 2
    (conf / "10-n.conflist").write_text("not json")
    assert "no valid CNI network config" in cni.network_problem(str(conf), [str(bin_dir)])


def test_a_config_behind_a_symlink_is_looked_at_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, bin_dir, target = _linked_setup(tmp_path)
    looked = _counting_fingerprints(monkeypatch)
    watches = []
    real_watch = cni.DirectoryWatch

    def counted_watch(directories: list[str]) -> DirectoryWatch:
        watches.append(directories)
        return real_watch(directories)

    monkeypatch.setattr(cni, "DirectoryWatch", counted_watch)
    for _ in range(3):
        assert "bridge" in cni.network_problem(str(conf), [str(bin_dir)])
    assert len(looked) == 3
    assert len(watches) == 1  # not made and dropped again on every call
    network = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "portmap"}]}
    target.write_text(json.dumps(network))  # the change behind the link
    assert "portmap" in cni.network_problem(str(conf), [str(bin_dir)])


def test_only_a_few_directory_sets_are_followed_at_once(tmp_path: Path) -> None:
    for n in range(cni.MAX_WATCHED + 3):
        conf, bin_dir = _bridge_setup(tmp_path / str(n))
        cni.network_problem(str(conf), [str(bin_dir)])
    followed = [kept for kept in cni._checked.values() if kept.watch is not None]
    assert 0 < len(followed) <= cni.MAX_WATCHED


def test_a_config_no_longer_behind_a_symlink_is_followed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, bin_dir, target = _linked_setup(tmp_path)
    assert "bridge" in cni.network_problem(str(conf), [str(bin_dir)])
    os.replace(target, conf / "10-n.conflist")  # a plain file again
    looked = _counting_fingerprints(monkeypatch)
    for _ in range(4):
        assert "bridge" in cni.network_problem(str(conf), [str(bin_dir)])
    assert len(looked) == 2  # the call that saw the change, and the one that made the watch
