"""The committed CRI modules match the schema, and the schema matches the CRI."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from pycrid.api.cri import api_pb2

REPO = Path(__file__).resolve().parents[1]
WIRE_CHECK = REPO.parent / "shared" / "tools" / "check-cri-wire.py"


def _generator():
    spec = importlib.util.spec_from_file_location("generate", REPO / "api" / "cri" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_modules_are_current():
    assert _generator().stale_modules() == [], "run `make proto` and commit the result"


def test_services_have_every_cri_method():
    services = api_pb2.DESCRIPTOR.services_by_name
    assert set(services) == {"RuntimeService", "ImageService"}
    assert services["RuntimeService"].full_name == "runtime.v1.RuntimeService"
    assert len(services["RuntimeService"].methods) == 35
    assert len(services["ImageService"].methods) == 6


@pytest.mark.skipif(
    not WIRE_CHECK.exists(), reason="the reference wire check is not beside the repo"
)
def test_wire_protocol_is_identical_to_the_reference():
    result = subprocess.run(
        [sys.executable, str(WIRE_CHECK), str(REPO / "api" / "cri" / "api.proto")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical" in result.stdout
