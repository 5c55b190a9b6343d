"""The floor server of bench/relist.py starts and answers from its dicts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from pycrid.api.cri import api_pb2 as cri

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_relist(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/relist.py as a module (it imports ``common`` from its own directory)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_relist", BENCH / "relist.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_floor_answers_from_its_dicts(monkeypatch: pytest.MonkeyPatch) -> None:
    relist = load_relist(monkeypatch)
    pods = {
        f"pod{i}": cri.PodSandbox(
            id=f"pod{i}",
            metadata=cri.PodSandboxMetadata(name=f"bench-{i}", namespace="bench", uid=f"uid{i}"),
            state=cri.SANDBOX_READY,
            created_at=1_700_000_000_000_000_000 + i,
            labels={"app": "bench"},
        )
        for i in range(3)
    }
    status = cri.PodSandboxStatusResponse(status=cri.PodSandboxStatus(id="pod1"))
    data = relist.FloorData(
        pods=pods, containers={}, pod_statuses={"pod1": status}, container_statuses={}
    )
    with relist.floor_server(data) as floor:
        listed = floor.runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=10)
        assert list(listed.items) == list(pods.values())
        answer = floor.runtime.PodSandboxStatus(
            cri.PodSandboxStatusRequest(pod_sandbox_id="pod1"), timeout=10
        )
        assert answer == status
        with pytest.raises(grpc.RpcError) as missing:
            floor.runtime.ContainerStatus(cri.ContainerStatusRequest(container_id="c"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert floor.process.poll() is not None


def test_the_echo_probe_round_trips_and_reaps_its_child(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    relist = load_relist(monkeypatch)
    children_before = _children(os.getpid())
    assert relist.echo_ms(0.0, rounds=3) > 0
    assert _children(os.getpid()) == children_before


def _children(pid: int) -> set[str]:
    from pathlib import Path

    return set(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
