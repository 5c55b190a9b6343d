"""Pull times of the oci adapter beside ``docker pull``, and unpack throughput.

    python bench/oci_pull.py [--image 127.0.0.1:5000/pycrid/multilayer:latest] [--runs 3]

Needs the test environment (scripts/testenv.sh up): dockerd and the local
registry. For each run it measures, with the same image from the same
registry:

- oci cold: an empty image store, every layer fetched and unpacked;
- oci cold, base present: the store already holds the busybox base image
  (which is how dockerd on this machine stands, so this is the fair comparison);
- oci warm: the image is already there (the manifest is fetched and compared);
- docker cold / warm: ``docker rmi`` then ``docker pull``, and ``docker pull`` again.

Then it unpacks the image's layer blobs from the store again, in this
process, and reports MB/s of uncompressed layer content. Prints a table; it
asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pycrid.adapters.oci.images.store import ContentStore
from pycrid.adapters.oci.images.unpack import unpack_file
from pycrid.api.cri import api_pb2 as cri
from pycrid.tools import scratchdaemon

DEFAULT_IMAGE = "127.0.0.1:5000/pycrid/multilayer:latest"
BASE_IMAGE = "127.0.0.1:5000/e2e-test-images/busybox:1.29-2"
DOCKER = shutil.which("docker") or "/usr/bin/docker"


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def cri_pull(daemon: scratchdaemon.Daemon, image: str) -> str:
    request = cri.PullImageRequest(image=cri.ImageSpec(image=image))
    return daemon.images.PullImage(request, timeout=600).image_ref


def cri_remove(daemon: scratchdaemon.Daemon, image: str) -> None:
    request = cri.RemoveImageRequest(image=cri.ImageSpec(image=image))
    daemon.images.RemoveImage(request, timeout=600)


def docker(*args: str) -> None:
    subprocess.run([DOCKER, *args], check=True, capture_output=True)


def docker_remove(image: str) -> None:
    subprocess.run([DOCKER, "rmi", "-f", image], capture_output=True)


def unpack_throughput(store: ContentStore, image_id: str) -> tuple[int, int, float]:
    """(blob bytes, uncompressed tar bytes, seconds) to unpack the image's layers again."""
    record = store.get(image_id)
    assert record is not None
    compressed = uncompressed = 0
    seconds = 0.0
    with tempfile.TemporaryDirectory(dir=store.root) as scratch:
        for n, layer in enumerate(record.layers):
            target = Path(scratch) / str(n)
            target.mkdir()
            blob = store.blob_path(layer.digest)
            started = time.perf_counter()
            result = unpack_file(blob, target, layer.diff_id)
            seconds += time.perf_counter() - started
            compressed += blob.stat().st_size
            uncompressed += result.stream_size
            assert result.diff_id == layer.diff_id
    return compressed, uncompressed, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not scratchdaemon.registry_answers() or not scratchdaemon.docker_answers():
        print("needs dockerd and the registry on 127.0.0.1:5000: bash scripts/testenv.sh up")
        return 2

    results: dict[str, list[float]] = {
        "oci cold": [],
        "oci cold, base present": [],
        "oci warm": [],
        "docker cold": [],
        "docker warm": [],
    }
    daemon = scratchdaemon.start_daemon("oci", {"log_level": "info"})
    try:
        for _ in range(args.runs):
            cri_remove(daemon, args.image)
            cri_remove(daemon, BASE_IMAGE)
            results["oci cold"].append(timed(lambda: cri_pull(daemon, args.image)))
            results["oci warm"].append(timed(lambda: cri_pull(daemon, args.image)))
            cri_remove(daemon, args.image)
            cri_pull(daemon, BASE_IMAGE)
            results["oci cold, base present"].append(timed(lambda: cri_pull(daemon, args.image)))

            docker_remove(args.image)
            results["docker cold"].append(timed(lambda: docker("pull", "-q", args.image)))
            results["docker warm"].append(timed(lambda: docker("pull", "-q", args.image)))
        image_id = cri_pull(daemon, args.image)
        store = ContentStore(Path(daemon.config["state_dir"]) / "oci")
        store.open()
        compressed, uncompressed, seconds = unpack_throughput(store, image_id)
    finally:
        daemon.stop()
        scratchdaemon.remove_root(daemon)

    print(f"image {args.image}, {args.runs} runs, median (min-max) seconds")
    for name, times in results.items():
        print(f"  {name:<24} {statistics.median(times):7.3f}  ({min(times):.3f}-{max(times):.3f})")
    mib = 1024 * 1024
    print(
        f"unpack: {uncompressed / mib:.1f} MiB of tar streams from {compressed / mib:.1f} MiB "
        f"of gzip blobs in {seconds:.3f}s = {uncompressed / mib / seconds:.0f} MiB/s "
        f"({compressed / mib / seconds:.0f} MiB/s compressed)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
