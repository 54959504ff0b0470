"""GitHub login end to end, in kubernetes mode: the real hub (jupyterhub_config.py) behind a
real configurable-http-proxy run as its own process (as in deploy/), GitHubOAuthenticator
talking to a GitHub stand-in on loopback (GitHub Enterprise layout, MLOPS_IDE_GITHUB_URL).

Allowed user in, org member in, team member in, outsider out; the token GitHub issued
lands in the encrypted auth state, and from there in the Secret the spawner makes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.kubernetes_hub_tools import (
    RunningHub,
    hub_config,
    make_spawner,
    point_kube_client_at,
    running_hub,
)
from tests.support.local_platform import wait_for
from tests.support.platform_tools import free_port, github_signature
from tests.support.standins import GitHubStandIn, KubernetesApiStandIn

CLIENT_ID, CLIENT_SECRET = "mlops-ide-client", "mlops-ide-client-secret"
WEBHOOK_SECRET = "webhook-secret-for-the-login-tests"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    github = GitHubStandIn(
        CLIENT_ID,
        CLIENT_SECRET,
        users={"alice": 1, "bob": 2, "carol": 3, "mallory": 4},
        orgs={"mlops-team": {"bob"}, "other-org": {"carol", "mallory"}},
        teams={("other-org", "ml"): {"carol"}},
    )
    settings = {
        "MLOPS_IDE_GITHUB_ALLOWED_ORGS": "mlops-team,other-org:ml",
        "MLOPS_IDE_GITHUB_ALLOWED_USERS": "alice",
        "MLOPS_IDE_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MLOPS_IDE_AIRFLOW_PASSWORD": "airflow-admin-password",
        "MLOPS_IDE_WEBHOOK_PORT": str(free_port()),
    }
    with (
        github,
        KubernetesApiStandIn() as kube_api,
        running_hub(
            tmp_path_factory.mktemp("github-login"), github, kube_api, CLIENT_SECRET, settings
        ) as hub,
    ):
        yield hub


def test_allowed_user_logs_in_and_the_token_is_kept_encrypted(hub: RunningHub) -> None:
    session, response = hub.log_in("alice")

    assert response.status_code == 200, response.text[-500:]
    assert urlsplit(response.url).path == "/hub/spawn"  # the profile form: small, large, GPU
    assert "Large (CPU)" in response.text and "GPU" in response.text
    model = hub.api(session, "/users/alice").json()
    assert model["admin"] is True  # MLOPS_IDE_ADMIN_USERS
    assert model["auth_state"]["access_token"] == hub.github.issued_token("alice")
    assert model["auth_state"]["github_user"]["login"] == "alice"
    database = Path(hub.env["MLOPS_IDE_HOME"]) / "jupyterhub.sqlite"
    assert hub.github.issued_token("alice").encode() not in database.read_bytes()  # encrypted at rest


@pytest.mark.parametrize(
    ("login", "membership"),
    [("bob", "orgs/mlops-team/members/bob"), ("carol", "orgs/other-org/teams/ml/members/carol")],
    ids=["org member", "team member"],
)
def test_members_of_allowed_organizations_and_teams_log_in(
    hub: RunningHub, login: str, membership: str
) -> None:
    session, response = hub.log_in(login)

    assert response.status_code == 200
    assert urlsplit(response.url).path == "/hub/spawn"
    assert hub.api(session, "/user").json()["name"] == login
    assert f"GET /api/v3/{membership}" in hub.github.requests


def test_outsider_is_turned_away(hub: RunningHub) -> None:
    session, response = hub.log_in("mallory")  # in other-org, but not in its team "ml"

    assert response.status_code == 403
    assert "not currently authorized" in response.text
    assert hub.api(session, "/user").status_code == 403  # no session: not logged in


def test_idle_culler_runs_as_a_hub_service_with_its_role(hub: RunningHub) -> None:
    deadline = time.monotonic() + 20
    while "200 GET /hub/api/users?state=[secret] (idle-culler@" not in hub.log.read_text():
        assert time.monotonic() < deadline, hub.log.read_text()[-2000:]
        time.sleep(0.2)

    assert "403 GET /hub/api/users" not in hub.log.read_text()


def test_the_issued_token_reaches_the_spawners_secret(
    hub: RunningHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session, _ = hub.log_in("alice")
    auth_state = hub.api(session, "/users/alice").json()["auth_state"]
    config = hub_config(monkeypatch, {k: v for k, v in hub.env.items() if k not in ("PATH", "HOME")})

    with KubernetesApiStandIn() as kube_api:
        point_kube_client_at(monkeypatch, kube_api.url)

        async def spawn() -> None:
            spawner = make_spawner(config, user="alice", namespace="team")
            await spawner.run_auth_state_hook(auth_state)
            await spawner.after_pod_created_hook(spawner, {"metadata": {"uid": "pod-uid"}})

        asyncio.run(spawn())

    secret = kube_api.objects[("secrets", "team", "jupyter-alice-git")]
    assert secret["stringData"]["token"] == hub.github.issued_token("alice") == auth_state["access_token"]
    assert os.environ.get("MLOPS_IDE_GIT_TOKEN") is None


def test_the_push_webhook_is_served_through_the_proxy(hub: RunningHub) -> None:
    url = f"{hub.url}/services/push-webhook/"
    body = b"{}"
    ping = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "ping-1",
        "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET.encode(), body),
    }

    def pong() -> requests.Response | None:
        response = requests.post(url, data=body, headers=ping, timeout=10)
        return response if response.status_code == 200 else None  # the route comes with the service

    answered = wait_for(pong, 30, "the webhook behind the proxy", step=0.2)

    assert answered.json() == {"message": "pong"}
    assert requests.post(url, data=body, headers={"X-GitHub-Event": "push"}, timeout=10).status_code == 401
