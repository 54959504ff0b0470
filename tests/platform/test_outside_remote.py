"""A team's repository outside the platform (MLOPS_IDE_REPO_URL, here a git server on loopback
that demands the operator's token, as GitHub does): a push to it from anywhere reaches Airflow
within seconds with no webhook (the remote watch polls the tracked branch with Airflow's own
git connection), and the user reads Airflow's verdict with `mlops-ide dag status`."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.airflow_api import AirflowAPI
from tests.support.git_http_server import GitHttpServer
from tests.support.gitrepos import Remote, git, user_commit
from tests.support.local_platform import RunningPlatform

TOKEN = "operator-token-8d1c0e6a4b27"  # what the team's git server demands
BASIC = base64.b64encode(f"alice:{TOKEN}".encode()).decode()
AS_ALICE = ("-c", f"http.extraHeader=Authorization: Basic {BASIC}")  # her own credential, this command only

TEAM_DAG = """from airflow.sdk import dag, task


@dag(dag_id="team_hello", schedule=None, tags=["test"])
def team_hello():
    @task
    def hello() -> str:
        return "hello"

    hello()


team_hello()
"""
BROKEN_DAG = "from airflow.sdk import dag\nimport module_that_is_not_installed\n"


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Remote, GitHttpServer]]:
    """The team's repository (no DAG Airflow would load yet: no anchor), served with a token."""
    remote = Remote(tmp_path_factory.mktemp("team"))
    with GitHttpServer(remote.path.parent, token=TOKEN) as server:
        yield remote, server


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, team: tuple[Remote, GitHttpServer]
) -> Iterator[RunningPlatform]:
    _, server = team
    running = RunningPlatform(
        tmp_path_factory.mktemp("outside") / "state",
        MLOPS_IDE_SERVICES="airflow",
        MLOPS_IDE_REPO_URL=server.url("pipelines.git"),
        MLOPS_IDE_GIT_TOKEN=TOKEN,
        MLOPS_IDE_SYNC_TIMEOUT="10",
    ).start(timeout=180)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def clone(platform: RunningPlatform, team: tuple[Remote, GitHttpServer]) -> Path:
    """Alice's clone, made in her terminal with her own credential (the platform has none to
    give her: the operator's token is Airflow's)."""
    _, server = team
    platform.open_vscode(platform.login("alice"), "alice")
    home = platform.home / "homes" / "alice"
    folder = home / "team-clone"
    cloned = platform.terminal(
        "alice", "git", *AS_ALICE, "clone", server.url("pipelines.git"), str(folder), cwd=home
    )
    assert cloned.returncode == 0, cloned.stderr
    for key, value in (("user.name", "Alice"), ("user.email", "alice@example.com")):
        platform.terminal("alice", "git", "config", key, value, cwd=folder)
    return folder


def push(
    platform: RunningPlatform, clone: Path, files: dict[str, str | None], message: str, branch: str = "main"
) -> str:
    commit = user_commit(clone, files, message)
    pushed = platform.terminal(
        "alice", "git", *AS_ALICE, "push", "--no-verify", "origin", f"HEAD:{branch}", cwd=clone
    )
    assert pushed.returncode == 0, pushed.stderr
    if branch == "main":  # what `git push` leaves in her clone
        git(clone, "update-ref", "refs/remotes/origin/main", commit)
    return commit


def dag_status(platform: RunningPlatform, clone: Path, wait: str = "100"):  # under terminal()'s 120 s
    return platform.terminal("alice", "mlops-ide", "dag", "status", "--wait", wait, cwd=clone)


def status_file(platform: RunningPlatform) -> Path:
    return platform.home / "push-status" / "status.json"


def test_a_push_of_a_new_dag_to_the_team_remote_is_live_and_dag_status_says_so(
    platform: RunningPlatform, clone: Path
) -> None:
    commit = push(platform, clone, {"dags/team_hello.py": TEAM_DAG}, "a team DAG")

    shown = dag_status(platform, clone)

    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "  live: team_hello" in shown.stdout
    assert f"Airflow runs main at {commit[:12]}" in shown.stdout
    assert f"your push {commit[:12]} is live" in shown.stdout
    dag = AirflowAPI(platform.airflow_url, platform.airflow_password).dag("team_hello")
    assert dag is not None and dag["bundle_version"] == commit


def test_a_push_of_a_dag_that_does_not_load_shows_its_import_error_with_file_and_line(
    platform: RunningPlatform, clone: Path
) -> None:
    commit = push(platform, clone, {"dags/team_broken.py": BROKEN_DAG}, "a broken DAG")

    shown = dag_status(platform, clone)

    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "dags/team_broken.py:2: import error: ModuleNotFoundError" in shown.stdout, shown.stdout
    assert f"your push {commit[:12]} is in Airflow, and a DAG file does not load" in shown.stdout


def test_a_push_to_another_branch_changes_nothing(platform: RunningPlatform, clone: Path) -> None:
    elsewhere = push(
        platform,
        clone,
        {"dags/team_elsewhere.py": TEAM_DAG.replace("team_hello", "elsewhere")},
        "x",
        "feature",
    )
    git(clone, "reset", "--quiet", "--hard", "HEAD~1")
    then = push(
        platform, clone, {"notes.md": "after the feature push\n"}, "notes"
    )  # the watch has polled since

    shown = dag_status(platform, clone)

    assert shown.returncode == 0 and f"Airflow runs main at {then[:12]}" in shown.stdout, shown.stdout
    log = (platform.home / "logs" / "airflow-remote-watch.log").read_text()
    assert elsewhere[:12] not in log and elsewhere[:12] not in status_file(platform).read_text()
    assert AirflowAPI(platform.airflow_url, platform.airflow_password).dag("elsewhere") is None


def test_the_verdict_file_holds_no_secret_and_no_user_can_write_it(
    platform: RunningPlatform, clone: Path
) -> None:
    text = status_file(platform).read_text()
    folder = status_file(platform).parent

    assert TOKEN not in text and platform.airflow_password not in text
    if os.geteuid() == 0:  # users are OS accounts of their own: the file is the pipeline's
        wrote = platform.terminal("alice", "sh", "-c", f"echo '{{}}' > {status_file(platform)}", cwd=clone)
        planted = platform.terminal("alice", "touch", str(folder / "planted.json"), cwd=clone)
        moved = platform.terminal("alice", "mv", str(status_file(platform)), str(folder / "gone"), cwd=clone)
        assert wrote.returncode != 0 and planted.returncode != 0 and moved.returncode != 0
        assert status_file(platform).read_text() == text and not (folder / "planted.json").exists()
        read = platform.terminal("alice", "cat", str(status_file(platform)), cwd=clone)
        assert read.returncode == 0 and read.stdout == text  # every user reads it
