"""The CRI's list filters, shared by the adapters."""

from __future__ import annotations

from pycrid.adapters.listfilter import admits, labels_match, passes_all
from pycrid.api.cri import api_pb2 as cri


def test_label_selector_needs_every_key_with_its_value() -> None:
    labels = {"app": "web", "tier": "front"}
    assert labels_match(labels, {})
    assert labels_match(labels, {"app": "web"})
    assert not labels_match(labels, {"app": "web", "tier": "back"})
    assert not labels_match(labels, {"zone": ""})


def test_an_empty_filter_admits_everything() -> None:
    assert admits(cri.ContainerFilter(), "c1", cri.CONTAINER_EXITED, {})
    assert admits(cri.PodSandboxFilter(), "p1", cri.SANDBOX_NOTREADY, {})


def test_only_a_filter_that_sets_nothing_passes_all() -> None:
    assert passes_all(cri.ContainerFilter())
    assert passes_all(cri.PodSandboxFilter())
    assert not passes_all(cri.ContainerFilter(id="c1"))
    assert not passes_all(cri.ContainerFilter(pod_sandbox_id="p1"))
    assert not passes_all(cri.PodSandboxFilter(label_selector={"app": "web"}))
    # A state of 0 that is set is a filter (CONTAINER_CREATED, SANDBOX_READY).
    assert not passes_all(
        cri.ContainerFilter(state=cri.ContainerStateValue(state=cri.CONTAINER_CREATED))
    )
    assert not passes_all(
        cri.PodSandboxFilter(state=cri.PodSandboxStateValue(state=cri.SANDBOX_READY))
    )


def test_id_state_and_labels_must_all_match() -> None:
    wanted = cri.PodSandboxFilter(
        id="p1",
        state=cri.PodSandboxStateValue(state=cri.SANDBOX_READY),
        label_selector={"app": "web"},
    )
    assert admits(wanted, "p1", cri.SANDBOX_READY, {"app": "web", "x": "y"})
    assert not admits(wanted, "p2", cri.SANDBOX_READY, {"app": "web"})
    assert not admits(wanted, "p1", cri.SANDBOX_NOTREADY, {"app": "web"})
    assert not admits(wanted, "p1", cri.SANDBOX_READY, {"app": "db"})
    # A state of 0 that is set is a filter too (CONTAINER_CREATED).
    created = cri.ContainerFilter(state=cri.ContainerStateValue(state=cri.CONTAINER_CREATED))
    assert admits(created, "c1", cri.CONTAINER_CREATED, {})
    assert not admits(created, "c1", cri.CONTAINER_RUNNING, {})


def test_stats_filters_by_id_pod_and_labels() -> None:
    from pycrid.adapters.listfilter import admits_stats, selects_all
    from pycrid.api.cri import api_pb2 as cri

    wanted = cri.ContainerStatsFilter(pod_sandbox_id="p1", label_selector={"app": "web"})
    assert admits_stats(wanted, "c1", {"app": "web", "x": "y"}, "p1")
    assert not admits_stats(wanted, "c1", {"app": "web"}, "p2")
    assert not admits_stats(wanted, "c1", {"app": "db"}, "p1")
    pods = cri.PodSandboxStatsFilter(id="p1")
    assert admits_stats(pods, "p1", {}) and not admits_stats(pods, "p2", {})
    assert selects_all(cri.ContainerStatsFilter()) and not selects_all(wanted)
    assert selects_all(cri.PodSandboxStatsFilter()) and not selects_all(pods)
