"""`mlops-ide dag check` and `mlops-ide dag upgrade` on an Airflow 2 DAG file as a team brings
it (the spellings of a real pipeline repository: `airflow.kubernetes.secret.Secret`,
`schedule_interval`, `airflow.operators.bash`, `airflow.decorators`, the old
cncf.kubernetes module): what Airflow 3 changed is named under the failing line, the
upgrade is ruff's, and a user's uncommitted edit is never lost. Real git, real Airflow
(its virtualenv), real ruff."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.gitrepos import git
from tests.unit.test_workspace import user_env

AIRFLOW2_DAG = """\
from datetime import datetime, timedelta

from airflow import DAG
from airflow.decorators import task
from airflow.kubernetes.secret import Secret
from airflow.operators.bash import BashOperator

secret_env = Secret(deploy_type="env", deploy_target="AWS_ACCESS_KEY_ID", secret="aws-cred", key="key")

with DAG(
    dag_id="cnn_skin_cancer_k8s_workflow",
    default_args={"owner": "team", "retries": 1, "retry_delay": timedelta(minutes=5)},
    schedule_interval="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
) as dag:
    prepare = BashOperator(task_id="prepare", bash_command="echo prepare")

    @task
    def report():
        print(secret_env.deploy_target)

    prepare >> report()
"""
# A provider's own module that moved (ruff's rules cover Airflow core's moves, not this one)
OLD_POD_OPERATOR = (
    "from airflow.providers.cncf.kubernetes.operators.kubernetes_pod import KubernetesPodOperator\n"
)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A working copy with the team's Airflow 2 DAG file committed."""
    clone = tmp_path / "pipelines"
    (clone / "dags").mkdir(parents=True)
    git(clone, "init", "--quiet", "--initial-branch", "main")
    git(clone, "config", "user.name", "Alice")
    git(clone, "config", "user.email", "alice@example.org")
    (clone / "dags" / "k8s_workflow.py").write_text(AIRFLOW2_DAG)
    (clone / "README.md").write_text("# the team's pipelines\n")
    git(clone, "add", ".")
    git(clone, "commit", "--quiet", "-m", "the team's Airflow 2 DAG")
    return clone


