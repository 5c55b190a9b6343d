"""ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics on a running pod."""

from __future__ import annotations

from crictl_tests.dockerpods import Pods, wait_for
from pycrid.api.cri import api_pb2 as cri


def by_name(metrics: list[cri.Metric]) -> dict[str, list[cri.Metric]]:
    named: dict[str, list[cri.Metric]] = {}
    for metric in metrics:
        named.setdefault(metric.name, []).append(metric)
    return named


def test_a_running_pod_has_cadvisor_metrics_with_cpu_and_memory(pods: Pods) -> None:
    descriptors = {
        d.name: d
        for d in pods.rt.ListMetricDescriptors(cri.ListMetricDescriptorsRequest()).descriptors
    }
    assert {
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_usage_bytes",
        "container_memory_rss",
        "container_memory_cache",
        "container_network_receive_bytes_total",
        "container_network_transmit_packets_total",
        "container_fs_usage_bytes",
        "container_processes",
    } <= set(descriptors)
    assert list(descriptors["container_network_receive_bytes_total"].label_keys) == ["interface"]

    sandbox_id = pods.run(pods.sandbox_config("metrics"))
    # Two seconds of CPU, then idle: the counter is in whole seconds.
    busy = ["sh", "-c", "timeout 2 yes >/dev/null; sleep 3600"]
    container_id = pods.run_container(sandbox_id, pods.container_config("busy", command=busy))

    def pod_metrics() -> cri.PodSandboxMetrics | None:
        listed = pods.rt.ListPodSandboxMetrics(cri.ListPodSandboxMetricsRequest()).pod_metrics
        return next((p for p in listed if p.pod_sandbox_id == sandbox_id), None)

    def busy_enough() -> cri.PodSandboxMetrics | None:
        found = pod_metrics()
        if found is None or not found.container_metrics:
            return None
        # The pod's and the container's figures are sampled apart: wait for both.
        samples = [found.metrics, *(c.metrics for c in found.container_metrics)]
        for metrics in samples:
            cpu = by_name(list(metrics)).get("container_cpu_usage_seconds_total")
            if not cpu or cpu[0].value.value < 1:
                return None
        return found

    found = wait_for(busy_enough, "a second of CPU in the pod's metrics")
    pod = by_name(list(found.metrics))
    assert pod["container_cpu_usage_seconds_total"][0].metric_type == cri.COUNTER
    assert pod["container_memory_working_set_bytes"][0].value.value > 0
    assert pod["container_memory_usage_bytes"][0].metric_type == cri.GAUGE
    assert pod["container_processes"][0].value.value >= 2
    for metric in found.metrics:
        assert metric.name in descriptors and metric.timestamp > 0
        assert len(metric.label_values) == len(descriptors[metric.name].label_keys)
    assert "container_network_receive_bytes_total" in pod  # the pod's own network
    (container,) = found.container_metrics
    assert container.container_id == container_id
    own = by_name(list(container.metrics))
    assert own["container_cpu_usage_seconds_total"][0].value.value >= 1
    assert own["container_memory_working_set_bytes"][0].value.value > 0

    streamed = [
        p
        for response in pods.rt.StreamPodSandboxMetrics(cri.StreamPodSandboxMetricsRequest())
        for p in response.pod_sandbox_metrics
    ]
    assert sandbox_id in {p.pod_sandbox_id for p in streamed}
