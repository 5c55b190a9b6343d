"""The oci adapter's pulls tell their progress in the log, at a bounded rate."""

from __future__ import annotations

import logging
import time

import pytest

from pycrid.adapters.oci.images.pull import MIB, REPORT_EVERY, PullStats


def test_progress_is_told_at_most_every_few_seconds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pycrid.oci.pull")
    stats = PullStats(name="registry.k8s.io/app:1", layers_total=3, bytes_total=4 * MIB)
    stats.layers_fetched = 1
    stats.downloaded(MIB)  # too soon after the start: nothing yet
    assert caplog.records == []
    stats.last_report = time.monotonic() - REPORT_EVERY
    stats.downloaded(MIB)
    stats.downloaded(MIB)  # just told: nothing
    assert [r.getMessage() for r in caplog.records] == [
        "pulling registry.k8s.io/app:1: 1 of 3 layers done, 2.0 of 4.0 MiB downloaded"
    ]
    assert stats.downloaded_bytes == 3 * MIB