def mlops_ide(user_bin: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = user_env(
        user_bin, MLFLOW_TRACKING_URI="http://127.0.0.1:5000/services/mlflow"
    )  # as a server has it
    return subprocess.run(["mlops-ide", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_check_names_what_airflow_3_changed_under_the_failing_line(user_bin: Path, clone: Path) -> None:
    checked = mlops_ide(user_bin, clone, "dag", "check", "dags/k8s_workflow.py")

    assert checked.returncode == 1
    lines = checked.stdout.splitlines()
    assert lines[0] == "dags/k8s_workflow.py:5: ModuleNotFoundError: No module named 'airflow.kubernetes'"
    hints = [line for line in lines if line.startswith("  Airflow 3: ")]
    assert any(
        "`airflow.kubernetes.secret.Secret`" in line and "`airflow.providers.cncf.kubernetes.secret`" in line
        for line in hints
    ), hints
    assert any("line 13: `schedule_interval` is removed" in line and "`schedule`" in line for line in hints)
    assert "  fix these: mlops-ide dag upgrade dags/k8s_workflow.py" in lines


def test_upgrade_rewrites_the_file_shows_the_diff_and_the_file_then_loads(
    user_bin: Path, clone: Path
) -> None:
    upgraded = mlops_ide(user_bin, clone, "dag", "upgrade", "dags/k8s_workflow.py")

    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert '-    schedule_interval="@daily",' in upgraded.stdout
    assert '+    schedule="@daily",' in upgraded.stdout
    assert "+from airflow.providers.cncf.kubernetes.secret import Secret" in upgraded.stdout
    text = (clone / "dags" / "k8s_workflow.py").read_text()
    assert "schedule_interval" not in text and "airflow.operators.bash" not in text
    assert "1 DAG file(s), 0 that would not load" in upgraded.stdout
    again = mlops_ide(user_bin, clone, "dag", "check", "dags/k8s_workflow.py")
    assert again.returncode == 0, again.stdout
    assert git(clone, "status", "--porcelain").split() == ["M", "dags/k8s_workflow.py"]  # the user commits it


def test_what_ruff_cannot_fix_is_left_failing_with_its_line(user_bin: Path, clone: Path) -> None:
    (clone / "dags" / "k8s_workflow.py").write_text(OLD_POD_OPERATOR + AIRFLOW2_DAG)
    git(clone, "commit", "--quiet", "-am", "with the pod operator")

    upgraded = mlops_ide(user_bin, clone, "dag", "upgrade", "dags/k8s_workflow.py")

    assert upgraded.returncode == 1
    assert (
        "dags/k8s_workflow.py:1: ModuleNotFoundError: No module named "
        "'airflow.providers.cncf.kubernetes.operators.kubernetes_pod'" in upgraded.stdout
    )
    assert "still failing after the upgrade: fix the lines above by hand" in upgraded.stdout


def test_upgrade_never_takes_an_uncommitted_edit_unless_forced(user_bin: Path, clone: Path) -> None:
    edited = AIRFLOW2_DAG + "# my edit, not committed\n"
    (clone / "dags" / "k8s_workflow.py").write_text(edited)

    refused = mlops_ide(user_bin, clone, "dag", "upgrade", "dags/k8s_workflow.py")

    assert refused.returncode == 2
    assert "uncommitted changes; commit them first" in refused.stderr and "--force" in refused.stderr
    assert (clone / "dags" / "k8s_workflow.py").read_text() == edited
    forced = mlops_ide(user_bin, clone, "dag", "upgrade", "--force", "dags/k8s_workflow.py")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "# my edit, not committed" in (clone / "dags" / "k8s_workflow.py").read_text()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("README.md", "is outside the DAG folder"),
        ("dags/notes.txt", "is not a Python file"),
        ("dags/missing.py", "is not a file of the DAG folder"),
    ],
)
def test_upgrade_refuses_what_is_not_a_dag_file(user_bin: Path, clone: Path, path: str, message: str) -> None:
    (clone / "dags" / "notes.txt").write_text("notes\n")

    refused = mlops_ide(user_bin, clone, "dag", "upgrade", path)

    assert refused.returncode == 2
    assert message in refused.stderr
    assert git(clone, "status", "--porcelain", "--untracked-files=no") == ""


PARSE_TIME_READS = """\
from airflow.sdk import DAG, Variable

TRACKING = Variable.get("MLFLOW_TRACKING_URI")
BUCKET = Variable.get("TEAM_BUCKET")

with DAG(dag_id="reads_at_parse", schedule=None):
    pass
"""


def test_check_names_a_variable_read_at_parse_time_and_how_to_set_it(user_bin: Path, clone: Path) -> None:
    """The platform answers MLFLOW_TRACKING_URI itself (as Airflow has it: AIRFLOW_VAR_*);
    a variable only the team can set is named, with the page and the command that set it."""
    (clone / "dags" / "reads.py").write_text(PARSE_TIME_READS)

    checked = mlops_ide(user_bin, clone, "dag", "check", "dags/reads.py")

    assert checked.returncode == 1
    lines = checked.stdout.splitlines()
    assert lines[0].startswith("dags/reads.py:4: ") and "TEAM_BUCKET" in lines[0], lines
    assert lines[1] == (
        "  the Airflow variable TEAM_BUCKET is not set: a hub admin sets it in Airflow (Admin > Variables, "
        "/services/airflow/variables) or with `airflow variables set TEAM_BUCKET VALUE`; or, better, read "
        "it in a task, not at parse time"
    )
    assert "MLFLOW_TRACKING_URI" not in checked.stdout  # the user's server has it; Airflow too
