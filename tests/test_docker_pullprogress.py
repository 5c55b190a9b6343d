"""A Docker pull's progress, told at a bounded rate."""

from __future__ import annotations

import logging

import pytest

from pycrid.adapters.docker.pullprogress import REPORT_EVERY, PullProgress


def test_progress_is_summed_over_layers_and_told_at_most_every_few_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    progress = PullProgress("registry.k8s.io/app:1", clock=lambda: now[0])
    caplog.set_level(logging.INFO, "pycrid.docker.images")
    mib = 1024 * 1024
    for step in range(1, 11):
        progress.take(
            {
                "status": "Downloading",
                "id": "a",
                "progressDetail": {"current": step * mib, "total": 10 * mib},
            }
        )
        progress.take(
            {
                "status": "Downloading",
                "id": "b",
                "progressDetail": {"current": mib, "total": 2 * mib},
            }
        )
        now[0] += 1.0
    progress.take({"status": "Pull complete", "id": "a"})
    progress.take({"status": "Already exists", "id": "c"})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == int(10 // REPORT_EVERY)
    assert lines[0].startswith("pulling registry.k8s.io/app:1: 0 of 2 layers done")
    assert progress.summary() == "2 of 3 layers done, 11.0 MiB of 12.0 MiB downloaded"
    assert progress.elapsed == pytest.approx(10.0)


def test_documents_without_layers_or_numbers_are_ignored() -> None:
    progress = PullProgress("x")
    progress.take({"status": "Pulling from app"})
    progress.take({"status": "Downloading", "id": "a", "progressDetail": {}})
    progress.take({"status": "Digest: sha256:0"})
    assert progress.summary() == "0 of 0 layers done"
