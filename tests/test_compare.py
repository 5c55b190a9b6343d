"""`pycrid compare` without a runtime: normalising, rules, the diff, timings, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pycrid.api.cri import api_pb2 as cri
from pycrid.tools.compare import command, plot, report
from pycrid.tools.compare.diff import SideRun, compare_scenario
from pycrid.tools.compare.normalise import Normaliser, plain
from pycrid.tools.compare.observe import Observation
from pycrid.tools.compare.rules import Rule, RulesError, parse_rules, reason_for, shipped_rules
from pycrid.tools.compare.scenarios import NAMES, select
from pycrid.tools.compare.sides import SideError, parse_side
from pycrid.tools.compare.timings import p95, timings

ID_A = "a" * 64
ID_B = "b" * 64


def status(
    container_id: str, ip_dir: str, state: int = cri.CONTAINER_RUNNING
) -> cri.ContainerStatusResponse:
    return cri.ContainerStatusResponse(
        status=cri.ContainerStatus(
            id=container_id,
            metadata=cri.ContainerMetadata(name="web"),
            state=state,
            created_at=1_700_000_000_000_000_001,
            log_path=f"{ip_dir}/pod/web.log",
            labels={"io.pycrid.compare": "run"},
        )
    )


def test_plain_names_enums_decodes_bytes_and_keeps_maps() -> None:
    tree = plain(cri.ExecSyncResponse(stdout=b"hi\n", exit_code=3))
    assert tree == {"stdout": "hi\n", "exit_code": 3}
    tree = plain(status(ID_A, "/x"))
    assert tree["status"]["state"] == "CONTAINER_RUNNING"
    assert tree["status"]["labels"] == {"io.pycrid.compare": "run"}


def test_ids_times_dirs_ips_and_urls_read_as_placeholders() -> None:
    norm = Normaliser({ID_A: "container:web"}, ["/tmp/side-a/"])
    flat = norm.flat(status(ID_A, "/tmp/side-a"))
    assert flat["status.id"] == "<container:web>"
    assert flat["status.created_at"] == "<time>"
    assert flat["status.log_path"] == "<dir>/pod/web.log"
    assert flat["status.labels.io.pycrid.compare"] == "run"
    assert norm.text("10.88.0.7 and 172.17.0.2/16") == "<ip> and <ip>/16"
    assert norm.text("v1.2.3") == "v1.2.3"
    url = "http://127.0.0.1:38211/exec/Qx3vAbc"
    assert norm.text(url) == "http://<ip>:<port>/exec/<token>"


def test_zero_times_stay_zero_and_usage_reads_as_set_or_not() -> None:
    norm = Normaliser({}, [])
    stats = cri.ContainerStatsResponse(
        stats=cri.ContainerStats(
            cpu=cri.CpuUsage(timestamp=5, usage_core_nano_seconds=cri.UInt64Value(value=123)),
            memory=cri.MemoryUsage(working_set_bytes=cri.UInt64Value(value=0)),
        )
    )
    flat = norm.flat(stats)
    assert flat["stats.cpu.usage_core_nano_seconds"] == "<reported>"
    assert flat["stats.cpu.timestamp"] == "<time>"
    # Reported as zero reads the same as any other figure.
    assert flat["stats.memory.working_set_bytes"] == "<reported>"
    assert norm.flat(cri.ContainerStatus(finished_at=0)) == {}


def test_lists_of_messages_compare_in_any_order() -> None:
    def listed(*names: str) -> cri.ListContainersResponse:
        return cri.ListContainersResponse(
            containers=[cri.Container(metadata=cri.ContainerMetadata(name=n)) for n in names]
        )

    norm = Normaliser({}, [])
    assert norm.flat(listed("a", "b")) == norm.flat(listed("b", "a"))
    assert norm.flat(listed("b", "a"))["containers[name=a].metadata.name"] == "a"
    # Unnamed messages are indexed in their sorted order.
    stats = cri.ListContainerStatsResponse(
        stats=[cri.ContainerStats(attributes=cri.ContainerAttributes(id=i)) for i in "yx"]
    )
    assert norm.flat(stats) == {"stats[0].attributes.id": "x", "stats[1].attributes.id": "y"}


def test_a_list_of_plain_values_is_one_value() -> None:
    flat = Normaliser({}, []).flat(cri.Image(id="i", repo_tags=["b:1", "a:1"]))
    assert flat == {"id": "i", "repo_tags": ["b:1", "a:1"]}


def test_shipped_rules_parse_and_match_with_patterns() -> None:
    rules = shipped_rules()
    assert rules and all(r.reason for r in rules)
    assert reason_for(rules, "runtime-info", "Version", "runtime_version")
    assert reason_for(rules, "runtime-info", "Version", "version") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]]\ncall = 'x'", "needs a reason"),
        ("[[rule]]\nreason = 'r'\ncolour = 'x'", "unknown keys colour"),
        ("[[rule]]\nreason = 'r'\ncall = 3", "every value is a string"),
        ("[[rule", "extra.toml"),
    ],
)
def test_malformed_rules_are_refused(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(text, "extra.toml")


def _run(observations: list[Observation], names: dict[str, str], stopped: str = "") -> SideRun:
    return SideRun(observations, Normaliser(names, []), stopped)


def test_same_answers_under_different_ids_do_not_differ() -> None:
    a = _run([Observation("ContainerStatus", answer=status(ID_A, "/a"))], {ID_A: "c"})
    b = _run([Observation("ContainerStatus", answer=status(ID_B, "/a"))], {ID_B: "c"})
    assert compare_scenario("s", a, b, []) == []


def test_differences_field_by_field_with_their_rule() -> None:
    a = _run([Observation("ContainerStatus", answer=status(ID_A, "/a"))], {})
    b = _run([Observation("ContainerStatus", answer=status(ID_A, "/b", cri.CONTAINER_EXITED))], {})
    rules = [Rule(reason="logs live elsewhere", field="*.log_path")]
    found = {d.field: d for d in compare_scenario("s", a, b, rules)}
    assert set(found) == {"status.state", "status.log_path"}
    assert found["status.state"].a == "CONTAINER_RUNNING"
    assert found["status.state"].b == "CONTAINER_EXITED"
    assert not found["status.state"].expected
    assert found["status.log_path"].reason == "logs live elsewhere"


def test_a_call_failing_on_one_side_is_one_code_difference_and_the_stop_is_shown() -> None:
    a = _run(
        [Observation("RunPodSandbox", answer=cri.RunPodSandboxResponse(pod_sandbox_id="x"))], {}
    )
    b = _run(
        [Observation("RunPodSandbox", code="UNIMPLEMENTED")],
        {},
        stopped="RunPodSandbox: UNIMPLEMENTED",
    )
    found = compare_scenario("s", a, b, [])
    assert [(d.call, d.field, d.a, d.b) for d in found] == [
        (
            "(scenario)",
            "outcome",
            "ran to its end",
            "stopped (0 calls not made): RunPodSandbox: UNIMPLEMENTED",
        ),
        ("RunPodSandbox", "code", "OK", "UNIMPLEMENTED"),
    ]
    a.observations.append(Observation("PodSandboxStatus"))
    found = compare_scenario("s", a, b, [])
    assert found[0].b.startswith("stopped (1 calls not made)")
    assert len(found) == 2


def test_calls_made_on_one_side_only_and_absent_fields() -> None:
    a = _run([Observation("Version", answer=cri.VersionResponse(version="0.1.0"))], {})
    b = _run(
        [
            Observation("Version", answer=cri.VersionResponse()),
            Observation("Status", answer=cri.StatusResponse()),
        ],
        {},
    )
    found = {(d.call, d.field): (d.a, d.b) for d in compare_scenario("s", a, b, [])}
    assert found == {
        ("Version", "version"): ("0.1.0", "<absent>"),
        ("Status", "(call)"): ("not made", "made"),
    }


def test_timings_median_p95_and_ratio() -> None:
    a = [Observation("Version", seconds=[0.001, 0.002, 0.003, 0.010])]
    b = [Observation("Version", seconds=[0.004, 0.004, 0.004, 0.004]), Observation("Status")]
    (row,) = timings("s", a, b)
    assert (row.count, row.median_a, row.p95_a, row.median_b) == (4, 0.0025, 0.010, 0.004)
    assert row.ratio == pytest.approx(1.6)
    assert p95([float(i) for i in range(1, 101)]) == 95.0
    failed = [Observation("Version", code="NOT_FOUND", seconds=[0.1])]
    assert timings("s", failed, b) == []


def _result() -> report.Result:
    result = report.Result("adapter:docker", "adapter:oci", "r1", ["runtime-info"], 3)
    a = _run(
        [Observation("Version", answer=cri.VersionResponse(runtime_name="x"), seconds=[0.001])], {}
    )
    b = _run(
        [Observation("Version", answer=cri.VersionResponse(runtime_name="y|z"), seconds=[0.002])],
        {},
    )
    result.differences = compare_scenario("runtime-info", a, b, shipped_rules())
    only_b = _run([Observation("Status", code="UNIMPLEMENTED")], {})
    result.differences += compare_scenario("runtime-info", _run([], {}), only_b, [])
    result.timings = timings("runtime-info", a.observations, b.observations)
    return result


def test_reports_put_unexpected_differences_first() -> None:
    result = _result()
    assert result.exit_status == 1
    table = report.render(result, "table")
    assert table.index("UNEXPECTED") < table.index("expected  ")
    assert "each runtime reports its own name" in table
    markdown = report.render(result, "markdown")
    assert "| UNEXPECTED | runtime-info | Status | `(call)` |" in markdown
    assert "y\\|z" in markdown
    document = json.loads(report.render(result, "json"))
    assert document["unexpected"] == 1
    assert [d["expected"] for d in document["differences"]] == [False, True]
    assert document["timings"][0]["ratio"] == pytest.approx(2.0)


def test_no_differences_exit_zero() -> None:
    result = report.Result("a", "b", "r", ["x"], 1)
    assert result.exit_status == 0
    assert "No differences." in report.render(result, "table")


def test_sides_and_scenario_selection() -> None:
    assert parse_side("unix:///run/x.sock", "A").endpoint == "unix:///run/x.sock"
    assert parse_side("adapter:oci", "B").root is None
    for bad in ("adapter:podman", "tcp://x", "unix://"):
        with pytest.raises(SideError):
            parse_side(bad, "A")
    assert [s.name for s in select([], [])] == list(NAMES)
    assert [s.name for s in select(["errors", "images"], [])] == ["images", "errors"]
    assert "images" not in [s.name for s in select([], ["images"])]
    with pytest.raises(ValueError, match="no scenario 'nope'"):
        select(["nope"], [])


def test_command_line_mistakes_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from pycrid.tools.cli import main

    assert main(["compare", "adapter:x", "adapter:oci"]) == 2
    assert main(["compare", "adapter:docker", "adapter:oci", "--only", "nope"]) == 2
    assert main(["compare", "adapter:docker", "adapter:oci", "--image", "busybox"]) == 2
    assert main(["compare", "adapter:docker", "adapter:oci", "--repeat", "0"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and all(line.startswith("pycrid compare: error: ") for line in lines)


def test_plot_without_matplotlib_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    from pycrid.tools.cli import main

    assert (
        main(["compare", "adapter:docker", "adapter:oci", "--plot", str(tmp_path / "t.png")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == f"pycrid compare: error: {plot.INSTALL_HINT}"
    assert "pip install 'pycrid[plot]'" in err
    assert command.INTERRUPTED == 130


def test_the_catalog_names_the_scenarios_in_suite_order():
    from pycrid.tools.compare import catalog, scenarios

    assert tuple(s.name for s in scenarios.SCENARIOS) == catalog.NAMES


def test_the_pycrid_command_loads_no_comparison_code_until_compare_runs():
    import subprocess
    import sys

    check = (
        "import sys, pycrid.tools.cli, pycrid.server.daemon\n"
        "loaded = [m for m in sys.modules if m.startswith('pycrid.tools.compare.')]\n"
        "assert sorted(loaded) == ['pycrid.tools.compare.catalog',\n"
        "                          'pycrid.tools.compare.command'], loaded"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
