"""The GitHub push webhook: what it accepts and refuses (signature, event, branch, body),
and, as a running process, that GitHub gets its answer at once even when Airflow hangs.
With a real Airflow: tests/test_airflow_loop.py; behind the hub's proxy:
tests/test_github_login.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from mlops_ide.push_webhook import api_url, judge, repository, status_of
from tests.local_platform import wait_for
from tests.platform_tools import github_signature, running_push_webhook

SECRET = b"webhook-secret-0123456789"
PUSH = {"ref": "refs/heads/main", "after": "0123456789abcdef0123", "deleted": False}


def signed(body: bytes, event: str = "push", secret: bytes = SECRET) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": github_signature(secret, body),
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "d-1",
    }


def test_a_signed_push_to_the_branch_asks_for_a_reparse() -> None:
    body = json.dumps(PUSH).encode()

    verdict = judge(SECRET, signed(body), body, "main")

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
    verdict = judge(SECRET, headers, body, "main")

    assert (verdict.status, verdict.refresh) == (status, False)
    assert says in verdict.message


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
