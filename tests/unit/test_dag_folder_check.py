"""`make up` refuses a DAG folder the pipeline repository does not have, naming the setting
and the repository's top folders: a team's repository on a git server that demands a token
(as GitHub does), and the local remote."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ide.hub.modes import load
from mlops_ide.machine.state import dag_folder_check
from mlops_ide.machine.state.layout import StateError
from mlops_ide.machine.state.tools import Tools
from mlops_ide.supervisor import up
from tests.support.git_http_server import GitHttpServer
from tests.support.gitrepos import Remote

TOKEN = "team-read-token-6c1d"
TEAM_FILES = {
    "cnn_skin_cancer/airflow_docker_DAG.py": "# an Airflow DAG\n",
    "src/model.py": "LAYERS = 3\n",
    "Docker/Dockerfile": "FROM python:3.11\n",
    ".github/workflows/ci.yml": "on: push\n",
}


@pytest.fixture
def team(tmp_path: Path) -> Remote:
    remote = Remote(tmp_path, name="team")
    remote.commit({**TEAM_FILES, "dags/train.py": None}, "the team's repository (no dags/)")
    return remote


def settings_for(tmp_path: Path, url: str | None, folder: str, token: str = TOKEN):
    values = {"MLOPS_IDE_HOME": str(tmp_path / "state"), "MLOPS_IDE_DAGS_FOLDER": folder}
    if url is not None:
        values |= {"MLOPS_IDE_REPO_URL": url, "MLOPS_IDE_GIT_TOKEN": token}
    return load(values)


def test_a_team_repository_on_a_token_server_has_its_folder_or_says_which_it_has(
    tmp_path: Path, team: Remote
) -> None:
    with GitHttpServer(team.path.parent, token=TOKEN) as server:
        found = dag_folder_check.folder_problem(
            settings_for(tmp_path, server.url("team.git"), "cnn_skin_cancer")
        )
        missing = dag_folder_check.folder_problem(settings_for(tmp_path, server.url("team.git"), "dags"))
        with pytest.raises(dag_folder_check.Unreadable):
            dag_folder_check.folder_problem(settings_for(tmp_path, server.url("team.git"), "dags", "wrong"))

    assert found is None
    assert missing is not None and missing.startswith(
        "MLOPS_IDE_DAGS_FOLDER=dags: the pipeline repository has no"
    )
    assert "Its top folders: .github/, Docker/, cnn_skin_cancer/, src/." in missing
    assert "`.` for the whole repository" in missing
    assert dag_folder_check.folder_problem(settings_for(tmp_path, server.url("team.git"), ".")) is None


def test_the_local_remote_is_read_in_place(tmp_path: Path, team: Remote) -> None:
    settings = settings_for(tmp_path, None, "pipelines/dags")
    settings.local_remote.parent.mkdir(parents=True)
    team.path.rename(settings.local_remote)

    problem = dag_folder_check.folder_problem(settings)

    assert problem is not None and "MLOPS_IDE_DAGS_FOLDER=pipelines/dags" in problem
    assert dag_folder_check.folder_problem(settings_for(tmp_path, None, "cnn_skin_cancer")) is None


def test_make_up_stops_before_anything_starts_naming_the_setting(tmp_path: Path, team: Remote) -> None:
    with GitHttpServer(team.path.parent, token=TOKEN) as server:
        settings = settings_for(tmp_path, server.url("team.git"), "dags")
        with pytest.raises(
            StateError, match=r"MLOPS_IDE_DAGS_FOLDER=dags: .* top folders: \.github/, Docker/"
        ):
            up.prepare_state(settings, Tools.load())
