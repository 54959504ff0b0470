"""The GitHub push webhook: what it accepts and refuses (signature, event, branch, body,
its size, replays), and, as a running process, that GitHub gets its answer at once even
when Airflow hangs. With a real Airflow: tests/platform/test_airflow_loop.py; behind the hub's
proxy: tests/platform/test_github_login.py."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from mlops_ide.hub_services.push_webhook import (
    MAX_BODY_BYTES,
    RecentDeliveries,
    api_url,
    judge,
    make_app,
    repository,
    status_of,
)
from tests.support.local_platform import wait_for
from tests.support.platform_tools import github_signature, running_push_webhook

SECRET = b"webhook-secret-0123456789"
PUSH = {"ref": "refs/heads/main", "after": "0123456789abcdef0123", "deleted": False}


def signed(body: bytes, event: str = "push", secret: bytes = SECRET, delivery: str = "d-1") -> dict[str, str]:
    return {
        "X-Hub-Signature-256": github_signature(secret, body),
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
    }


def padded_push(size: int) -> bytes:
    """A push event of exactly `size` bytes (GitHub's fields plus filler)."""
    bare = json.dumps({**PUSH, "filler": ""}).encode()
    return json.dumps({**PUSH, "filler": "x" * (size - len(bare))}).encode()


@contextlib.contextmanager
def serving(asked: list[str]) -> Iterator[str]:
    """make_app on a free port, its IOLoop in a thread; yields its URL. `asked` gets the
    commits Airflow is asked about, and is final once the block has ended."""
    loop = asyncio.new_event_loop()
    sockets = bind_sockets(0, "127.0.0.1")

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server = HTTPServer(make_app(SECRET, "main", "/hook/", asked.append))
        server.add_sockets(sockets)
        loop.run_forever()
        server.stop()
        loop.run_until_complete(loop.shutdown_default_executor())  # the background calls
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}/hook/"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def connect(url: str) -> http.client.HTTPConnection:
    address = urlsplit(url)
    return http.client.HTTPConnection(address.hostname, address.port, timeout=10)


def test_a_signed_push_to_the_branch_asks_for_a_reparse() -> None:
    body = json.dumps(PUSH).encode()

    verdict = judge(SECRET, signed(body), body, "main", RecentDeliveries())

    assert (verdict.status, verdict.refresh) == (202, True)
    assert "0123456789ab" in verdict.message


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ({}, json.dumps(PUSH).encode(), 401, "signature does not match"),
        (signed(b"other body"), json.dumps(PUSH).encode(), 401, "signature does not match"),
        (
            signed(json.dumps(PUSH).encode(), secret=b"another-secret"),
            json.dumps(PUSH).encode(),
            401,
            "same secret",
        ),
        (signed(b"{}", event="ping"), b"{}", 200, "pong"),
        (signed(b"{}", event="issues"), b"{}", 200, "only push events"),
        (signed(b"ref=refs/heads/main"), b"ref=refs/heads/main", 400, "application/json"),
        (
            signed(json.dumps({**PUSH, "ref": "refs/heads/feature"}).encode()),
            json.dumps({**PUSH, "ref": "refs/heads/feature"}).encode(),
            200,
            "Airflow tracks refs/heads/main",
        ),
        (
            signed(json.dumps({**PUSH, "deleted": True}).encode()),
            json.dumps({**PUSH, "deleted": True}).encode(),
            200,
            "was deleted",
        ),
    ],
    ids=[
        "unsigned",
        "body-changed",
        "wrong-secret",
        "ping",
        "other-event",
        "form-body",
        "other-branch",
        "deleted",
    ],
)
def test_everything_else_is_answered_without_a_reparse(
    headers: dict, body: bytes, status: int, says: str
) -> None:
    verdict = judge(SECRET, headers, body, "main", RecentDeliveries())

    assert (verdict.status, verdict.refresh) == (status, False)
    assert says in verdict.message


