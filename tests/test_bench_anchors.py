"""bench/anchors.py prints each figure beside its reference, with the right ratio."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    """A bench script as a module (they import their neighbours by bare name)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_the_report_sets_each_adapter_beside_its_anchor_and_the_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    anchors = load(monkeypatch, "anchors")
    largeimage = sys.modules["largeimage"]

    def result(name: str, start: float, listing: float, floor: float | None) -> object:
        level = anchors.Level(100)
        level.starts.samples["pod start"] = [start]
        for call in anchors.READ_CALLS:
            level.reads.samples[call] = [listing]
            if floor is not None:
                level.floor.samples[call] = [floor]
        for call in anchors.NODE_CALLS:
            level.reads.samples[call] = [listing]
            if floor is not None and call in anchors.FLOORED_NODE_CALLS:
                level.floor.samples[call] = [floor]
        level.pss_kib = 100 * 1024 + 100 * 1024  # 1 MiB per pod over the empty runtime
        level.rss_kib = 50 * 1024
        made = anchors.Result(name, levels=[level], empty_pss_kib=100 * 1024)
        made.relist = anchors.Relist(2.0, 0.0, 1.0 if floor is not None else None)
        made.bursts = [(5.0, [100.0, 200.0]), (7.0, [300.0])]
        if name in ("oci", "containerd"):
            made.pulls = largeimage.Pulls([1.0 if name == "oci" else 2.0], [0.1], [4.0])
        return made

    results = {
        "docker": result("docker", 400, 1.2, 1.0),
        "oci": result("oci", 150, 1.1, 1.0),
        "containerd": result("containerd", 200, 0.5, None),
        "cri-dockerd": result("cri-dockerd", 500, 20.0, None),
    }
    args = argparse.Namespace(
        counts=[100],
        repeats=3,
        stats_repeats=1,
        format="markdown",
        burst=50,
        in_flight=10,
        pull_runs=1,
        burst_rounds=2,
    )
    text = anchors.report(results, args)
    at_100 = text.split("**Burst")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in at_100.splitlines() if "|" in line}

    def cells(title: str) -> list[str]:
        return [cell.strip() for cell in rows[title].strip("|").split("|")]

    def row(title: str) -> dict[str, str]:
        return dict(zip(cells("measure"), cells(title), strict=True))

    assert row("pod start (ms)")["oci / containerd"] == "0.75"
    assert row("pod start (ms)")["docker / cri-dockerd"] == "0.80"
    listing = row("ListPodSandbox (ms)")
    assert (listing["oci / floor"], listing["docker / floor"]) == ("1.10", "1.20")
    assert row("memory per pod, daemon + shims (PSS, MiB)")["pycrid oci"] == "1.00"
    assert row("Status (ms)")["docker / floor"] == "1.20"
    assert "| cold pull | 1.00 | 2.00 | 0.50 |" in text
    assert "| all running (s) | 6.00 | 6.00 | 6.00 | 6.00 | 1.00 | 1.00 |" in text
    assert "one pod, p99 (ms)" in text
