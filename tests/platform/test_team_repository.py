"""The platform on a team's own repository, as it is (tests/support/team_repository.py: a
CNN skin-cancer project, its Airflow 2 DAG files in cnn_skin_cancer/ beside src/ and
Docker/), served on loopback as GitHub serves a public repository (read by anyone, pushed
with a person's own token): MLOPS_IDE_REPO_URL is that remote, MLOPS_IDE_DAGS_FOLDER its
folder. Alice's clone has the team's files; Airflow reports every DAG file of the folder;
`mlops-ide dag check` names the line and the Airflow 3 replacement, `mlops-ide dag upgrade`
applies it, and the upgraded file, pushed, is live. No hook of ours runs at the team's
remote: the remote watch picks pushes up, and while none of the repository's DAGs loads (as
here before the upgrade) Airflow's bundle refresh (60 s) does, so the waits are generous."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import team_repository
from tests.support.airflow_api import AirflowAPI
from tests.support.git_http_server import GitHttpServer
from tests.support.gitrepos import git, user_commit
from tests.support.local_platform import PlatformConfig, RunningPlatform, started_platform, wait_for

PUSH_TOKEN = "a-teams-push-token-4c2b"  # what the team server takes for a push (on GitHub: each person's own)
FOLDER = team_repository.DAG_FOLDER
UPGRADED = "airflow_k8s_test_inference_DAG.py"  # ruff fixes it entirely (the Secret's move)
REFRESH_WAIT = 150  # seconds: Airflow's bundle refresh (60 s) plus a parse, on a busy machine

NEW_DAG = """\
from airflow.sdk import DAG

with DAG(dag_id="cnn_skin_cancer_teammate_new", schedule=None, tags=["team"]):
    pass
"""


@pytest.fixture(scope="module")
def team_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttpServer]:
    root = tmp_path_factory.mktemp("team-git") / "remotes"
    team_repository.bare_remote(root)
    with GitHttpServer(root, token=PUSH_TOKEN, public_read=True) as server:
        yield server


@pytest.fixture(scope="module")
def platform(
    team_remote: GitHttpServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPlatform]:
    config = PlatformConfig(
        "team_repository",
        {
            "MLOPS_IDE_SERVICES": "airflow,mlflow",
            "MLOPS_IDE_REPO_URL": team_remote.url(team_repository.REMOTE_NAME),
            "MLOPS_IDE_DAGS_FOLDER": FOLDER,
        },
        timeout=180,
    )
    with started_platform(config, tmp_path_factory.mktemp(config.name)) as running:
        yield running


@pytest.fixture(scope="module")
def airflow(platform: RunningPlatform) -> AirflowAPI:
    return AirflowAPI(platform.airflow_url, platform.airflow_password)


@pytest.fixture(scope="module")
def clone(platform: RunningPlatform, team_remote: GitHttpServer) -> Path:
    """Alice's clone, made by the startup hook when her server started; her own token in
    her own git credentials (as `git push` asking once leaves it), for pushes."""
    platform.open_vscode(platform.login("alice"), "alice")
    clone = platform.home / "homes" / "alice" / team_repository.REMOTE_NAME.removesuffix(".git")
    home = clone.parent
    credentials = home / ".git-credentials"
    credentials.write_text(f"http://alice:{PUSH_TOKEN}@127.0.0.1:{team_remote.port}\n")
    credentials.chmod(0o600)
    os.chown(credentials, home.stat().st_uid, home.stat().st_gid)
    configured = platform.terminal(
        "alice", "git", "config", "--global", "--add", "credential.helper", "store", cwd=home
    )
    assert configured.returncode == 0, configured.stderr
    return clone


def mlops_ide(platform: RunningPlatform, clone: Path, *args: str) -> subprocess.CompletedProcess:
    """`mlops-ide dag ARGS` in a terminal of alice's VS Code, in her clone."""
    return platform.terminal("alice", "mlops-ide", "dag", *args, cwd=clone)


def shown(airflow: AirflowAPI, name: str) -> bool:
    """Airflow lists a DAG of the file `name` of the folder, or reports its import error."""
    errors = airflow.import_errors()
    dags = airflow.get("dags?limit=100").json()["dags"]
    return any(file.endswith(name) for file in errors) or any(
        (dag.get("relative_fileloc") or "").endswith(name) for dag in dags
    )


