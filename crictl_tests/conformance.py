"""critest, cri-tools' CRI validation suite, against a pycrid daemon.

Runs every spec but the benchmarks, the way docs/critest.md describes, reads the
per-spec states from Ginkgo's JSON report and compares them with the expected
states in critest-expected/<adapter>.tsv (one ``state<TAB>full spec name`` line
per spec). A spec expected to pass that does not is a regression; a spec that
passes without being expected to is progress, to be recorded in the file.

    python -m crictl_tests.conformance [--adapter docker] [--update]

runs it once by hand (``--update`` rewrites the expected file from the run);
test_conformance.py runs it under pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import grpc

from crictl_tests import harness
from crictl_tests.harness import Daemon
from pycrid.api.cri import api_pb2 as cri

EXPECTED_DIR = Path(__file__).resolve().parent / "critest-expected"
# A bridge and subnet of the conformance run's own, apart from those of the
# other end-to-end tests and of scripts/run.sh, which may run at the same time.
BRIDGE = "pycrid-ct0"
SUBNET = "10.89.78.0/24"
STATES = ("passed", "failed", "skipped")
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
# Ginkgo's spec states, as the three of the expected files.
GINKGO_STATES = {
    "passed": "passed",
    "skipped": "skipped",
    "pending": "skipped",
    "failed": "failed",
    "panicked": "failed",
    "timedout": "failed",
    "interrupted": "failed",
    "aborted": "failed",
}
NOT_EXPECTED, NOT_RUN = "not expected", "not run"
CRITEST_TIMEOUT = 45 * 60
CALL_TIMEOUT = 60


def expected_path(adapter: str) -> Path:
    return EXPECTED_DIR / f"{adapter}.tsv"


def read_expected(path: Path) -> dict[str, str]:
    """Spec name -> expected state, from ``state<TAB>name`` lines."""
    expected: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        state, _, name = line.partition("\t")
        if state not in STATES or not name:
            raise ValueError(f"{path}:{number}: not 'state<TAB>spec name': {line!r}")
        expected[name] = state
    return expected


def write_expected(path: Path, results: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{results[name]}\t{name}\n" for name in sorted(results)))


@dataclass
class Report:
    """What one critest run did, from its JSON report."""

    results: dict[str, str] = field(default_factory=dict)  # spec name -> state
    failures: dict[str, str] = field(default_factory=dict)  # spec name -> failure message
    suite_problems: list[str] = field(default_factory=list)  # failed suite-level nodes

    def counts(self) -> Counter[str]:
        return Counter(self.results.values())

    def summary(self, adapter: str, seconds: float) -> str:
        counts = self.counts()
        states = ", ".join(f"{counts[state]} {state}" for state in STATES)
        return f"critest {adapter}: {states} ({len(self.results)} specs, {seconds:.0f} s)"


def read_report(path: Path) -> Report:
    """The per-spec states of a ``-ginkgo.json-report`` file."""
    report = Report()
    for suite in json.loads(path.read_text()):
        for spec in suite.get("SpecReports") or []:
            state = GINKGO_STATES.get(spec["State"], "failed")
            message = (spec.get("Failure") or {}).get("Message", "")
            if spec["LeafNodeType"] != "It":
                if state == "failed":
                    report.suite_problems.append(f"{spec['LeafNodeType']}: {message}")
                continue
            name = " ".join([*(spec.get("ContainerHierarchyTexts") or []), spec["LeafNodeText"]])
            report.results[name] = state
            if state == "failed":
                report.failures[name] = message
    return report


@dataclass
class Comparison:
    """A run's results against the expected ones."""

    regressions: list[tuple[str, str]] = field(default_factory=list)  # (spec, state now)
    newly_passing: list[tuple[str, str]] = field(default_factory=list)  # (spec, state expected)
    other_changes: list[tuple[str, str, str]] = field(default_factory=list)  # (spec, was, now)

    def lines(self) -> list[str]:
        out = [f"  REGRESSION: {spec} (expected passed, {now})" for spec, now in self.regressions]
        out += [f"  newly passes: {spec} ({_was(was)})" for spec, was in self.newly_passing]
        out += [f"  changed: {spec} ({_was(was)}, {now})" for spec, was, now in self.other_changes]
        return out


def _was(state: str) -> str:
    return "not in the expected file" if state == NOT_EXPECTED else f"expected {state}"


def compare(expected: dict[str, str], results: dict[str, str]) -> Comparison:
    comparison = Comparison()
    for spec in sorted(expected.keys() | results.keys()):
        was, now = expected.get(spec, NOT_EXPECTED), results.get(spec, NOT_RUN)
        if was == now:
            continue
        if was == "passed":
            comparison.regressions.append((spec, now))
        elif now == "passed":
            comparison.newly_passing.append((spec, was))
        else:
            comparison.other_changes.append((spec, was, now))
    return comparison


def write_cni_conf(root: Path) -> Path:
    """A CNI config dir with the shipped conflist on the run's own bridge; returns it."""
    return harness.write_cni_conf(root, BRIDGE, SUBNET)[0]


NO_DOCKER = "unix:///nonexistent/docker.sock"


def daemon_config(conf_dir: Path, adapter: str = "docker") -> dict[str, Any]:
    """What the run's daemon adds to harness.base_config: CNI networking.

    The oci adapter runs with the Docker endpoint pointing where nothing
    listens: nothing of it may need Docker.
    """
    config: dict[str, Any] = {"network": {"mode": "cni", "cni_conf_dir": str(conf_dir)}}
    if adapter != "docker":
        config["docker"] = {"endpoint": NO_DOCKER}
    return config


