"""The pods taken over from cri-dockerd, once taken: what their removal owes it.

Adoption itself (adopt.py) runs at start-up. Afterwards an adopted pod is an
ordinary record, except that removing it also removes cri-dockerd's sandbox
file, as cri-dockerd would, and its marker that says it was adopted.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pycrid.adapters.docker.api import Filters
from pycrid.adapters.docker.context import DockerContext

CRI_DOCKERD = "cri-dockerd"
TYPE_LABEL = "io.kubernetes.docker.type"
SANDBOX_FILE_DIR = "sandbox"
LISTED: Filters = {"label": [TYPE_LABEL]}
"""The ``docker ps`` filter of cri-dockerd's pods and containers."""


def enabled(ctx: DockerContext) -> bool:
    return CRI_DOCKERD in ctx.config.docker.adopt


def marker(ctx: DockerContext, sandbox_id: str) -> Path:
    return ctx.store.files.sandboxes.parent / "adopted" / sandbox_id


def was_adopted(ctx: DockerContext, sandbox_id: str) -> bool:
    """Whether pycrid took the pod over from cri-dockerd (kept until the pod is removed)."""
    return marker(ctx, sandbox_id).exists()


def forget_sandbox(ctx: DockerContext, sandbox_id: str) -> None:
    """An adopted pod removed: its cri-dockerd sandbox file goes too, as cri-dockerd would do."""
    with contextlib.suppress(FileNotFoundError):
        marker(ctx, sandbox_id).unlink()
    if enabled(ctx):
        path = Path(ctx.config.docker.cri_dockerd_root) / SANDBOX_FILE_DIR / sandbox_id
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
