"""GitHub login end to end, in kubernetes mode: the real hub (jupyterhub_config.py) behind a
real configurable-http-proxy run as its own process (as in deploy/), GitHubOAuthenticator
talking to a GitHub stand-in on loopback (GitHub Enterprise layout, MLOPS_IDE_GITHUB_URL).

Allowed user in, org member in, team member in, outsider out; the token GitHub issued
lands in the encrypted auth state, and from there in the Secret the spawner makes."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.kubernetes_hub_tools import hub_config, kubernetes_env, make_spawner, point_kube_client_at
from tests.local_platform import ROOT
from tests.platform_tools import free_port, start_logged, stop, tools_file_value, wait_until_healthy
from tests.standins import GitHubStandIn, KubernetesApiStandIn

CLIENT_ID, CLIENT_SECRET = "mlops-ide-client", "mlops-ide-client-secret"


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: standin\n"
        f"clusters:\n- name: standin\n  cluster:\n    server: {server}\n"
        "users:\n- name: hub\n  user:\n    token: standin-token\n"
        "contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: hub\n    namespace: team\n"
    )
    return path


class Hub:
    def __init__(self, url: str, github: GitHubStandIn, env: dict[str, str], log: Path) -> None:
        self.url, self.github, self.env, self.log = url, github, env, log

    def log_in(self, login: str) -> tuple[requests.Session, requests.Response]:
        """The browser's path: hub -> GitHub (signed in as `login`) -> hub callback -> hub."""
        self.github.signed_in = login
        session = requests.Session()
        response = session.get(f"{self.url}/hub/oauth_login", timeout=30)
        return session, response

    def api(self, session: requests.Session, path: str) -> requests.Response:
        xsrf = session.cookies.get("_xsrf", path="/hub/")
        return session.get(f"{self.url}/hub/api{path}", headers={"X-XSRFToken": xsrf or ""}, timeout=30)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("github-login")
    github = GitHubStandIn(
        CLIENT_ID,
        CLIENT_SECRET,
        users={"alice": 1, "bob": 2, "carol": 3, "mallory": 4},
        orgs={"mlops-team": {"bob"}, "other-org": {"carol", "mallory"}},
        teams={("other-org", "ml"): {"carol"}},
    )
    proxy_port, proxy_api_port, hub_port = free_port(), free_port(), free_port()
    public = f"http://127.0.0.1:{proxy_port}"
    proxy_token = secrets.token_hex(32)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp),
        **kubernetes_env(
            tmp / "hub",
            MLOPS_IDE_IP="127.0.0.1",
            MLOPS_IDE_HUB_PORT=str(hub_port),
            MLOPS_IDE_HUB_CONNECT_URL=f"http://127.0.0.1:{hub_port}",
            MLOPS_IDE_PROXY_API_URL=f"http://127.0.0.1:{proxy_api_port}",
            MLOPS_IDE_GITHUB_CLIENT_ID=CLIENT_ID,
            MLOPS_IDE_GITHUB_CLIENT_SECRET=CLIENT_SECRET,
            MLOPS_IDE_GITHUB_CALLBACK_URL=f"{public}/hub/oauth_callback",
            MLOPS_IDE_GITHUB_ALLOWED_ORGS="mlops-team,other-org:ml",
            MLOPS_IDE_GITHUB_ALLOWED_USERS="alice",
            JUPYTERHUB_CRYPT_KEY=secrets.token_hex(32),
            CONFIGPROXY_AUTH_TOKEN=proxy_token,
        ),
    }
    with github, KubernetesApiStandIn() as kube_api:
        env["MLOPS_IDE_GITHUB_URL"] = github.url
        # KubeSpawner loads a kube config when the hub makes a user's spawner (at login):
        # outside a cluster that is $KUBECONFIG, here pointing at the API stand-in.
        env["KUBECONFIG"] = str(write_kubeconfig(tmp / "kubeconfig", kube_api.url))
        proxy_log, hub_log = tmp / "proxy.log", tmp / "hub.log"
        proxy = start_logged(
            [
                tools_file_value("MLOPS_IDE_CHP"),
                *("--ip", "127.0.0.1", "--port", str(proxy_port)),
                *("--api-ip", "127.0.0.1", "--api-port", str(proxy_api_port)),
                *("--default-target", f"http://127.0.0.1:{hub_port}"),
                *("--error-target", f"http://127.0.0.1:{hub_port}/hub/error"),
            ],
            {**env, "CONFIGPROXY_AUTH_TOKEN": proxy_token},
            proxy_log,
        )
        process = start_logged(
            [sys.executable, "-m", "jupyterhub", "-f", str(ROOT / "jupyterhub_config.py")],
            env,
            hub_log,
            cwd=tmp,
        )
        try:
            wait_until_healthy(f"{public}/hub/api", process, hub_log, timeout=60)
            yield Hub(public, github, env, hub_log)
        finally:
            stop(process)
            stop(proxy)


def test_allowed_user_logs_in_and_the_token_is_kept_encrypted(hub: Hub) -> None:
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
def test_members_of_allowed_organizations_and_teams_log_in(hub: Hub, login: str, membership: str) -> None:
    session, response = hub.log_in(login)

    assert response.status_code == 200
    assert urlsplit(response.url).path == "/hub/spawn"
    assert hub.api(session, "/user").json()["name"] == login
    assert f"GET /api/v3/{membership}" in hub.github.requests


def test_outsider_is_turned_away(hub: Hub) -> None:
    session, response = hub.log_in("mallory")  # in other-org, but not in its team "ml"

    assert response.status_code == 403
    assert "not currently authorized" in response.text
    assert hub.api(session, "/user").status_code == 403  # no session: not logged in


def test_idle_culler_runs_as_a_hub_service_with_its_role(hub: Hub) -> None:
    deadline = time.monotonic() + 20
    while "200 GET /hub/api/users?state=[secret] (idle-culler@" not in hub.log.read_text():
        assert time.monotonic() < deadline, hub.log.read_text()[-2000:]
        time.sleep(0.2)

    assert "403 GET /hub/api/users" not in hub.log.read_text()


def test_the_issued_token_reaches_the_spawners_secret(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
