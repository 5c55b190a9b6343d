"""The real Docker client against a stand-in dockerd: deadlines, threads, error mapping."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker.errors
import pytest
import requests

from pycrid.adapters import errors
from pycrid.adapters.base import StartupError
from pycrid.adapters.docker import errormap
from pycrid.adapters.docker.api import DockerApi
from pycrid.adapters.docker.client import DockerClient
from pycrid.adapters.docker.stdstream import encode_frame

from .dockerkit import in_call
from .fakedockerd import HANG, Answer, FakeDockerd, Stream, Upgrade


@pytest.fixture
def dockerd(tmp_path: Path) -> Iterator[FakeDockerd]:
    server = FakeDockerd(tmp_path / "docker.sock").start()
    yield server
    server.stop()


@pytest.fixture
async def client(dockerd: FakeDockerd) -> AsyncIterator[DockerClient]:
    client = DockerClient(dockerd.endpoint, pool_size=2)
    await client.connect(5)
    yield client
    await client.close()


# Deadlines, and the pool's threads.


async def test_timed_out_calls_give_their_pool_threads_back(
    dockerd: FakeDockerd, client: DockerClient
) -> None:
    dockerd.route("GET", "/containers/slow/json", HANG)
    dockerd.route("GET", "/info", Answer(200, {"DockerRootDir": "/var/lib/docker"}))
    started = time.monotonic()
    for _ in range(3):  # each round takes both threads of the pool
        outcomes = await asyncio.gather(
            *(in_call(0.3, lambda: client.inspect_container("slow")) for _ in range(2)),
            return_exceptions=True,
        )
        assert all(isinstance(o, errors.DeadlineExceeded) for o in outcomes), outcomes
    assert time.monotonic() - started < 3.0
    # Every round's requests reached dockerd: the threads were free for them.
    assert dockerd.requests.count(("GET", "/v1.41/containers/slow/json")) == 6
    # Both threads are free again at once: a normal call is answered now.
    asked = time.monotonic()
    info = await asyncio.wait_for(client.info(), 1.0)
    assert info["DockerRootDir"] == "/var/lib/docker"
    assert time.monotonic() - asked < 0.5
    # The requests themselves timed out: the client hung up on every one.
    deadline = time.monotonic() + 2
    while dockerd.abandoned < 6 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert dockerd.abandoned == 6


async def test_a_call_waiting_for_a_busy_pool_counts_its_wait(
    dockerd: FakeDockerd, client: DockerClient
) -> None:
    dockerd.route("GET", "/containers/slow/json", HANG)
    # Two calls hold both threads for 0.5 s; a third with 0.2 s to live never gets one.
    holders = [
        asyncio.create_task(in_call(0.5, lambda: client.inspect_container("slow")))
        for _ in range(2)
    ]
    await asyncio.sleep(0.05)
    with pytest.raises(errors.DeadlineExceeded):
        await in_call(0.2, lambda: client.inspect_container("slow"))
    for holder in holders:
        with pytest.raises(errors.DeadlineExceeded):
            await holder
    assert dockerd.requests.count(("GET", "/v1.41/containers/slow/json")) == 2


async def test_no_time_left_sends_nothing(dockerd: FakeDockerd, client: DockerClient) -> None:
    with pytest.raises(errors.DeadlineExceeded, match="no time left"):
        await in_call(-1, lambda: client.inspect_container("x"))
    assert ("GET", "/v1.41/containers/x/json") not in dockerd.requests


async def test_a_pull_that_streams_forever_ends_at_the_deadline(
    dockerd: FakeDockerd, client: DockerClient
) -> None:
    dockerd.route("POST", "/images/create", Stream([{"status": "Pulling"}], forever=True))
    dockerd.route("GET", "/info", Answer(200, {}))
    started = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded):
        await in_call(0.4, lambda: client.pull_image("127.0.0.1:5000/x", "1"))
    assert time.monotonic() - started < 1.5
    assert await asyncio.wait_for(client.info(), 1.0) == {}
    await asyncio.wait_for(client.info(), 1.0)  # and the other thread, too


async def test_an_exec_may_be_silent_for_longer_than_the_call_that_started_it(
    dockerd: FakeDockerd, client: DockerClient
) -> None:
    frame = encode_frame("stdout", b"late\n")
    dockerd.route("POST", "/exec/e1/start", Upgrade(frame, delay=0.6))
    stream = await in_call(0.3, lambda: client.exec_start("e1"))
    try:
        assert await asyncio.to_thread(stream.read, 1024) == frame
        assert await asyncio.to_thread(stream.read, 1024) == b""
    finally:
        stream.close()


async def test_a_pull_without_progress_ends_after_its_idle_timeout(
    dockerd: FakeDockerd, client: DockerClient
) -> None:
    dockerd.route("POST", "/images/create", Stream([{"status": "Pulling"}, {}], interval=3.0))
    seen: list[object] = []
    started = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded, match=r"no progress for 0\.3s"):
        await in_call(
            10,
            lambda: client.pull_image(
                "127.0.0.1:5000/x", "1", idle_timeout=0.3, progress=seen.append
            ),
        )
    assert time.monotonic() - started < 2.5
    assert seen == [{"status": "Pulling"}]


async def test_the_event_stream_is_docker_json_lines(
    dockerd: FakeDockerd, client: DockerClient
) -> None:
    events = [{"Type": "container", "Action": "start", "id": "c1"}, {"Type": "image"}]
    dockerd.route("GET", "/events", Stream(events, interval=0.01))
    stream = await asyncio.to_thread(client.open_events, {"type": ["container"]})
    received = b""
    try:
        while chunk := await asyncio.to_thread(stream.read, 4096):
            received += chunk
    finally:
        stream.close()
    lines = [json.loads(line) for line in received.splitlines() if line.strip()]
    assert lines == events
    assert ("GET", "/v1.41/events") in dockerd.requests


async def test_a_finished_pull_and_one_that_reports_an_error(
    dockerd: FakeDockerd, client: DockerClient
) -> None:
    dockerd.route("POST", "/images/create", Stream([{"status": "Pulling"}, {"status": "Done"}]))
    await in_call(5, lambda: client.pull_image("127.0.0.1:5000/x", "1"))
    dockerd.route(
        "POST",
        "/images/create",
        Stream([{"status": "Pulling"}, {"error": "manifest unknown", "errorDetail": {}}]),
    )
    with pytest.raises(errors.NotFound, match="manifest unknown"):
        await client.pull_image("127.0.0.1:5000/x", "1")


async def test_docker_that_accepts_but_never_answers_fails_start_up(tmp_path: Path) -> None:
    path = tmp_path / "mute.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    client = DockerClient(f"unix://{path}")
    started = time.monotonic()
    try:
        with pytest.raises(StartupError, match="did not answer within 1s"):
            await client.connect(1)
        assert time.monotonic() - started < 3
    finally:
        await client.close()
        listener.close()


async def test_no_docker_at_all_is_unavailable(tmp_path: Path) -> None:
    client = DockerClient(f"unix://{tmp_path}/absent.sock")
    try:
        with pytest.raises(StartupError, match="not reachable"):
            await client.connect(0.2)
        with pytest.raises(errors.Unavailable):
            await client.info()  # never connected
        assert await client.ping() is False
    finally:
        await client.close()


async def test_docker_going_away_is_unavailable(dockerd: FakeDockerd, client: DockerClient) -> None:
    assert await client.ping() is True
    dockerd.stop()
    with pytest.raises(errors.Unavailable, match="not reachable"):
        await client.inspect_container("x")
    assert await client.ping() is False


# Errors by status code, with each call's meaning of 409.


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, errors.InvalidArgument),
        (401, errors.FailedPrecondition),
        (403, errors.FailedPrecondition),
        (404, errors.NotFound),
        (409, errors.FailedPrecondition),
        (500, errors.Internal),
    ],
)
async def test_statuses_map_to_cri_errors(
    dockerd: FakeDockerd, client: DockerClient, status: int, expected: type[errors.CRIError]
) -> None:
    dockerd.route("POST", "/containers/c1/stop", Answer(status, {"message": "said docker"}))
    with pytest.raises(expected, match="said docker") as raised:
        await client.stop_container("c1", 0)
    assert type(raised.value) is expected


@pytest.mark.parametrize(
    ("route", "call", "expected"),
    [
        ("/containers/create", "create", errors.FailedPrecondition),
        ("/containers/c1/start", "start", errors.FailedPrecondition),
    ],
)
async def test_a_server_error_of_create_or_start_is_a_failed_precondition(
    dockerd: FakeDockerd,
    client: DockerClient,
    route: str,
    call: str,
    expected: type[errors.CRIError],
) -> None:
    dockerd.route("POST", route, Answer(500, {"message": "Cannot mkdir: /etc/hostname"}))
    with pytest.raises(expected, match="Cannot mkdir"):
        if call == "create":
            await client.create_container("k8s_x", {"Image": "busybox"})
        else:
            await client.start_container("c1")


async def test_a_taken_name_is_already_exists_but_other_conflicts_are_not(
    dockerd: FakeDockerd, client: DockerClient
) -> None:
    conflict = Answer(409, {"message": 'Conflict. The container name "/k8s_x" is in use'})
    dockerd.route("POST", "/containers/create", conflict)
    dockerd.route("DELETE", "/containers/c1", Answer(409, {"message": "cannot remove"}))
    dockerd.route("POST", "/containers/c1/exec", Answer(409, {"message": "is not running"}))
    with pytest.raises(errors.AlreadyExists, match="in use"):
        await client.create_container("k8s_x", {"Image": "busybox"})
    with pytest.raises(errors.FailedPrecondition, match="cannot remove"):
        await client.remove_container("c1", force=True)
    with pytest.raises(errors.FailedPrecondition, match="is not running"):
        await client.exec_create("c1", ["true"])


async def test_a_pull_that_docker_cannot_do_is_unavailable_or_not_found(
    dockerd: FakeDockerd, client: DockerClient
) -> None:
    dockerd.route("POST", "/images/create", Answer(500, {"message": "connection refused"}))
    with pytest.raises(errors.Unavailable, match="connection refused"):
        await client.pull_image("127.0.0.1:5999/x", "1")
    dockerd.route("POST", "/images/create", Answer(404, {"message": "manifest unknown"}))
    with pytest.raises(errors.NotFound):
        await client.pull_image("127.0.0.1:5000/x", "1")


async def test_typed_results_are_docker_documents(
    dockerd: FakeDockerd, client: DockerClient
) -> None:
    dockerd.route("POST", "/containers/create", Answer(201, {"Id": "abc", "Warnings": []}))
    dockerd.route(
        "GET",
        "/containers/abc/json",
        Answer(200, {"Id": "abc", "State": {"Status": "created", "Pid": 0}, "Extra": 1}),
    )
    dockerd.route("GET", "/containers/json", Answer(200, [{"Id": "abc", "State": "created"}]))
    dockerd.route("POST", "/containers/abc/exec", Answer(201, {"Id": "e1"}))
    assert await client.create_container("n", {"Image": "busybox"}) == "abc"
    inspect = await client.inspect_container("abc")
    assert inspect["State"]["Status"] == "created"
    assert inspect["Extra"] == 1  # type: ignore[typeddict-item]  # Docker's document is kept
    assert await client.list_containers({"label": ["a=b"]}) == [{"Id": "abc", "State": "created"}]
    assert await client.exec_create("abc", ["true"]) == "e1"


def test_the_status_table() -> None:
    assert isinstance(errormap.error_for_status(400, "m"), errors.InvalidArgument)
    assert isinstance(errormap.error_for_status(404, "m"), errors.NotFound)
    assert isinstance(errormap.error_for_status(409, "m"), errors.FailedPrecondition)
    named = errormap.error_for_status(409, "m", "create_container")
    assert isinstance(named, errors.AlreadyExists)
    assert isinstance(
        errormap.error_for_status(409, "m", "remove_container"), errors.FailedPrecondition
    )
    assert isinstance(errormap.error_for_status(422, "m"), errors.FailedPrecondition)
    assert str(errormap.error_for_status(503, "busy")) == "docker: busy"
    pulled = errormap.error_for_status(502, "m", "pull_image")
    assert isinstance(pulled, errors.Unavailable)
    assert str(errormap.error_for_status(404, "")) == "docker answered 404"


def test_sdk_and_transport_failures_map_without_reading_messages() -> None:
    response = requests.Response()
    response.status_code = 409
    api_error = docker.errors.APIError("409 Client Error", response, explanation="whatever text")
    assert isinstance(errormap.map_error(api_error, "e"), errors.FailedPrecondition)
    named = errormap.map_error(api_error, "e", "create_container")
    assert isinstance(named, errors.AlreadyExists)
    timeout = requests.exceptions.ReadTimeout("read timed out")
    assert isinstance(errormap.map_error(timeout, "e"), errors.DeadlineExceeded)
    refused = requests.exceptions.ConnectionError("refused")
    assert isinstance(errormap.map_error(refused, "e"), errors.Unavailable)
    try:
        try:
            raise requests.exceptions.ConnectionError("refused")
        except requests.exceptions.ConnectionError as e:
            raise docker.errors.DockerException("Error while fetching server API version") from e
    except docker.errors.DockerException as wrapped:
        assert isinstance(errormap.map_error(wrapped, "e"), errors.Unavailable)
    assert isinstance(errormap.map_error(ValueError("odd"), "e"), errors.Internal)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("manifest for x:1 not found: manifest unknown", errors.NotFound),
        ("pull access denied for x", errors.FailedPrecondition),
        ("unauthorized: authentication required", errors.FailedPrecondition),
        ("read tcp: connection reset by peer", errors.Unavailable),
    ],
)
def test_pull_stream_errors_are_read_from_their_words(
    message: str, expected: type[errors.CRIError]
) -> None:
    assert type(errormap.pull_stream_error(message, "x")) is expected


def test_calls_with_their_own_meanings_are_calls_of_the_interface() -> None:
    named = set(errormap.CONFLICTS) | set(errormap.SERVER_ERRORS)
    assert named and named <= {name for name in dir(DockerApi) if not name.startswith("_")}


def test_the_docker_adapter_loads_no_character_set_guesser() -> None:
    # About 2.6 MiB of every daemon's memory; dockerd answers JSON (sdk.py).
    probe = (
        "import sys, warnings; warnings.simplefilter('error');"
        "import pycrid.adapters.docker.adapter;"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('charset_normalizer', 'chardet')"
        " and sys.modules[m] is not None];"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
