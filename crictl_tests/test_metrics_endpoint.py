"""The Prometheus endpoint of a real daemon, scraped after a pod's life."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from crictl_tests.dockerpods import Pods
from crictl_tests.harness import BUSYBOX_IMAGE, Daemon
from pycrid.api.cri import api_pb2 as cri

LIFE = (
    "PullImage",
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "ListContainers",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at ``address``'s /metrics, by name and sorted labels."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_pods_life_shows_in_the_rpc_counters_and_histograms(
    docker_engine: None, test_registry: None, daemon_factory: Callable[..., Daemon]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    daemon = daemon_factory("docker", {"metrics": {"address": address}})
    pods = Pods(daemon)
    try:
        pods.pull(BUSYBOX_IMAGE)
        sandbox_id = pods.run()
        container_id = pods.run_container(sandbox_id, pods.container_config("sleeper"))
        during = scrape(address)
        daemon.runtime.ListContainers(cri.ListContainersRequest())
        daemon.runtime.StopContainer(cri.StopContainerRequest(container_id=container_id, timeout=1))
        daemon.runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=container_id))
        pods.remove_all()
        info = daemon.runtime.Status(cri.StatusRequest(verbose=True)).info
    finally:
        pods.close()
    after = scrape(address)

    assert value(during, "pycrid_containers", state="running") >= 1
    assert value(during, "pycrid_pod_sandboxes", state="ready") >= 1
    for method in LIFE:
        counted = value(after, "pycrid_grpc_requests_total", method=method, code="OK")
        assert counted >= 1, method
        timed = value(after, "pycrid_grpc_request_duration_seconds_count", method=method, code="OK")
        assert timed == counted, method
        assert (
            value(after, "pycrid_grpc_request_duration_seconds_sum", method=method, code="OK") > 0
        )
        assert value(after, "pycrid_grpc_requests_in_flight", method=method) == 0
    assert value(after, "pycrid_image_pulls_total") >= 1
    assert value(after, "pycrid_image_pull_bytes_total") > 0
    assert (
        value(
            after,
            "pycrid_backend_call_duration_seconds_count",
            backend="docker",
            call="create_container",
        )
        >= 2
    )
    assert value(after, "process_resident_memory_bytes") > 0

    host, port = info["streamServerAddress"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert json.loads(info["cniconfig"])["networks"] == []  # these daemons use docker networking
    assert info["dockerVersion"]