def registry_image_id(repository: str, tag: str) -> str | None:
    """The image ID (config digest) the local registry serves for ``repository:tag``."""
    request = urllib.request.Request(
        f"{harness.LOCAL_MIRROR}/v2/{repository}/manifests/{tag}",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["config"]["digest"]
    except (OSError, ValueError, KeyError):
        return None


def stale_docker_images(api: docker.APIClient) -> list[str]:
    """dockerd's tags under mirrored names whose image is not what the registry serves.

    critest uses an image that is present without pulling it, so an image left
    by an older build of the test images would be tested instead of the
    current one.
    """
    stale = []
    for image in api.images():
        for name in image.get("RepoTags") or []:
            host, _, rest = name.partition("/")
            repository, _, tag = rest.rpartition(":")
            mirrored = host in harness.MIRRORED_REGISTRIES and repository
            if mirrored and registry_image_id(repository, tag) != image["Id"]:
                stale.append(name)
    return stale


def remove_stale_docker_images() -> list[str]:
    """Untag the stale images that no container uses; returns the names removed."""
    removed = []
    api = docker.APIClient(base_url=f"unix://{harness.DOCKER_SOCKET}", version="auto")
    try:
        for name in stale_docker_images(api):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_image(name)
                removed.append(name)
    finally:
        api.close()
    return removed


def busy_ports() -> list[int]:
    """critest's host ports that something else holds now."""
    busy = []
    for port in harness.CRITEST_HOST_PORTS:
        with socket.socket() as s:
            # Connections that are over (TIME_WAIT) do not count.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    busy.append(port)
    return busy


def critest_argv(critest: str, endpoint: str, report: Path) -> list[str]:
    return [
        critest,
        "-runtime-endpoint", endpoint,
        "-image-endpoint", endpoint,
        "-ginkgo.skip", "benchmark",
        "-ginkgo.v",
        "-ginkgo.no-color",
        "-ginkgo.json-report", str(report),
    ]  # fmt: skip


@dataclass
class Run:
    report: Report
    seconds: float
    output: Path  # critest's own output
    returncode: int


def run_critest(critest: str, daemon: Daemon, workdir: Path) -> Run:
    """critest against ``daemon``, its only client; output and report go to ``workdir``."""
    report_path, output = workdir / "critest-report.json", workdir / "critest.log"
    with harness.critest_lock():
        busy = busy_ports()
        if busy:
            raise RuntimeError(f"critest needs host ports {busy}, which are in use")
        started = time.monotonic()
        with open(output, "wb") as log:
            done = subprocess.run(
                critest_argv(critest, daemon.endpoint, report_path),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                timeout=CRITEST_TIMEOUT,
                check=False,
            )
        seconds = time.monotonic() - started
    if not report_path.exists():
        raise RuntimeError(f"critest wrote no report (exit {done.returncode}); see {output}")
    return Run(read_report(report_path), seconds, output, done.returncode)


def remove_everything(daemon: Daemon) -> None:
    """Remove the pods and containers that critest left on ``daemon``, if any."""
    rt = daemon.runtime
    containers = rt.ListContainers(cri.ListContainersRequest(), timeout=CALL_TIMEOUT).containers
    for container in containers:
        with contextlib.suppress(grpc.RpcError):
            rt.RemoveContainer(
                cri.RemoveContainerRequest(container_id=container.id), timeout=CALL_TIMEOUT
            )
    for sandbox in rt.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=CALL_TIMEOUT).items:
        with contextlib.suppress(grpc.RpcError):
            rt.StopPodSandbox(
                cri.StopPodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=CALL_TIMEOUT
            )
            rt.RemovePodSandbox(
                cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=CALL_TIMEOUT
            )


@contextlib.contextmanager
def conformance_daemon(adapter: str, workdir: Path) -> Iterator[Daemon]:
    """A daemon for critest in CNI mode; its log is copied to ``workdir`` at the end."""
    daemon = harness.start_daemon(adapter, daemon_config(write_cni_conf(workdir), adapter))
    try:
        yield daemon
    finally:
        with contextlib.suppress(grpc.RpcError, ValueError):
            remove_everything(daemon)
        daemon.stop()
        with contextlib.suppress(OSError):
            shutil.copyfile(daemon.log_path, workdir / "daemon.log")
        harness.remove_root(daemon)


def run(adapter: str, critest: str, workdir: Path) -> Run:
    """Start a daemon, run critest against it, stop the daemon."""
    if adapter == "docker":
        for name in remove_stale_docker_images():
            print(f"removed {name} from dockerd: not the registry's image", file=sys.stderr)
    with conformance_daemon(adapter, workdir) as daemon:
        return run_critest(critest, daemon, workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", default="docker")
    parser.add_argument("--update", action="store_true", help="rewrite the expected file")
    parser.add_argument("--workdir", type=Path, help="keep critest's output here")
    args = parser.parse_args(argv)
    critest = harness.find_tool("critest")
    if critest is None:
        print(f"critest is neither on PATH nor in {harness.SHARED_TOOLS}", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pycrid-critest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    done = run(args.adapter, critest, workdir)
    print(done.report.summary(args.adapter, done.seconds))
    print(f"critest output: {done.output}")
    for problem in done.report.suite_problems:
        print(f"suite failure: {problem}")
    path = expected_path(args.adapter)
    if args.update:
        write_expected(path, done.report.results)
        print(f"wrote {path}")
        return 0
    if not path.exists():
        print(f"no expected results in {path} (--update writes them)")
        return 1
    comparison = compare(read_expected(path), done.report.results)
    print("\n".join(comparison.lines()))
    return 1 if comparison.regressions or done.report.suite_problems else 0


if __name__ == "__main__":
    sys.exit(main())
