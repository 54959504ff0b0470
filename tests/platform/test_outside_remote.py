"""A team's repository outside the platform (MLOPS_IDE_REPO_URL, here a git server on loopback
that demands the operator's token, as GitHub does): a push to it from anywhere reaches Airflow
within seconds with no webhook (the remote watch polls the tracked branch with Airflow's own
git connection), and the user reads Airflow's verdict with `mlops-ide dag status`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_ide.machine.state.tools import Tools
from mlops_ide.portable import previews
from tests.support.airflow_api import AirflowAPI
from tests.support.git_http_server import GitHttpServer
from tests.support.gitrepos import Remote, git, user_commit
from tests.support.local_platform import ROOT, RunningPlatform, wait_for

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


# -- the remote watch alone (Airflow's virtualenv, no platform): what it does when the remote
# -- refuses the token, and when Airflow is away


def start_watch(tmp_path: Path, url: str, token: str, *more: str) -> subprocess.Popen:
    """The remote watch as the platform runs it, on a connection with `token`, polling fast;
    Airflow's address answers nothing. `more`: more arguments."""
    (tmp_path / "passwords.json").write_text(json.dumps({"mlops-ide-platform": "unused"}))
    (tmp_path / "status").mkdir()
    argv = [str(Tools.load().airflow_python), "-P", "-m", "mlops_ide.in_airflow.remote_watch"]
    argv += ["--git-conn-id", "team", "--mirror", str(tmp_path / "mirror.git"), "--every", "0.2"]
    argv += ["--airflow-url", "http://127.0.0.1:9", "--passwords-file", str(tmp_path / "passwords.json")]
    argv += ["--bundle", "pipelines", "--dag", "platform_smoke_test", "--wait", "0.5"]
    argv += ["--status-file", str(tmp_path / "status" / "status.json"), "--branch", "main"]
    argv += list(more)
    return subprocess.Popen(
        argv, env=watch_env(tmp_path, url, token), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def watch_env(tmp_path: Path, url: str, token: str) -> dict[str, str]:
    connection = {"conn_type": "git", "host": url, "login": "x-access-token", "password": token}
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT / "src"),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW_CONN_TEAM": json.dumps(connection),
        "GIT_TERMINAL_PROMPT": "0",
    }


def stopped(watch: subprocess.Popen) -> str:
    watch.terminate()
    return watch.communicate(timeout=30)[0]


def test_a_refused_token_is_logged_once_and_the_token_never(tmp_path: Path) -> None:
    remote = Remote(tmp_path / "team")
    with GitHttpServer(remote.path.parent, token=TOKEN) as server:
        watch = start_watch(tmp_path, server.url("pipelines.git"), "wrong-token-3b9e51")
        try:
            refused = lambda: sum('" 401 ' in line for line in server.requests) >= 20  # noqa: E731
            wait_for(refused, 90, "ten polls refused")
        finally:
            output = stopped(watch)

    assert output.count("cannot poll the remote (auth)") == 1, output
    assert "wrong-token-3b9e51" not in output and "Traceback" not in output
    assert not (tmp_path / "status" / "status.json").exists()  # nothing to say of Airflow


def test_with_airflow_away_the_watch_says_it_cannot_tell_and_holds_no_token(tmp_path: Path) -> None:
    remote = Remote(tmp_path / "team")
    status = tmp_path / "status" / "status.json"
    with GitHttpServer(remote.path.parent, token=TOKEN) as server:
        watch = start_watch(tmp_path, server.url("pipelines.git"), TOKEN)
        try:
            wait_for(status.exists, 90, "a verdict")
        finally:
            output = stopped(watch)
    written = json.loads(status.read_text())

    assert written["commit"] == remote.head() and written["state"] == "unknown", written
    assert written["lines"][0].startswith("cannot tell what is live (")
    assert TOKEN not in status.read_text() and TOKEN not in output
    assert git(tmp_path / "mirror.git", "rev-parse", "refs/watched") == remote.head()  # fetched


def test_the_watch_gives_the_remotes_preview_branches_slots_and_frees_them(tmp_path: Path) -> None:
    """The same ls-remote lists preview/* too (over smart HTTP, the token demanded): a pushed
    preview takes a slot, with its person from the name; a deleted one frees it; one the
    platform cannot run is logged (pushed before the deletion: listed by then)."""
    remote = Remote(tmp_path / "team")
    registry = tmp_path / "status" / "previews.json"
    with GitHttpServer(remote.path.parent, token=TOKEN) as server:
        previews_on = ["--previews-file", str(registry), "--preview-slots", "2", "--previews-per-person", "3"]
        watch = start_watch(tmp_path, server.url("pipelines.git"), TOKEN, *previews_on)
        try:
            pushed = remote.commit({"dags/lr.py": "# lr\n"}, "a learning rate", branch="preview/alice/lr")
            wait_for(
                lambda: entries(registry) == [("preview-1", "preview/alice/lr", pushed, "alice")],
                90,
                "a slot",
            )
            remote.commit({"dags/x.py": "# x\n"}, "a bad name", branch="preview/alice/x_y")
            git(remote.teammate, "push", "--quiet", "origin", ":preview/alice/lr")
            wait_for(lambda: entries(registry) == [], 90, "the slot freed")
        finally:
            output = stopped(watch)

    assert "preview preview/alice/lr at" in output and "runs in preview-1" in output, output
    assert "preview removed: preview/alice/lr (deleted on the remote)" in output
    assert "'x_y' in preview/alice/x_y is not a topic" in output
    assert TOKEN not in output


def entries(registry: Path) -> list[tuple[str, str, str, str]]:
    return [(e.slot, e.branch, e.commit, e.pushed_by) for e in previews.read(registry)]
