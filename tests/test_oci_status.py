"""The oci adapter's Status: runc and conmon looked up, the plain answer kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycrid.adapters.config import Config
from pycrid.adapters.oci.runtime.info import OciRuntimeInfo
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.api.cri import api_pb2 as cri


def _install(directory: Path, name: str) -> Path:
    binary = directory / name
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return binary


def _runtime_ready(response: cri.StatusResponse) -> cri.RuntimeCondition:
    return next(c for c in response.status.conditions if c.type == "RuntimeReady")


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


async def test_the_plain_answer_is_kept_while_nothing_changes(
    bin_dir: Path, tmp_path: Path
) -> None:
    _install(bin_dir, "runc")
    _install(bin_dir, "conmon")
    info = OciRuntimeInfo(Config(), NodeFacts(), tmp_path)
    first = await info.status(cri.StatusRequest())
    assert _runtime_ready(first).status
    assert await info.status(cri.StatusRequest()) is first
    verbose = await info.status(cri.StatusRequest(verbose=True))
    assert verbose is not first and "config" in verbose.info
    assert not first.info  # the kept answer got nothing of the verbose one


async def test_a_binary_that_goes_and_comes_back_is_seen(bin_dir: Path, tmp_path: Path) -> None:
    runc = _install(bin_dir, "runc")
    _install(bin_dir, "conmon")
    info = OciRuntimeInfo(Config(), NodeFacts(), tmp_path)
    assert _runtime_ready(await info.status(cri.StatusRequest())).status
    runc.unlink()
    gone = _runtime_ready(await info.status(cri.StatusRequest()))
    assert not gone.status
    assert gone.reason == "RuntimeNotInstalled" and "runc" in gone.message
    other = bin_dir / "later"
    other.mkdir()
    _install(other, "runc")
    info_path = f"{bin_dir}:{other}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", info_path)
        assert _runtime_ready(await info.status(cri.StatusRequest())).status
