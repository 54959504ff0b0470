"""The GitHub push webhook: what it accepts and refuses (signature, event, branch, body),
and, as a running process, that GitHub gets its answer at once even when Airflow hangs.
With a real Airflow: tests/test_airflow_loop.py; behind the hub's proxy:
tests/test_github_login.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mlops_ide.push_webhook import judge
from tests.local_platform import ROOT, wait_for
from tests.platform_tools import free_port

SECRET = b"webhook-secret-0123456789"
PUSH = {"ref": "refs/heads/main", "after": "0123456789abcdef0123", "deleted": False}


def signed(body: bytes, event: str = "push", secret: bytes = SECRET) -> dict[str, str]:
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": signature, "X-GitHub-Event": event, "X-GitHub-Delivery": "d-1"}


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


def test_github_gets_its_answer_at_once_while_airflow_hangs(tmp_path: Path, silent_port: int) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "MLOPS_IDE_WEBHOOK_IP": "127.0.0.1",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/push-webhook/",
        "MLOPS_IDE_GITHUB_WEBHOOK_SECRET": SECRET.decode(),
        "MLOPS_IDE_AIRFLOW_URL": f"http://127.0.0.1:{silent_port}",
        "MLOPS_IDE_AIRFLOW_PASSWORD": "x",
    }
    log = tmp_path / "webhook.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlops_ide.push_webhook"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/services/push-webhook/"
    try:
        wait_for(lambda: _answers(url), 30, "the webhook to listen")
        body = json.dumps(PUSH).encode()

        started = time.monotonic()
        response = requests.post(url, data=body, headers=signed(body), timeout=10)
        answered_in = time.monotonic() - started

        assert response.status_code == 202, response.text
        assert answered_in < 1.0, "GitHub must not wait for Airflow"
        wait_for(lambda: "could not ask Airflow" in log.read_text(), 30, "the hung call to give up")
        assert "next refresh" in log.read_text()
        assert (
            requests.post(url, data=body, headers={"X-GitHub-Event": "push"}, timeout=10).status_code == 401
        )
    finally:
        process.terminate()
        process.wait(10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
