"""A large image in the local registry, and the time a runtime takes to pull it.

The image is ``127.0.0.1:5000/pycrid/large:v1`` to ``v4``: each tag is ten
layers of 30 MB of seeded pseudo-random data (incompressible, so the transfer
and the gzip stream are as large as the content), FROM scratch, with layers
of their own, so that four concurrent pulls of different tags share nothing.
The build (about 1.2 GB through ``docker build`` and ``docker push``) runs
once; later runs find the tags in the registry and skip it.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from pycrid.api.cri import api_pb2 as cri

REGISTRY = "127.0.0.1:5000"
REPOSITORY = "pycrid/large"
TAGS = ("v1", "v2", "v3", "v4")
LAYERS = 10
LAYER_BYTES = 30 * 1000 * 1000
DOCKER = shutil.which("docker") or "/usr/bin/docker"
PULL_TIMEOUT = 900


def reference(tag: str) -> str:
    return f"{REGISTRY}/{REPOSITORY}:{tag}"


def in_registry(tag: str) -> bool:
    request = urllib.request.Request(
        f"http://{REGISTRY}/v2/{REPOSITORY}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except (urllib.error.URLError, OSError):
        return False


def build_and_push(tag: str) -> None:
    """Build one tag out of seeded random layers, push it and drop the local copy."""
    with tempfile.TemporaryDirectory(prefix="pycrid-large-") as context:
        lines = ["FROM scratch"]
        for layer in range(LAYERS):
            name = f"layer{layer}.bin"
            seed = random.Random(f"pycrid-large-{tag}-{layer}")
            Path(context, name).write_bytes(seed.randbytes(LAYER_BYTES))
            lines.append(f"COPY {name} /data/{name}")
        Path(context, "Dockerfile").write_text("\n".join(lines) + "\n")
        env = {"DOCKER_BUILDKIT": "0", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        subprocess.run(
            [DOCKER, "build", "-q", "-t", reference(tag), context],
            check=True,
            capture_output=True,
            env=env,
        )
    subprocess.run([DOCKER, "push", reference(tag)], check=True, capture_output=True)
    subprocess.run([DOCKER, "rmi", reference(tag)], check=False, capture_output=True)


def ensure_pushed(progress: Any) -> None:
    for tag in TAGS:
        if not in_registry(tag):
            progress(f"building {reference(tag)} ({LAYERS} layers of {LAYER_BYTES // 10**6} MB)")
            build_and_push(tag)


@dataclass
class Pulls:
    """Seconds: a cold pull of v1, a warm pull of v1, four tags pulled at once (to all done)."""

    cold: list[float]
    warm: list[float]
    concurrent: list[float]

    @classmethod
    def none(cls) -> Pulls:
        return cls([], [], [])

    def add(self, other: Pulls) -> None:
        self.cold += other.cold
        self.warm += other.warm
        self.concurrent += other.concurrent


def _pull(images: Any, tag: str) -> float:
    started = time.perf_counter()
    images.PullImage(
        cri.PullImageRequest(image=cri.ImageSpec(image=reference(tag))), timeout=PULL_TIMEOUT
    )
    return time.perf_counter() - started


def _remove(images: Any, tag: str) -> None:
    try:
        images.RemoveImage(
            cri.RemoveImageRequest(image=cri.ImageSpec(image=reference(tag))), timeout=PULL_TIMEOUT
        )
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise


def measure(images: Any, runs: int) -> Pulls:
    """Cold, warm and four concurrent pulls through the CRI ``images`` service."""
    pulls = Pulls([], [], [])
    try:
        for _ in range(runs):
            for tag in TAGS:
                _remove(images, tag)
            pulls.cold.append(_pull(images, "v1"))
            pulls.warm.append(_pull(images, "v1"))
            _remove(images, "v1")
            started = time.perf_counter()
            with ThreadPoolExecutor(len(TAGS)) as pool:
                list(pool.map(lambda tag: _pull(images, tag), TAGS))
            pulls.concurrent.append(time.perf_counter() - started)
    finally:
        for tag in TAGS:
            _remove(images, tag)
    return pulls
