"""Names, labels and timestamps of the docker adapter."""

from __future__ import annotations

import pytest

from pycrid.adapters.docker import naming
from pycrid.api.cri import api_pb2 as cri

INSTANCE = "0123456789abcdef"


def sandbox_config() -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="web", namespace="default", uid="u-1", attempt=2),
        labels={"app": "web", "io.pycrid.kind": "spoofed"},
        annotations={"a": "b"},
    )


def test_instance_id_is_stable_per_state_dir(tmp_path) -> None:
    assert naming.instance_id(str(tmp_path)) == naming.instance_id(str(tmp_path) + "/")
    assert naming.instance_id(str(tmp_path)) != naming.instance_id(str(tmp_path / "other"))
    assert len(naming.instance_id(str(tmp_path))) == 16


def test_names_encode_the_metadata_and_stay_docker_safe() -> None:
    config = sandbox_config()
    assert naming.sandbox_name(config.metadata, INSTANCE) == "k8s_POD_web_default_u-1_2_01234567"
    container = cri.ContainerMetadata(name="app:v1", attempt=0)
    assert (
        naming.container_name(container, config.metadata, INSTANCE)
        == "k8s_app-v1_web_default_u-1_0_01234567"
    )


def test_sandbox_labels_round_trip_and_user_labels_cannot_spoof() -> None:
    config = sandbox_config()
    labels = naming.sandbox_labels(config, INSTANCE, "runc")
    assert labels["app"] == "web"
    assert labels[naming.KIND_LABEL] == naming.SANDBOX
    owned = naming.read_labels(labels, INSTANCE)
    assert owned is not None
    assert owned.kind == naming.SANDBOX
    assert owned.config == config
    assert owned.runtime_handler == "runc"


def test_container_labels_round_trip() -> None:
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="c"),
        image=cri.ImageSpec(image="busybox"),
        labels={"x": "y"},
        annotations={"k": "v"},
    )
    labels = naming.container_labels(config, INSTANCE, "sandbox-id", "/logs/c.log")
    owned = naming.read_labels(labels, INSTANCE)
    assert owned is not None
    assert owned.config == config
    assert owned.sandbox_id == "sandbox-id"
    assert owned.log_path == "/logs/c.log"


def test_labels_of_another_instance_or_broken_labels_are_not_ours() -> None:
    labels = naming.sandbox_labels(sandbox_config(), INSTANCE, "")
    assert naming.read_labels(labels, "another-instance") is None
    assert naming.read_labels(None, INSTANCE) is None
    broken = {**labels, naming.CONFIG_LABEL: "not base64!"}
    assert naming.read_labels(broken, INSTANCE) is None
    unknown_kind = {**labels, naming.KIND_LABEL: "volume"}
    assert naming.read_labels(unknown_kind, INSTANCE) is None


def test_instance_filter() -> None:
    assert naming.instance_filter(INSTANCE, naming.CONTAINER) == {
        "label": [f"io.pycrid.instance={INSTANCE}", "io.pycrid.kind=container"]
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        (None, 0),
        ("0001-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01.000000001Z", 1_000_000_001),
        ("2026-11-26T08:39:48.800573769Z", 1795682388_800573769),
        ("2026-11-26T08:39:48Z", 1795682388_000000000),
        ("2026-11-26T09:39:48.5+01:00", 1795682388_500000000),
    ],
)
def test_docker_time_ns(text: str | None, expected: int) -> None:
    assert naming.docker_time_ns(text) == expected
