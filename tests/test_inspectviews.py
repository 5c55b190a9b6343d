"""The verbose info's shapes: chain IDs, and Docker's inspect as OCI specs."""

from __future__ import annotations

import hashlib

from pycrid.adapters.docker.inspectviews import image_spec, runtime_spec
from pycrid.adapters.node.chainid import chain_id

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_chain_id_is_the_first_diff_id_then_hashed_pairs() -> None:
    assert chain_id([]) == ""
    assert chain_id([A]) == A
    assert chain_id([A, B]) == "sha256:" + hashlib.sha256(f"{A} {B}".encode()).hexdigest()


def test_image_spec_carries_the_oci_config_fields() -> None:
    inspect = {
        "Id": "sha256:" + "c" * 64,
        "RepoTags": ["busybox:1"],
        "Created": "2024-01-01T00:00:00Z",
        "Architecture": "amd64",
        "Os": "linux",
        "Config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "Hostname": "", "User": ""},
        "RootFS": {"Type": "layers", "Layers": [A, B]},
    }
    spec = image_spec(inspect)
    assert spec["architecture"] == "amd64" and spec["os"] == "linux"
    assert spec["config"] == {"Cmd": ["sh"], "Env": ["PATH=/bin"]}
    assert spec["rootfs"] == {"type": "layers", "diff_ids": [A, B]}


def test_runtime_spec_names_the_pause_containers_namespaces() -> None:
    pause = "p" * 64
    inspect = {
        "Path": "sh",
        "Args": ["-c", "sleep 1"],
        "Config": {"Entrypoint": None, "Cmd": ["sh", "-c", "sleep 1"], "Env": ["K=v"]},
        "HostConfig": {
            "NetworkMode": f"container:{pause}",
            "IpcMode": f"container:{pause}",
            "PidMode": "",
            "Memory": 64 << 20,
            "CpuQuota": 50000,
            "CpuPeriod": 100000,
            "CgroupParent": "/pods/p1",
        },
        "Mounts": [{"Type": "bind", "Source": "/h", "Destination": "/c", "RW": False}],
    }
    spec = runtime_spec(inspect)
    assert spec["process"]["args"] == ["sh", "-c", "sleep 1"]
    assert spec["process"]["env"] == ["K=v"] and spec["process"]["cwd"] == "/"
    namespaces = {ns["type"]: ns.get("path") for ns in spec["linux"]["namespaces"]}
    assert namespaces["network"] == namespaces["ipc"] == f"container:{pause}"
    assert "pid" in namespaces and namespaces["pid"] is None
    assert spec["linux"]["resources"]["memory"] == {"limit": 64 << 20}
    assert spec["linux"]["resources"]["cpu"] == {"quota": 50000, "period": 100000}
    assert spec["linux"]["cgroupsPath"] == "/pods/p1"
    assert spec["mounts"] == [
        {"destination": "/c", "type": "bind", "source": "/h", "options": ["rbind", "ro"]}
    ]
