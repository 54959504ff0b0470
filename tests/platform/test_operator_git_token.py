"""The operator's MLOPS_IDE_GIT_TOKEN is the platform's: Airflow's DAG bundle clones a
team's private repository with it, and no user server gets it, in its environment or in
the files its startup hook writes. People clone with their own credentials."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mlops_ide.hub.modes import load
from mlops_ide.machine.components import airflow
from mlops_ide.machine.state.tools import Tools
from tests.support.git_http_server import GitHttpServer
from tests.support.gitrepos import Remote
from tests.support.local_platform import RunningPlatform

TOKEN = "operator-token-5f3a9c1e7b2d"  # what the team's git server demands


@pytest.fixture
def team_server(remote: Remote) -> GitHttpServer:
    with GitHttpServer(remote.path.parent, token=TOKEN) as server:
        yield server


def test_no_user_server_gets_the_operators_git_token(tmp_path: Path, team_server: GitHttpServer) -> None:
    platform = RunningPlatform(
        tmp_path / "state",
        MLOPS_IDE_REPO_URL=team_server.url("pipelines.git"),
        MLOPS_IDE_GIT_TOKEN=TOKEN,
        MLOPS_IDE_GIT_USERNAME="platform-bot",
        MLOPS_IDE_SYNC_TIMEOUT="10",
    ).start()
    team_server.requests.clear()  # make up read the tree with the operator's token (its DAG folder check)
    try:
        platform.open_vscode(platform.login("alice"), "alice")
        environ = platform.server_environ("alice")
        home = platform.home / "homes" / "alice"
        written = {path: path.read_bytes() for path in home.rglob("*") if path.is_file()}
    finally:
        platform.stop()

    assert not [name for name, value in environ.items() if TOKEN in value or "platform-bot" in value]
    assert not {"MLOPS_IDE_GIT_TOKEN", "MLOPS_IDE_GIT_TOKEN_FILE", "MLOPS_IDE_GIT_USERNAME"} & set(environ)
    assert written and not [path for path, content in written.items() if TOKEN.encode() in content]
    # the hook tried the team's repository without it: asked for a token, it had none to give
    assert any('" 401 ' in line for line in team_server.requests)
    assert not any('" 200 ' in line for line in team_server.requests), team_server.requests


def test_airflows_bundle_clones_the_team_repository_with_the_operators_token(
    tmp_path: Path, team_server: GitHttpServer
) -> None:
    token_file = tmp_path / "operator-token"
    token_file.write_text(TOKEN + "\n")
    settings = load(
        {
            "MLOPS_IDE_HOME": str(tmp_path / "state"),
            "MLOPS_IDE_REPO_URL": team_server.url("pipelines.git"),
            "MLOPS_IDE_GIT_TOKEN_FILE": str(token_file),
        }
    )
    connection = airflow.git_connection(settings)

    listed = subprocess.run(
        [str(Tools.load().airflow_python), "-c", LS_REMOTE_WITH_AIRFLOWS_GIT_HOOK],
        env={
            "PATH": os.environ["PATH"],
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            f"AIRFLOW_CONN_{airflow.GIT_CONN_ID.upper()}": json.dumps(connection),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert listed.returncode == 0 and "refs/heads/main" in listed.stdout, listed.stderr
    assert connection["login"] == "x-access-token"  # GitHub's name beside a token
    # the local remote is a folder: no token goes with it
    assert "password" not in airflow.git_connection(load({"MLOPS_IDE_GIT_TOKEN": TOKEN}))


LS_REMOTE_WITH_AIRFLOWS_GIT_HOOK = f"""
import subprocess, sys
from airflow.providers.git.hooks.git import GitHook
hook = GitHook(git_conn_id="{airflow.GIT_CONN_ID}")
with hook.configure_hook_env():
    result = subprocess.run(["git", "ls-remote", hook.repo_url], capture_output=True, text=True)
print(result.stdout, result.stderr, file=sys.stderr if result.returncode else sys.stdout)
sys.exit(result.returncode)
"""
