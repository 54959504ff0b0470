"""The team's repository the platform tests bring (tests/support/team_repository.py), and the
loopback git server that holds it: the repository is what a team has (its layout, Airflow 2
DAG files that ruff's AIR rules flag and Airflow 3 refuses), the upgrade the platform runs
makes two of its three DAG files load, and the server answers as GitHub does (a token to
push; none to read a public repository). Real git, real ruff and Airflow (their virtualenv)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mlops_ide.machine.state.tools import Tools
from mlops_ide.portable.airflow3_upgrade import RULES
from tests.support import team_repository
from tests.support.git_http_server import GitHttpServer
from tests.support.platform_tools import ROOT

TOKEN = "alice-own-token-8d1e"
DAG_CHECK = ROOT / "src" / "mlops_ide" / "portable" / "dag_check.py"


def run_git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},  # no token: fail, never ask
    )


def with_token(url: str, token: str) -> str:
    return url.replace("http://", f"http://alice:{token}@")


@pytest.fixture
def team(tmp_path: Path, home: Path) -> Path:
    """The team's repository, written and committed; a working copy of it."""
    folder = tmp_path / "team"
    team_repository.write(folder)
    return folder


def ruff_findings(folder: Path, *extra: str) -> list[dict]:
    """What ruff's Airflow rules, as the platform runs them (Airflow's virtualenv), say."""
    command = [str(Tools.load().airflow_python), "-m", "ruff", "check", "--isolated", "--preview"]
    command += ["--select", ",".join(RULES), "--output-format", "json", "--exit-zero", *extra]
    result = subprocess.run(
        [*command, team_repository.DAG_FOLDER], cwd=folder, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def dag_check(folder: Path) -> dict[str, dict]:
    """dag_check.py's report on the DAG folder, by file; MLFLOW_TRACKING_URI set as the
    platform sets it for Airflow (the DAGs read it at import)."""
    result = subprocess.run(
        [str(Tools.load().airflow_python), str(DAG_CHECK), str(folder / team_repository.DAG_FOLDER)],
        env={"PATH": os.environ["PATH"], "AIRFLOW_VAR_MLFLOW_TRACKING_URI": "http://127.0.0.1:5000/mlflow"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return {entry["file"]: entry for entry in json.loads(result.stdout)["files"]}


def test_the_repository_has_the_teams_layout_and_no_dags_folder(team: Path) -> None:
    for name in (
        "README.md",
        "requirements.txt",
        ".github/workflows/ci.yml",
        "Docker/Dockerfile.train",
        "src/train.py",
        "cnn_skin_cancer/pod_template.yaml",
        *(f"cnn_skin_cancer/{dag}" for dag in team_repository.DAG_FILES),
    ):
        assert (team / name).is_file(), name
    assert not (team / "dags").exists()
    assert run_git(team, "status", "--porcelain").stdout == ""  # all of it committed


def test_every_dag_file_has_airflow_2_spellings_that_airflow_3_refuses(team: Path) -> None:
    found = ruff_findings(team)
    by_file: dict[str, set[str]] = {}
    for item in found:
        by_file.setdefault(Path(item["filename"]).name, set()).add(item["code"])
    report = dag_check(team)

    assert set(by_file) == set(team_repository.DAG_FILES), by_file
    assert all("AIR301" in by_file[name] for name in team_repository.DAG_FILES)  # schedule_interval
    assert "AIR302" in by_file["airflow_k8s_test_inference_DAG.py"]  # airflow.kubernetes.secret
    assert {name: bool(entry["error"]) for name, entry in report.items()} == dict.fromkeys(
        team_repository.DAG_FILES, True
    )


def test_ruffs_fixes_make_the_fixable_files_load_and_leave_the_provider_move_by_hand(team: Path) -> None:
    ruff_findings(team, "--fix", "--unsafe-fixes")  # what `mlops-ide dag upgrade` applies

    report = dag_check(team)

    for name in team_repository.UPGRADES_CLEANLY:
        assert report[name]["error"] is None, report[name]
        assert report[name]["dags"] == [team_repository.DAG_IDS[name]]
    for name in team_repository.NEEDS_HAND:
        assert "operators.kubernetes_pod" in report[name]["error"], report[name]
    left = {item["code"] for item in ruff_findings(team)}
    assert left == {"AIR301"}  # days_ago: removed, no replacement to write for it


@pytest.fixture
def served(tmp_path: Path, home: Path) -> GitHttpServer:
    team_repository.bare_remote(tmp_path / "remotes")
    with GitHttpServer(tmp_path / "remotes", token=TOKEN) as server:
        yield server


def test_the_served_remote_is_cloned_and_pushed_to_with_the_token(
    tmp_path: Path, served: GitHttpServer
) -> None:
    url = with_token(served.url(team_repository.REMOTE_NAME), TOKEN)
    assert run_git(tmp_path, "clone", "--quiet", url, "clone").returncode == 0
    clone = tmp_path / "clone"
    (clone / "cnn_skin_cancer" / "new_DAG.py").write_text("# a new DAG\n")
    run_git(clone, "add", ".")
    run_git(clone, "-c", "user.name=Alice", "-c", "user.email=a@example.org", "commit", "-qm", "new")

    pushed = run_git(clone, "push", "origin", "main")

    assert pushed.returncode == 0, pushed.stderr
    remote = tmp_path / "remotes" / team_repository.REMOTE_NAME
    assert run_git(remote, "rev-parse", "main").stdout == run_git(clone, "rev-parse", "HEAD").stdout
    assert (clone / "src" / "train.py").is_file()


def test_the_served_remote_refuses_a_clone_and_a_push_without_the_token(
    tmp_path: Path, served: GitHttpServer
) -> None:
    url = served.url(team_repository.REMOTE_NAME)
    refused = run_git(tmp_path, "clone", "--quiet", url, "anonymous")
    wrong = run_git(tmp_path, "clone", "--quiet", with_token(url, "not-the-token"), "wrong")
    assert refused.returncode != 0 and wrong.returncode != 0
    assert not (tmp_path / "anonymous" / "src").exists()

    run_git(tmp_path, "clone", "--quiet", with_token(url, TOKEN), "clone")
    clone = tmp_path / "clone"
    run_git(clone, "remote", "set-url", "origin", url)  # the token forgotten
    run_git(
        clone, "-c", "user.name=Eve", "-c", "user.email=e@example.org", "commit", "-qm", "x", "--allow-empty"
    )
    before = run_git(tmp_path / "remotes" / team_repository.REMOTE_NAME, "rev-parse", "main").stdout

    pushed = run_git(clone, "push", "origin", "main")

    assert pushed.returncode != 0, pushed.stderr
    assert any("git-receive-pack" in line and '" 401 ' in line for line in served.requests), served.requests
    assert "Authentication failed" in wrong.stderr
    assert run_git(tmp_path / "remotes" / team_repository.REMOTE_NAME, "rev-parse", "main").stdout == before


def test_a_public_remote_is_read_without_a_token_but_never_pushed_to(tmp_path: Path, home: Path) -> None:
    remote = team_repository.bare_remote(tmp_path / "remotes")
    with GitHttpServer(tmp_path / "remotes", token=TOKEN, public_read=True) as server:
        url = server.url(team_repository.REMOTE_NAME)
        cloned = run_git(tmp_path, "clone", "--quiet", url, "clone")
        clone = tmp_path / "clone"
        run_git(
            clone,
            "-c",
            "user.name=Eve",
            "-c",
            "user.email=e@example.org",
            "commit",
            "-qm",
            "x",
            "--allow-empty",
        )
        before = run_git(remote, "rev-parse", "main").stdout
        anonymous = run_git(clone, "push", "origin", "main")
        run_git(clone, "remote", "set-url", "origin", with_token(url, TOKEN))
        with_the_token = run_git(clone, "push", "origin", "main")

    assert cloned.returncode == 0 and (clone / "cnn_skin_cancer" / "airflow_docker_DAG.py").is_file()
    assert anonymous.returncode != 0, anonymous.stderr
    assert with_the_token.returncode == 0, with_the_token.stderr
    assert run_git(remote, "rev-parse", "main").stdout != before
