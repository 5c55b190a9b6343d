"""Installing pycrid in a node the way docs/install.md says, with kubelet and static pods.

Per node: the wheel and its dependencies into ``/opt/pycrid``, ``pycrid
install-units`` with socket activation (only ``pycrid.socket`` enabled), runc,
conmon and the CNI plugins from the node image's Debian packages, dockerd on the
systemd driver with ``"bridge": "none"`` for the docker adapter, and kubelet
(v1.20, so through the v1alpha2 relay) on the systemd driver with two static
pods. kubelet and the relay are installed but not enabled: the tests start
kubelet themselves, to see its first call activate pycrid.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from crictl_tests import harness
from crictl_tests.nodes.node import DOCKER, Node
from pycrid.server import privateconfig

RELAY = Path(__file__).parents[1] / "kubelet" / "relay.py"
RELAY_SOCKET = "/run/pycrid-relay/v1alpha2.sock"
CRI_SOCKET = "/run/pycrid/pycrid.sock"
KUBELET_PORT = 10350
READ_ONLY_PORT = 10355
HEALTHZ_PORT = 10358
BRIDGE = "pycrid-node0"
SUBNET = "10.89.97.0/24"
WEB_MEMORY_LIMIT = 64 << 20
MANIFESTS = "/etc/kubernetes/manifests"


def build_wheelhouse(directory: Path) -> Path:
    """pycrid's wheel and every dependency's, for a node without a package index."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(directory), str(harness.REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip wheel failed: {done.stderr[-2000:]}")
    return directory


def config_toml(adapter: str) -> str:
    mirrors = "\n".join(
        f'[registries."{host}"]\nmirrors = ["{harness.LOCAL_MIRROR}"]\nupstream = false\n'
        for host in harness.MIRRORED_REGISTRIES
    )
    return (
        f'adapter = "{adapter}"\n'
        f'pause_image = "{harness.PAUSE_IMAGE}"\n'
        "\n[network]\n"
        'mode = "cni"\n'
        'cni_conf_dir = "/etc/cni/net.d"\n'
        'cni_bin_dirs = ["/usr/lib/cni"]\n'
        f"\n{mirrors}\n"
        f'[registries."{harness.LOCAL_REGISTRY}"]\ninsecure = true\n'
    )


DAEMON_JSON = {
    "exec-opts": ["native.cgroupdriver=systemd"],
    # The node shares the host's network here: dockerd must leave it alone.
    "bridge": "none",
    "iptables": False,
    "ip-forward": False,
    "ip-masq": False,
}

RELAY_UNIT = f"""[Unit]
Description=CRI v1alpha2 relay for kubelet 1.20
[Service]
ExecStartPre=/bin/mkdir -p /run/pycrid-relay
ExecStart=/opt/pycrid/bin/python /usr/local/lib/pycrid-relay.py \\
    --listen unix://{RELAY_SOCKET} --target unix://{CRI_SOCKET}
"""


def kubelet_unit(node_name: str) -> str:
    flags = [
        "--container-runtime=remote",
        f"--container-runtime-endpoint=unix://{RELAY_SOCKET}",
        f"--image-service-endpoint=unix://{RELAY_SOCKET}",
        f"--pod-manifest-path={MANIFESTS}",
        "--root-dir=/var/lib/kubelet",
        "--cert-dir=/var/lib/kubelet/pki",
        "--cgroup-driver=systemd",
        "--fail-swap-on=false",
        f"--hostname-override={node_name}",
        "--enforce-node-allocatable=",
        "--cgroups-per-qos=true",
        "--cgroup-root=/",
        "--eviction-hard=",
        "--image-gc-high-threshold=100",
        "--image-gc-low-threshold=99",
        f"--read-only-port={READ_ONLY_PORT}",
        f"--port={KUBELET_PORT}",
        f"--healthz-port={HEALTHZ_PORT}",
        "--address=127.0.0.1",
        "--healthz-bind-address=127.0.0.1",
        "--authentication-token-webhook=false",
        "--anonymous-auth=true",
        "--authorization-mode=AlwaysAllow",
        "--sync-frequency=10s",
        "--file-check-frequency=5s",
    ]
    return (
        "[Unit]\nDescription=kubelet\nRequires=pycrid-relay.service\n"
        "After=pycrid-relay.service pycrid.socket\n"
        "[Service]\n"
        # kubelet's OOM watcher reads /dev/kmsg, which Docker gives no container.
        "ExecStartPre=/bin/sh -c 'test -c /dev/kmsg"
        " || { rm -f /dev/kmsg; mknod -m 600 /dev/kmsg c 1 11; }'\n"
        f"ExecStart=/usr/local/bin/kubelet {' '.join(flags)}\n"
        "Restart=always\nRestartSec=2\n"
    )


