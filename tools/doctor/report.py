"""Running every check and printing each with pass/fail and, when it fails, the fix."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from pycrid.adapters.config import Config
from pycrid.server import exitcodes
from pycrid.tools.doctor.backend import backend_checks
from pycrid.tools.doctor.images import check_pause_image
from pycrid.tools.doctor.network import check_cni, check_mirrors
from pycrid.tools.doctor.node import node_checks
from pycrid.tools.doctor.result import Result, failed

CheckGroup = Callable[[Config], list[Result]]

CHECKS: tuple[CheckGroup, ...] = (
    backend_checks,
    check_cni,
    node_checks,
    check_mirrors,
    lambda config: [check_pause_image(config)],
)


def run_checks(config: Config) -> list[Result]:
    """Every check's result; a check that crashes is a failure, never the end of the run."""
    results: list[Result] = []
    for group in CHECKS:
        try:
            results.extend(group(config))
        except Exception as e:
            results.append(failed(getattr(group, "__name__", "check"), repr(e), "report a bug"))
    return results


def print_report(config: Config, results: list[Result], out: TextIO) -> None:
    print(f"pycrid doctor: the {config.adapter} adapter, listening on {config.listen}", file=out)
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"[{r.label}] {r.name.ljust(width)}  {r.detail}", file=out)
        if not r.ok:
            print(f"       {' ' * width}  fix: {r.fix}", file=out)
    failures = sum(1 for r in results if not r.ok and r.required)
    warnings = sum(1 for r in results if not r.ok and not r.required)
    print(
        f"{len(results) - failures - warnings} passed, {failures} failed, {warnings} warnings",
        file=out,
    )


def run_doctor(config: Config, out: TextIO = sys.stdout) -> int:
    """Check, print, and answer the exit status (CHECKS_FAILED when a required check fails)."""
    results = run_checks(config)
    print_report(config, results, out)
    if any(not r.ok and r.required for r in results):
        return exitcodes.CHECKS_FAILED
    return exitcodes.OK
