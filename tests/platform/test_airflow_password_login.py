"""Airflow's password login (the platform's own account, ADMIN in Airflow) answers on
127.0.0.1 only: through the hub's public port it is refused, however the path is spelled,
while the push check's direct login and people's login through the hub still work."""

from __future__ import annotations

import http.client
import json

import requests

from mlops_ide.machine.components.airflow import PLATFORM_ACCOUNT
from tests.support.local_platform import PlatformConfig, RunningPlatform

# The login's path as a client may spell it: the proxy and Airflow must agree on each.
SPELLINGS = (
    "/services/airflow/auth/token",
    "/services/airflow/auth/token/",
    "/services/airflow/auth/token?next=/",
    "/services/airflow/auth/%74oken",
    "/services/airflow/auth/./token",
    "/services/airflow/auth/x/../token",
    "/services/airflow//auth/token",
    "/services/airflow/auth/token/cli",
)


PLATFORM = PlatformConfig("airflow-password", {"MLOPS_IDE_SERVICES": "airflow"}, timeout=180)


def post_as_sent(port: int, path: str, body: dict) -> tuple[int, bytes]:
    """POST `path` exactly as written (no client-side normalization); status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_airflows_password_login_is_refused_through_the_hubs_port(platform: RunningPlatform) -> None:
    right = {"username": PLATFORM_ACCOUNT, "password": platform.airflow_password}

    answers = {path: post_as_sent(platform.port, path, right) for path in SPELLINGS}

    assert not [path for path, (_, body) in answers.items() if b"access_token" in body], answers
    status, body = answers["/services/airflow/auth/token"]
    assert status == 403 and "through the hub" in json.loads(body)["detail"]


def test_the_platform_logs_in_on_loopback_and_people_through_the_hub(platform: RunningPlatform) -> None:
    right = {"username": PLATFORM_ACCOUNT, "password": platform.airflow_password}

    direct = requests.post(f"{platform.airflow_url}/auth/token", json=right, timeout=60)
    person = platform.login("admin")
    landed = person.get(f"{platform.url}/services/airflow/auth/hub/login", timeout=60)

    assert direct.status_code == 201 and direct.json()["access_token"]
    assert landed.status_code == 200 and "_token" in person.cookies.get_dict(path="/services/airflow/")
