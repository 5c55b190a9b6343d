"""critest, the CRI validation suite, against each adapter (see conformance.py).

Every spec that critest-expected/<adapter>.tsv expects to pass must pass; specs
that pass without being expected to are reported in the session's summary, to
be recorded in the file (``python -m crictl_tests.conformance --update``).
About a minute and a half per adapter; ``-m "not conformance"`` deselects it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crictl_tests import conformance

ADAPTERS = ["docker", "oci"]
MESSAGE_LINES = 12


def failure_text(report: conformance.Report, spec: str) -> str:
    message = report.failures.get(spec, "").strip().splitlines()[:MESSAGE_LINES]
    return "\n".join(f"      {line}" for line in message)


@pytest.mark.conformance
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_critest(
    adapter: str,
    critest: str,
    test_registry: None,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    conformance_summary: list[str],
) -> None:
    if adapter == "docker":
        request.getfixturevalue("docker_engine")
    expected = conformance.read_expected(conformance.expected_path(adapter))

    done = conformance.run(adapter, critest, tmp_path)

    report = done.report
    comparison = conformance.compare(expected, report.results)
    conformance_summary.append(report.summary(adapter, done.seconds))
    conformance_summary.extend(comparison.lines())
    where = f"critest's output: {done.output}\nthe daemon's log: {tmp_path / 'daemon.log'}"
    if report.suite_problems or not report.results:
        problems = "\n".join(report.suite_problems) or f"no spec ran (exit {done.returncode})"
        pytest.fail(f"critest failed as a whole:\n{problems}\n{where}", pytrace=False)
    if comparison.regressions:
        regressions = "\n".join(
            f"  {spec} ({now})\n{failure_text(report, spec)}"
            for spec, now in comparison.regressions
        )
        pytest.fail(f"expected to pass, but did not:\n{regressions}\n{where}", pytrace=False)
