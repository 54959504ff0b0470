"""The local remote's post-receive hook never holds up or breaks a push."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from mlops_ide.local_state import Tools, ensure_local_remote
from mlops_ide.modes import load
from mlops_ide.services import Platform, airflow
from tests.gitrepos import git, user_commit
from tests.local_platform import ROOT, free_port_base


def test_push_is_not_held_while_airflow_hangs(tmp_path: Path, silent_port: int) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state"), "MLOPS_IDE_AIRFLOW_PORT": str(silent_port)})
    remote, _ = ensure_local_remote(settings)
    (settings.home / "logs").mkdir()
    airflow.write_passwords(settings, "a-password")
    airflow.install_push_hook(Platform(settings, Tools.load(), "a-password"))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(remote), str(clone))
    mine = user_commit(clone, {"dags/new.py": "# new\n"}, "new")

    git(clone, "-c", "user.name=t", "push", "--quiet", "origin", "main")

    assert git(remote, "rev-parse", "main") == mine
    log = settings.home / "logs" / "post-receive.log"
    # the push came back while the hook was still waiting on the hung Airflow (10 s timeout)
    assert "could not ask" not in (log.read_text() if log.exists() else "")
    deadline = time.monotonic() + 30  # the hook gives up after its 10 s timeout
    while "could not ask" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "could not ask Airflow to re-parse" in log.read_text()
    assert "timed out" in log.read_text() and "next bundle refresh" in log.read_text()


def test_refresh_names_the_problem_when_airflow_refuses(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords.json"
    passwords.write_text('{"admin": "x"}')

    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "src" / "mlops_ide" / "dag_refresh.py"),
            "--airflow-url",
            f"http://127.0.0.1:{free_port_base()}",
            "--passwords-file",
            str(passwords),
            "--dag",
            "d",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 1
    assert "could not ask Airflow to re-parse" in result.stdout and "Connection refused" in result.stdout


def test_a_branch_name_cannot_run_code_in_the_hook(tmp_path: Path) -> None:
    """`main$(touch${IFS}pwned)` is a valid branch name; pasted into the hook unquoted it ran."""
    branch = "main$(touch${IFS}pwned)"
    settings = load(
        {
            "MLOPS_IDE_HOME": str(tmp_path / "state"),
            "MLOPS_IDE_REPO_BRANCH": branch,
            "MLOPS_IDE_AIRFLOW_PORT": str(free_port_base()),  # nothing listens: refused at once
        }
    )
    remote, _ = ensure_local_remote(settings)
    (settings.home / "logs").mkdir()
    airflow.install_push_hook(Platform(settings, Tools.load(), "a-password"))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", "--branch", branch, str(remote), str(clone))
    user_commit(clone, {"dags/new.py": "# new\n"}, "new")

    git(clone, "-c", "user.name=t", "push", "--quiet", "origin", branch)

    log = settings.home / "logs" / "post-receive.log"
    deadline = time.monotonic() + 30
    while "post-receive" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "could not ask Airflow to re-parse" in log.read_text()  # the hook ran, for this branch
    assert list(tmp_path.rglob("pwned")) == []
