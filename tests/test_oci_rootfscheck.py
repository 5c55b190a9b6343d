"""The program and working directory looked up in the root filesystem, as runc would."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pycrid.adapters.errors import FailedPrecondition, InvalidArgument
from pycrid.adapters.oci.runtime.rootfscheck import check_process, resolve


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    for directory in ("bin", "usr/bin", "etc", "data", "home/app"):
        (root / directory).mkdir(parents=True)
    busybox = root / "bin" / "busybox"
    busybox.write_text("")
    busybox.chmod(0o755)
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "usr" / "bin" / "env").symlink_to("/bin/busybox")  # absolute: inside the root
    (root / "usr" / "bin" / "escape").symlink_to("../../../outside")
    (root / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    (root / "bin" / "loop").symlink_to("loop")
    (root / "home" / "link").symlink_to("/home/app")
    (tmp_path / "outside").write_text("")
    (tmp_path / "outside").chmod(0o755)
    return root


def spec(args: list[str], cwd: str = "/", path: str = "/usr/bin:/bin", **more: Any) -> dict:
    return {"process": {"args": args, "cwd": cwd, "env": [f"PATH={path}"]}, **more}


def test_programs_found_through_links_inside_the_root(rootfs: Path) -> None:
    for args in (["sh"], ["/bin/sh"], ["env"], ["/usr/bin/env"], ["busybox"]):
        check_process(rootfs, spec(args), "command[0]")
    check_process(rootfs, spec(["./busybox"], cwd="/bin"), "command[0]")


@pytest.mark.parametrize(
    "args", [["/no/such/program"], ["nosuchprogram"], ["/etc/passwd"], ["/bin/loop"], ["escape"]]
)
def test_missing_or_unrunnable_programs_are_invalid_arguments(rootfs: Path, args: list) -> None:
    with pytest.raises(InvalidArgument, match="command\\[0\\]"):
        check_process(rootfs, spec(args), "command[0]")


def test_a_path_search_needs_path(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="PATH"):
        check_process(rootfs, spec(["sh"], path=""), "args[0]")


def test_programs_under_a_mount_are_not_judged(rootfs: Path) -> None:
    mounts = [{"destination": "/opt/tools"}]
    check_process(rootfs, spec(["/opt/tools/run"], mounts=mounts), "command[0]")
    check_process(rootfs, spec(["run"], path="/opt/tools:/bin", mounts=mounts), "command[0]")


@pytest.mark.parametrize("cwd", ["/etc/passwd", "/etc/passwd/below"])
def test_a_working_dir_that_is_a_file_is_refused(rootfs: Path, cwd: str) -> None:
    with pytest.raises(FailedPrecondition, match="working_dir"):
        check_process(rootfs, spec(["sh"], cwd=cwd), "command[0]")


def test_working_dirs_that_are_or_will_be_directories_pass(rootfs: Path) -> None:
    for cwd in ("/", "/home/app", "/home/link", "/not/yet/made"):
        check_process(rootfs, spec(["sh"], cwd=cwd), "command[0]")


def test_resolve_never_leaves_the_root(rootfs: Path) -> None:
    assert resolve(rootfs, "/usr/bin/env") == rootfs / "bin" / "busybox"
    assert resolve(rootfs, "/../../bin/sh") == rootfs / "bin" / "busybox"
    escaped = resolve(rootfs, "/usr/bin/escape")
    assert escaped is None or os.path.commonpath([escaped, rootfs]) == str(rootfs)
