"""Image configs, the rootfs' user database read safely, and the process user."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.oci.runtime.imageconfig import ImageConfig
from pycrid.adapters.oci.runtime.rootpath import read_in_root
from pycrid.adapters.oci.runtime.users import (
    MERGE,
    STRICT,
    parse_group,
    parse_passwd,
    requested_user,
    resolve_user,
)
from pycrid.api.cri import api_pb2 as cri

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh
broken line
nohome:x:1001:1001::::
"""
GROUP = """\
root:x:0:
bin:x:1:root,daemon
wheel:x:10:root
www-data:x:33:www-data
default-user:x:1000:default-user
group-defined-in-image:x:50000:default-user
staff:x:50:default-user,www-data
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    return str(tmp_path / "rootfs")


# Image configs.


def test_image_config_reads_the_config_section() -> None:
    document = {
        "architecture": "amd64",
        "config": {
            "Entrypoint": ["/entry"],
            "Cmd": ["serve", "--port=80"],
            "Env": ["PATH=/bin", "A=1"],
            "WorkingDir": "/srv",
            "User": "www-data:staff",
            "StopSignal": "SIGQUIT",
            "Volumes": {"/data": {}, "/cache": {}},
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"a": "b"},
        },
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    image = ImageConfig.from_blob(json.dumps(document).encode())
    assert image == ImageConfig(
        entrypoint=("/entry",),
        cmd=("serve", "--port=80"),
        env=("PATH=/bin", "A=1"),
        working_dir="/srv",
        user="www-data:staff",
        stop_signal="SIGQUIT",
        volumes=("/cache", "/data"),
        exposed_ports=("80/tcp",),
        labels={"a": "b"},
    )
    hash(image)


def test_image_config_nulls_and_missing_config_are_empty() -> None:
    assert ImageConfig.from_document({}) == ImageConfig()
    nulls = {"Entrypoint": None, "Cmd": None, "Env": None, "Volumes": None, "Labels": None}
    assert ImageConfig.from_document({"config": nulls}) == ImageConfig()


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"config": []},
        {"config": {"Cmd": "sh"}},
        {"config": {"Env": [1]}},
        {"config": {"User": 0}},
    ],
)
def test_image_config_of_the_wrong_shape_is_refused(document: object) -> None:
    with pytest.raises(InvalidArgument):
        ImageConfig.from_document(document)  # type: ignore[arg-type]


def test_image_config_blob_must_be_json() -> None:
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        ImageConfig.from_blob(b"{")


# Reading inside the rootfs.


def test_read_in_root_reads_and_reports_missing(rootfs: str) -> None:
    assert read_in_root(rootfs, "etc/passwd") == PASSWD.encode()
    assert read_in_root(rootfs, "/etc/passwd") == PASSWD.encode()
    assert read_in_root(rootfs, "etc/shadow") is None
    assert read_in_root(rootfs, "nope/passwd") is None
    assert read_in_root(rootfs, "etc/passwd/x") is None


def test_absolute_symlinks_resolve_inside_the_rootfs(tmp_path: Path, rootfs: str) -> None:
    outside = tmp_path / "host-secret"
    outside.write_text("host")
    etc = Path(rootfs, "etc")
    os.symlink(str(outside), etc / "escape")
    assert read_in_root(rootfs, "etc/escape") is None  # resolved as <rootfs>/<tmp>/host-secret
    os.symlink("/etc/passwd", etc / "abs")
    assert read_in_root(rootfs, "etc/abs") == PASSWD.encode()


def test_dotdot_never_climbs_above_the_rootfs(tmp_path: Path, rootfs: str) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("host passwd")
    os.symlink("../../../../etc/passwd", Path(rootfs, "etc", "up"))
    assert read_in_root(rootfs, "etc/up") == PASSWD.encode()
    assert read_in_root(rootfs, "../etc/passwd") == PASSWD.encode()


def test_a_symlinked_directory_is_followed_inside(rootfs: str) -> None:
    Path(rootfs, "usr", "share").mkdir(parents=True)
    os.rename(Path(rootfs, "etc"), Path(rootfs, "usr", "share", "etc"))
    os.symlink("usr/share/etc", Path(rootfs, "etc"))
    assert read_in_root(rootfs, "etc/group") == GROUP.encode()


def test_symlink_loops_and_non_files_are_refused(rootfs: str) -> None:
    os.symlink("loop", Path(rootfs, "etc", "loop"))
    with pytest.raises(InvalidArgument, match="too many symlinks"):
        read_in_root(rootfs, "etc/loop")
    os.mkfifo(Path(rootfs, "etc", "fifo"))
    with pytest.raises(InvalidArgument, match="not a regular file"):
        read_in_root(rootfs, "etc/fifo")
    with pytest.raises(InvalidArgument, match="larger than"):
        read_in_root(rootfs, "etc/passwd", max_bytes=10)


# The user database.


def test_parse_passwd_and_group_skip_malformed_lines() -> None:
    users = parse_passwd(PASSWD)
    assert [u.name for u in users] == ["root", "daemon", "www-data", "default-user", "nohome"]
    assert users[-1].home == "/"
    groups = parse_group(GROUP)
    assert groups[1].members == ("root", "daemon")
    assert groups[0].members == ()


# Who the process runs as.


def security(**fields: object) -> cri.LinuxContainerSecurityContext:
    return cri.LinuxContainerSecurityContext(**fields)


def test_requested_user_prefers_the_cri_then_the_image() -> None:
    assert requested_user(security(), "www-data") == "www-data"
    assert requested_user(security(), "") == ""
    assert requested_user(security(run_as_user=cri.Int64Value(value=0)), "www-data") == "0"
    both = security(run_as_user=cri.Int64Value(value=5), run_as_username="www-data")
    assert requested_user(both, "") == "www-data"
    grouped = security(run_as_user=cri.Int64Value(value=5), run_as_group=cri.Int64Value(value=7))
    assert requested_user(grouped, "x:y") == "5:7"


def test_run_as_group_without_a_user_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="run_as_group"):
        requested_user(security(run_as_group=cri.Int64Value(value=7)), "www-data")


def test_negative_ids_are_invalid() -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        requested_user(security(run_as_user=cri.Int64Value(value=-1)), "")


def test_sandbox_security_context_has_no_username() -> None:
    sandbox = cri.LinuxSandboxSecurityContext(run_as_user=cri.Int64Value(value=65535))
    assert requested_user(sandbox, "root") == "65535"


def test_root_by_default_gets_its_image_groups(rootfs: str) -> None:
    user = resolve_user(rootfs, "")
    assert (user.uid, user.gid, user.additional_gids, user.home) == (0, 0, (0, 1, 10), "/root")
    assert user.to_oci() == {"uid": 0, "gid": 0, "additionalGids": [0, 1, 10]}


def test_known_uid_takes_group_and_home_from_passwd(rootfs: str) -> None:
    user = resolve_user(rootfs, "1000", [1234])
    assert (user.uid, user.gid, user.home, user.name) == (
        1000,
        1000,
        "/home/default-user",
        "default-user",
    )
    # critest's SupplementalGroupsPolicy=Merge expectation: self, the CRI's, the image's.
    assert user.additional_gids == (50, 1000, 1234, 50000)


def test_strict_policy_leaves_the_image_groups_out(rootfs: str) -> None:
    user = resolve_user(rootfs, "1000", [1234], STRICT)
    assert user.additional_gids == (1000, 1234)


def test_unknown_uid_runs_with_gid_0_and_home_slash(rootfs: str) -> None:
    user = resolve_user(rootfs, "4242", [], MERGE)
    assert (user.uid, user.gid, user.additional_gids, user.home, user.name) == (
        4242,
        0,
        (0,),
        "/",
        "",
    )


def test_names_and_groups_resolve(rootfs: str) -> None:
    user = resolve_user(rootfs, "www-data")
    assert (user.uid, user.gid, user.additional_gids) == (33, 33, (33, 50))
    user = resolve_user(rootfs, "www-data:staff")
    assert (user.uid, user.gid) == (33, 50)
    user = resolve_user(rootfs, "1000:7")
    assert (user.uid, user.gid, user.additional_gids) == (1000, 7, (7, 50, 50000))
    user = resolve_user(rootfs, "4242:wheel")
    assert (user.uid, user.gid) == (4242, 10)


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("nobody-here", "no user 'nobody-here'"),
        ("root:nogroup", "no group 'nogroup'"),
        ("a:b:c", "invalid user"),
        (":5", "invalid user"),
        ("99999999999", "not a number"),
        ("\u00b2", "no user"),  # a digit to str.isdigit, not to int()
    ],
)
def test_bad_users_are_invalid(rootfs: str, user: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        resolve_user(rootfs, user)


def test_a_rootfs_without_user_files(tmp_path: Path) -> None:
    assert resolve_user(str(tmp_path), "65535", [3]).additional_gids == (0, 3)
    with pytest.raises(InvalidArgument, match="no user"):
        resolve_user(str(tmp_path), "nobody")


def test_passwd_symlinked_to_the_host_is_read_inside(tmp_path: Path) -> None:
    """An image whose /etc/passwd points at /etc/passwd of... itself, not the host's."""
    etc = tmp_path / "r" / "etc"
    etc.mkdir(parents=True)
    (etc / "real").write_text("evil:x:0:0::/:/bin/sh\n")
    os.symlink("/etc/real", etc / "passwd")
    assert resolve_user(str(tmp_path / "r"), "evil").uid == 0
    os.remove(etc / "passwd")
    os.symlink("/etc/shadow", etc / "passwd")  # the host's would exist; the image's does not
    with pytest.raises(InvalidArgument, match="no user 'root'"):
        resolve_user(str(tmp_path / "r"), "root")