def static_pods() -> dict[str, dict]:
    busybox = harness.BUSYBOX_IMAGE
    web = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "hostNetwork": True,
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "web",
                    "image": busybox,
                    "command": ["sh", "-c", "touch /tmp/ready; exec sleep 3600"],
                    "resources": {
                        "requests": {"memory": "32Mi", "cpu": "100m"},
                        "limits": {"memory": "64Mi", "cpu": "250m"},
                    },
                    "readinessProbe": {
                        "exec": {"command": ["cat", "/tmp/ready"]},
                        "periodSeconds": 2,
                    },
                    "livenessProbe": {
                        "exec": {"command": ["sh", "-c", "true"]},
                        "periodSeconds": 5,
                    },
                }
            ],
        },
    }
    crasher = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "crasher", "namespace": "default"},
        "spec": {
            "hostNetwork": True,
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "crasher",
                    "image": busybox,
                    "command": ["sh", "-c", "sleep 2; echo bye >/dev/termination-log; exit 3"],
                    "resources": {"limits": {"memory": "32Mi"}},
                }
            ],
        },
    }
    return {"web.json": web, "crasher.json": crasher}


def preload_images(node: Node, directory: Path) -> None:
    """The pods' images into the node's dockerd, as docs/kind.md preloads a node's.

    A node with dockerd has no way to the test registry on the host's loopback:
    the images are pulled on the host, saved, loaded in the node and tagged
    with the names kubelet and pycrid ask for.
    """
    refs = [harness.PAUSE_IMAGE, harness.BUSYBOX_IMAGE]
    local = [ref.replace("registry.k8s.io", harness.LOCAL_REGISTRY, 1) for ref in refs]
    pulled = []
    for ref in local:
        present = subprocess.run([DOCKER, "image", "inspect", ref], capture_output=True)
        if present.returncode != 0:
            subprocess.run([DOCKER, "pull", "-q", ref], check=True, capture_output=True)
            pulled.append(ref)
    archive = directory / "images.tar"
    try:
        subprocess.run([DOCKER, "save", "-o", str(archive), *local], check=True, timeout=300)
    finally:
        if pulled:  # leave the host's dockerd as it was
            subprocess.run([DOCKER, "rmi", *pulled], capture_output=True)
    node.copy_in(archive, "/var/cache/pycrid-images.tar")
    tags = " && ".join(f"docker tag {a} {b}" for a, b in zip(local, refs, strict=True))
    node.sh(f"docker load -q -i /var/cache/pycrid-images.tar && {tags}", timeout=300)
    node.sh("rm -f /var/cache/pycrid-images.tar")


def install(node: Node, adapter: str, wheelhouse: Path, kubelet: Path, crictl: Path) -> None:
    node.copy_in(wheelhouse, "/var/cache/pycrid-wheels")
    node.sh(
        "python3 -m venv /opt/pycrid"
        " && /opt/pycrid/bin/pip install -q --no-index --find-links /var/cache/pycrid-wheels pycrid"
        " && ln -sf /opt/pycrid/bin/pycrid /usr/local/bin/pycrid"
        " && rm -rf /var/cache/pycrid-wheels",
        timeout=600,
    )
    node.write("/etc/pycrid/config.toml", config_toml(adapter))
    conflist = privateconfig.bridge_conflist(BRIDGE, SUBNET, Path("/var/lib/pycrid/cni/networks"))
    node.write("/etc/cni/net.d/10-pycrid-bridge.conflist", json.dumps(conflist, indent=2))
    node.sh("pycrid install-units && systemctl daemon-reload && systemctl enable pycrid.socket")
    if adapter == "docker":
        node.write("/etc/docker/daemon.json", json.dumps(DAEMON_JSON, indent=2))
        node.sh(
            "systemctl unmask docker.service docker.socket containerd.service"
            # As docs/kind/Dockerfile: dockerd starts when pycrid first connects to it.
            " && systemctl enable --now docker.socket"
        )
        preload_images(node, wheelhouse.parent)
    node.copy_in(kubelet, "/usr/local/bin/kubelet")
    node.copy_in(crictl, "/usr/local/bin/crictl")
    node.write("/etc/crictl.yaml", f"runtime-endpoint: unix://{CRI_SOCKET}\ntimeout: 30\n")
    node.write("/usr/local/lib/pycrid-relay.py", RELAY.read_text())
    node.write("/etc/systemd/system/pycrid-relay.service", RELAY_UNIT)
    node.write("/etc/systemd/system/kubelet.service", kubelet_unit(node.name))
    for name, pod in static_pods().items():
        node.write(f"{MANIFESTS}/{name}", json.dumps(pod, indent=2))
    node.sh("systemctl daemon-reload")
