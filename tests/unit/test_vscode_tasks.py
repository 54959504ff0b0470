"""The DAG tasks in VS Code for a team's repository (which has no tasks of ours): user
tasks for the DAG folder the platform set; never over a tasks file of the user's own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from startup import vscode


def read_tasks(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith(f"// {vscode.TASKS_MARK}")
    return json.loads(text.split("\n", 1)[1])  # VS Code reads JSON with comments


def test_a_team_repository_gets_the_dag_tasks_for_its_dag_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_IDE_DAGS_FOLDER", "cnn_skin_cancer")
    tasks_file = tmp_path / "User" / "tasks.json"

    vscode.write_dag_tasks(tasks_file, tmp_path / "team")

    tasks = {task["label"]: task for task in read_tasks(tasks_file)["tasks"]}
    assert tasks["Check all DAGs"]["command"] == 'mlops-ide dag check "cnn_skin_cancer"'
    pattern = re.compile(tasks["Check DAGs"]["problemMatcher"]["pattern"]["regexp"])
    problem = pattern.match("cnn_skin_cancer/nested/broken.py:4: NameError: name 'x' is not defined")
    assert problem and problem.groups() == (
        "cnn_skin_cancer/nested/broken.py",
        "4",
        "NameError: name 'x' is not defined",
    )
    assert not pattern.match("2 DAG file(s), 1 that would not load")


def test_tasks_of_the_repository_or_of_the_user_are_left_alone(tmp_path: Path) -> None:
    seeded = tmp_path / "pipelines"
    (seeded / ".vscode").mkdir(parents=True)
    (seeded / ".vscode" / "tasks.json").write_text("{}")
    vscode.write_dag_tasks(tmp_path / "a" / "tasks.json", seeded)
    own = tmp_path / "b" / "tasks.json"
    own.parent.mkdir()
    own.write_text('{"version": "2.0.0", "tasks": [{"label": "mine"}]}')
    vscode.write_dag_tasks(own, tmp_path / "team")

    assert not (tmp_path / "a" / "tasks.json").exists()  # the repository's own tasks are shown
    assert own.read_text() == '{"version": "2.0.0", "tasks": [{"label": "mine"}]}'
