"""A node container: Debian booting systemd as PID 1, the way kind runs its nodes.

The image comes from scripts/nodeimage.sh (built once, cached by its inputs).
The container gets no cgroup mount from the host: its entry point mounts a
tmpfs and the v1 hierarchies of its own private cgroup namespace. A node that
runs dockerd has a network namespace of its own: dockerd with
``"bridge": "none"`` deletes any ``docker0`` it finds, and in the host's
namespace that would be the host's. A node without dockerd may share the host's
network to reach the test registry on 127.0.0.1:5000 (its pods are host-network
pods, so nothing in it creates a bridge). The node's state directories are
anonymous volumes (overlayfs cannot sit on the container's own overlay),
removed with the container.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from crictl_tests import harness
from pycrid.adapters.node.hostfacts import CAPABILITY_NAMES

REPO = harness.REPO_ROOT
NODEIMAGE = REPO / "scripts" / "nodeimage.sh"
DOCKER = "/usr/bin/docker"
VOLUMES = ("/var/lib/docker", "/var/lib/containerd", "/var/lib/pycrid", "/var/lib/kubelet")
UNSUPPORTED_BY_DOCKER_20 = {"BPF", "PERFMON", "CHECKPOINT_RESTORE"}
SIGRTMIN_3 = "37"
"""systemd halts cleanly on SIGRTMIN+3 (glibc's SIGRTMIN is 34)."""


def bounding_capabilities() -> list[str]:
    """Capability names of this process's bounding set that Docker 20.10 knows.

    ``--privileged`` asks for every capability, and runc fails where root's
    bounding set lacks one (CAP_SYS_RESOURCE here); one ``--cap-add`` per
    capability that is there works instead.
    """
    status = Path("/proc/self/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("CapBnd"))
    mask = int(line.split()[1], 16)
    names = []
    for bit, name in enumerate(CAPABILITY_NAMES):
        if mask >> bit & 1 and name not in UNSUPPORTED_BY_DOCKER_20:
            names.append(name)
    return names


def build_image() -> str:
    """The node image's name, built first when its inputs changed."""
    done = subprocess.run(
        ["bash", str(NODEIMAGE), "build"], capture_output=True, text=True, timeout=1200
    )
    if done.returncode != 0:
        raise RuntimeError(f"nodeimage.sh build failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def can_build() -> str | None:
    """Why no node can be had on this machine, or None."""
    if not harness.docker_answers():
        return "dockerd is not running"
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        return "debootstrap is not installed (apt-get install debootstrap)"
    return None


@dataclass
class Node:
    name: str
    image: str
    network: str = "bridge"
    """"host" (the host's network namespace) or a Docker network of its own."""
    boot_seconds: float = 0.0

    def start(self) -> None:
        argv = [
            DOCKER,
            "run",
            "-d",
            "--name",
            self.name,
            "--hostname",
            self.name,
            "--network",
            self.network,
            "--cgroupns",
            "private",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--device-cgroup-rule",
            "a *:* rwm",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            *(arg for cap in bounding_capabilities() for arg in ("--cap-add", cap)),
            *(arg for volume in VOLUMES for arg in ("-v", volume)),
            self.image,
        ]
        started = time.monotonic()
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
        self.boot_seconds = self.wait_running(started)

    def wait_running(self, started: float, timeout: float = 60.0) -> float:
        """Seconds from ``started`` until systemd says ``running``."""
        state = ""
        while time.monotonic() - started < timeout:
            state = self.sh("systemctl is-system-running", check=False).stdout.strip()
            if state == "running":
                return time.monotonic() - started
            if state == "degraded":
                failed = self.sh("systemctl --failed --no-legend", check=False).stdout
                raise AssertionError(f"node {self.name} is degraded: {failed}")
            time.sleep(0.2)
        raise AssertionError(f"node {self.name} not running after {timeout:.0f} s: {state!r}")

    def reboot(self) -> None:
        """A clean shutdown (systemd halts on SIGRTMIN+3), then a fresh boot."""
        subprocess.run([DOCKER, "kill", "-s", SIGRTMIN_3, self.name], check=True, timeout=30)
        subprocess.run([DOCKER, "wait", self.name], capture_output=True, timeout=120)
        started = time.monotonic()
        subprocess.run([DOCKER, "start", self.name], check=True, capture_output=True, timeout=60)
        self.boot_seconds = self.wait_running(started)

    def sh(
        self, script: str, check: bool = True, timeout: float = 120.0, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [DOCKER, "exec", *(["-i"] if stdin is not None else []), self.name, "sh", "-c"]
        done = subprocess.run(
            [*argv, script], capture_output=True, text=True, timeout=timeout, input=stdin
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"in {self.name}: {script}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        quoted = shlex.quote(path)
        script = f"mkdir -p $(dirname {quoted}) && cat >{quoted} && chmod {mode} {quoted}"
        self.sh(script, stdin=text)

    def copy_in(self, source: Path, target: str) -> None:
        """Copy into the root file system (never below /run or /tmp: tmpfs mounts)."""
        self.sh(f"mkdir -p {shlex.quote(str(Path(target).parent))}")
        subprocess.run(
            [DOCKER, "cp", "-L", str(source), f"{self.name}:{target}"],
            check=True,
            capture_output=True,
            timeout=300,
        )

    def get(self, url: str) -> str:
        """An HTTP GET from inside the node (its loopback is not the host's)."""
        script = (
            "import sys, urllib.request; "
            "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
        )
        done = self.sh(f"python3 -c {shlex.quote(script)} {shlex.quote(url)}", check=False)
        return done.stdout if done.returncode == 0 else ""

    def journal(self, *units: str, lines: int = 60) -> str:
        selectors = " ".join(f"-u {shlex.quote(u)}" for u in units)
        return self.sh(f"journalctl --no-pager -n {lines} {selectors}", check=False).stdout

    def remove(self) -> None:
        """Stop the node (its systemd stops every unit) and remove it and its volumes."""
        subprocess.run([DOCKER, "kill", "-s", SIGRTMIN_3, self.name], capture_output=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run([DOCKER, "wait", self.name], capture_output=True, timeout=60)
        subprocess.run([DOCKER, "rm", "-f", "-v", self.name], capture_output=True, timeout=120)