def test_her_clone_has_the_teams_files(team_remote: GitHttpServer, clone: Path) -> None:
    for name in ("src/train.py", "Docker/Dockerfile.train", ".github/workflows/ci.yml", "requirements.txt"):
        assert (clone / name).is_file(), name
    for name in team_repository.DAG_FILES:
        assert (clone / FOLDER / name).read_text() == team_repository.FILES[f"{FOLDER}/{name}"]
    assert not (clone / "dags").exists()


def test_airflow_reports_every_dag_file_of_the_folder(airflow: AirflowAPI) -> None:
    for name in team_repository.DAG_FILES:  # all three fail in Airflow 3 as the team has them
        wait_for(lambda name=name: shown(airflow, name), REFRESH_WAIT, f"Airflow to report {FOLDER}/{name}")
    errors = airflow.import_errors()
    assert "airflow.kubernetes" in next(text for file, text in errors.items() if file.endswith(UPGRADED))


def test_dag_check_names_the_line_the_airflow_3_replacement_and_the_upgrade(
    platform: RunningPlatform, clone: Path
) -> None:
    checked = mlops_ide(platform, clone, "check", f"{FOLDER}/{UPGRADED}")

    assert checked.returncode == 1, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert lines[0] == f"{FOLDER}/{UPGRADED}:7: ModuleNotFoundError: No module named 'airflow.kubernetes'"
    assert any("`airflow.providers.cncf.kubernetes.secret`" in line for line in lines), lines
    assert f"  fix these: mlops-ide dag upgrade {FOLDER}/{UPGRADED}" in lines


def test_the_upgraded_file_passes_the_check_and_once_pushed_is_live(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path, team_remote: GitHttpServer
) -> None:
    upgraded = mlops_ide(platform, clone, "upgrade", f"{FOLDER}/{UPGRADED}")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "+from airflow.providers.cncf.kubernetes.secret import Secret" in upgraded.stdout
    checked = mlops_ide(platform, clone, "check", f"{FOLDER}/{UPGRADED}")
    assert checked.returncode == 0, checked.stdout

    git(clone, "commit", "--quiet", "-am", "Airflow 3: mlops-ide dag upgrade")
    pushed = platform.terminal("alice", "git", "push", "origin", "main", cwd=clone)

    assert pushed.returncode == 0, pushed.stderr
    remote = team_remote.root / team_repository.REMOTE_NAME
    assert git(remote, "rev-parse", "main") == git(clone, "rev-parse", "HEAD")
    dag_id = team_repository.DAG_IDS[UPGRADED]
    wait_for(lambda: airflow.dag(dag_id), REFRESH_WAIT, f"{dag_id} to be listed after the push")


def test_a_teammates_new_dag_pushed_to_the_team_remote_is_listed(
    airflow: AirflowAPI, team_remote: GitHttpServer, tmp_path: Path
) -> None:
    """A teammate who is not on the platform pushes to the team's repository directly."""
    url = team_remote.url(team_repository.REMOTE_NAME).replace("http://", f"http://bob:{PUSH_TOKEN}@")
    teammate = tmp_path / "bob"
    git(tmp_path, "clone", "--quiet", url, str(teammate))
    git(teammate, "config", "user.name", "Bob")
    git(teammate, "config", "user.email", "bob@example.org")
    user_commit(teammate, {f"{FOLDER}/teammate_new_DAG.py": NEW_DAG}, "a new DAG")
    git(teammate, "push", "--quiet", "origin", "main")

    wait_for(
        lambda: airflow.dag("cnn_skin_cancer_teammate_new"), REFRESH_WAIT, "the teammate's DAG to be listed"
    )


def test_upgrade_refuses_a_file_outside_the_folder_and_a_file_that_is_not_python(
    platform: RunningPlatform, clone: Path
) -> None:
    outside = mlops_ide(platform, clone, "upgrade", "src/train.py")
    not_python = mlops_ide(platform, clone, "upgrade", f"{FOLDER}/pod_template.yaml")

    assert outside.returncode == 2 and "outside the DAG folder" in outside.stderr, outside.stderr
    assert not_python.returncode == 2 and "not a Python file" in not_python.stderr, not_python.stderr
    assert git(clone, "status", "--porcelain") == ""  # neither touched


def test_upgrade_never_takes_an_uncommitted_edit_without_force(
    platform: RunningPlatform, clone: Path
) -> None:
    path = clone / FOLDER / "airflow_docker_DAG.py"
    edited = path.read_text() + "# alice's edit, not committed yet\n"
    path.write_text(edited)

    refused = mlops_ide(platform, clone, "upgrade", f"{FOLDER}/airflow_docker_DAG.py")

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "uncommitted changes; commit them first" in refused.stderr and "--force" in refused.stderr
    assert path.read_text() == edited
