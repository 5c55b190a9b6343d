"""The checkpoint archive is written under a temporary name nothing planted can redirect."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from pycrid.adapters.oci.runtime.checkpoint import pack


def images(tmp_path: Path) -> tuple[Path, Path]:
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    (image_dir / "core.img").write_bytes(b"core")
    spec = tmp_path / "config.json"
    spec.write_text("{}")
    return image_dir, spec


def test_packs_the_images_and_the_spec(tmp_path: Path) -> None:
    image_dir, spec = images(tmp_path)
    pack(tmp_path / "out.tar", image_dir, spec)
    with tarfile.open(tmp_path / "out.tar") as tar:
        assert sorted(tar.getnames()) == ["checkpoint", "checkpoint/core.img", "config.dump"]


def test_a_fifo_or_symlink_at_the_temporary_name_is_replaced(tmp_path: Path) -> None:
    image_dir, spec = images(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    out = tmp_path / "archives"
    out.mkdir()
    (out / ".a.tar.partial").symlink_to(victim)
    pack(out / "a.tar", image_dir, spec)
    assert victim.read_text() == "keep"
    os.mkfifo(out / ".b.tar.partial")
    pack(out / "b.tar", image_dir, spec)  # would block on the FIFO if it were opened
    assert tarfile.is_tarfile(out / "b.tar")
    assert sorted(p.name for p in out.iterdir()) == ["a.tar", "b.tar"]