@pytest.mark.parametrize(
    "signature",
    ["sha256=é" + "0" * 63, "sha256=\u2713", "\udcff", "sha256=" + "٠" * 64],
    ids=["latin-1", "beyond-latin-1", "lone-surrogate", "arabic-digits"],
)
def test_a_non_ascii_signature_is_a_mismatch_not_an_error(signature: str) -> None:
    body = json.dumps(PUSH).encode()

    verdict = judge(
        SECRET, {**signed(body), "X-Hub-Signature-256": signature}, body, "main", RecentDeliveries()
    )

    assert (verdict.status, verdict.refresh) == (401, False)
    assert "signature does not match" in verdict.message


def test_a_signed_delivery_without_an_id_is_refused() -> None:
    body = json.dumps(PUSH).encode()
    headers = {key: value for key, value in signed(body).items() if key != "X-GitHub-Delivery"}

    verdict = judge(SECRET, headers, body, "main", RecentDeliveries())

    assert (verdict.status, verdict.refresh) == (400, False)
    assert "X-GitHub-Delivery" in verdict.message


def test_a_delivery_is_taken_once() -> None:
    deliveries = RecentDeliveries()
    body = json.dumps(PUSH).encode()

    first = judge(SECRET, signed(body), body, "main", deliveries)
    again = judge(SECRET, signed(body), body, "main", deliveries)

    assert (first.status, first.refresh) == (202, True)
    assert (again.status, again.refresh) == (409, False)
    assert "d-1 (or its body) was already received" in again.message and "Redeliver" in again.message


def test_a_replay_under_a_fresh_delivery_id_is_refused_too() -> None:
    """X-GitHub-Delivery is not signed: a replay can bring any id, but not another body."""
    deliveries = RecentDeliveries()
    body = json.dumps(PUSH).encode()
    judge(SECRET, signed(body, delivery="d-1"), body, "main", deliveries)

    replay = judge(SECRET, signed(body, delivery="d-forged"), body, "main", deliveries)
    next_push = json.dumps({**PUSH, "after": "fedcba9876543210fedc"}).encode()
    pushed_again = judge(SECRET, signed(next_push, delivery="d-2"), next_push, "main", deliveries)

    assert (replay.status, replay.refresh) == (409, False)
    assert (pushed_again.status, pushed_again.refresh) == (202, True)


def test_an_unsigned_delivery_does_not_use_up_its_id() -> None:
    deliveries = RecentDeliveries()
    body = json.dumps(PUSH).encode()
    forged = {**signed(body), "X-Hub-Signature-256": github_signature(b"guessed", body)}

    assert judge(SECRET, forged, body, "main", deliveries).status == 401
    assert judge(SECRET, signed(body), body, "main", deliveries).status == 202


def test_the_memory_of_deliveries_is_bounded() -> None:
    deliveries = RecentDeliveries(size=2)
    for n in range(3):
        assert deliveries.first_time(f"d-{n}", f"digest-{n}")

    assert deliveries.first_time("d-0", "digest-0")  # the oldest was forgotten
    assert not deliveries.first_time("d-2", "digest-other")
    assert len(deliveries) == 2


def test_a_replayed_delivery_is_refused_and_airflow_asked_once() -> None:
    asked: list[str] = []
    body = json.dumps(PUSH).encode()
    with serving(asked) as url:
        first = requests.post(url, data=body, headers=signed(body), timeout=10)
        replay = requests.post(url, data=body, headers=signed(body), timeout=10)

    assert first.status_code == 202, first.text
    assert replay.status_code == 409 and "already received" in replay.json()["message"]
    assert asked == [PUSH["after"]]


@pytest.mark.parametrize("signature", ["sha256=✓".encode(), b"sha256=\xe9"], ids=["utf-8", "latin-1"])
def test_a_non_ascii_signature_header_is_answered_401_not_500(signature: bytes) -> None:
    asked: list[str] = []
    body = json.dumps(PUSH).encode()
    with serving(asked) as url:
        headers = {**signed(body), "X-Hub-Signature-256": signature}
        answered = requests.post(url, data=body, headers=headers, timeout=10)

    assert answered.status_code == 401 and "signature does not match" in answered.json()["message"]
    assert asked == []


def test_a_push_up_to_the_limit_is_taken_with_or_without_content_length() -> None:
    asked: list[str] = []
    body = padded_push(MAX_BODY_BYTES)
    with serving(asked) as url:
        answered = requests.post(url, data=body, headers=signed(body), timeout=10)
        # the next push, chunked (no Content-Length): the same
        pushed = json.dumps({**PUSH, "after": "fedcba9876543210fedc"}).encode()
        pieces = iter([pushed[:10], pushed[10:]])
        chunked = requests.post(url, data=pieces, headers=signed(pushed, delivery="d-2"), timeout=10)

    assert answered.status_code == 202, answered.text
    assert chunked.status_code == 202 and chunked.request.headers["Transfer-Encoding"] == "chunked"
    assert asked == [PUSH["after"], "fedcba9876543210fedc"]


def post_headers(url: str, headers: dict[str, str]):
    """A POST to `url` with its headers sent and no body yet: the connection, to go on with."""
    connection = connect(url)
    connection.putrequest("POST", urlsplit(url).path)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    return connection


def test_an_over_limit_body_is_refused_before_it_is_read() -> None:
    asked: list[str] = []
    body = padded_push(MAX_BODY_BYTES + 1)
    with serving(asked) as url:
        # the headers only: the answer comes without a byte of the body
        connection = post_headers(url, {**signed(body), "Content-Length": str(len(body))})
        answered = connection.getresponse()
        message = json.loads(answered.read())["message"]

    assert answered.status == 413 and answered.getheader("Connection") == "close"
    assert "over 1048576 bytes (1 MiB)" in message and "next bundle refresh" in message
    assert asked == []


def test_an_over_limit_chunked_body_is_cut_off() -> None:
    asked: list[str] = []
    body = padded_push(MAX_BODY_BYTES + 1)
    with serving(asked) as url:
        connection = post_headers(url, {**signed(body), "Transfer-Encoding": "chunked"})
        step = 64 * 1024
        for start in range(0, len(body), step):  # every byte but no final chunk: never ends
            piece = body[start : start + step]
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        answered = connection.getresponse()
        message = json.loads(answered.read())["message"]

    assert answered.status == 413 and answered.getheader("Connection") == "close"
    assert "over 1048576 bytes" in message
    assert asked == []


def test_github_gets_its_answer_before_a_hung_airflow_call_ends(tmp_path: Path, silent_port: int) -> None:
    log = tmp_path / "webhook.log"
    with running_push_webhook(log, SECRET.decode(), f"http://127.0.0.1:{silent_port}", "x") as url:
        body = json.dumps(PUSH).encode()

        response = requests.post(url, data=body, headers=signed(body), timeout=30)

        assert response.status_code == 202, response.text
        assert "could not ask Airflow" not in log.read_text()  # answered while Airflow still hangs
        wait_for(lambda: "could not ask Airflow" in log.read_text(), 30, "the hung call to give up")
        assert "next refresh" in log.read_text()
        unsigned = requests.post(url, data=body, headers={"X-GitHub-Event": "push"}, timeout=10)
        assert unsigned.status_code == 401


def test_the_commit_status_says_what_airflow_made_of_the_push() -> None:
    commit = "0123456789abcdef" * 2 + "01234567"

    assert status_of(commit, ["a", "b"], {}) == ("success", "live at 0123456789ab: a, b")
    state, description = status_of(commit, ["a"], {"/x/dags/bad.py": "Traceback ...\nSyntaxError: invalid"})
    assert state == "failure" and description == "1 DAG file(s) do not load: bad.py: SyntaxError: invalid"
    assert status_of(commit, [], {})[0] == "error"
    assert len(status_of(commit, ["d" * 200], {})[1]) == 140  # GitHub's limit


@pytest.mark.parametrize(
    ("url", "owner_repo"),
    [
        ("https://github.com/team/pipelines.git", ("team", "pipelines")),
        ("https://github.example/team/pipelines", ("team", "pipelines")),
        ("git@github.com:team/pipelines.git", ("team", "pipelines")),
    ],
)
def test_the_status_goes_to_the_repository_of_the_repo_url(url: str, owner_repo: tuple[str, str]) -> None:
    assert repository(url) == owner_repo
    assert api_url("https://github.com") == "https://api.github.com"
    assert api_url("https://ghe.example/") == "https://ghe.example/api/v3"
