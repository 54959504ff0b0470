"""The local push watcher: a push is never held up or broken by Airflow, a branch name is
data, and the branch is read as git stores it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlops_ide.dag_refresh import read_ref
from mlops_ide.local_state import Tools, ensure_local_remote, install_code
from mlops_ide.modes import load
from mlops_ide.services import Platform, airflow
from tests.gitrepos import git, user_commit
from tests.local_platform import ROOT, free_port_base


@contextmanager
def watching(tmp_path: Path, airflow_port: int, branch: str = "main") -> Iterator[tuple[Path, Path]]:
    """The watcher as the platform runs it, for a fresh local remote; yields (clone, log)."""
    settings = load(
        {
            "MLOPS_IDE_HOME": str(tmp_path / "state"),
            "MLOPS_IDE_AIRFLOW_PORT": str(airflow_port),
            "MLOPS_IDE_REPO_BRANCH": branch,
        }
    )
    remote, _ = ensure_local_remote(settings)
    platform = Platform(settings, Tools.load(), "a-password")
    install_code(settings)  # the watcher runs from the state folder's copy, as on the platform
    airflow.write_passwords(platform)
    watcher = airflow.push_watcher(platform)
    log = tmp_path / "watcher.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(watcher.argv, env=watcher.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "watching" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        clone = tmp_path / "clone"
        git(tmp_path, "clone", "--quiet", "--branch", branch, str(remote), str(clone))
        yield clone, log
    finally:
        process.terminate()
        process.wait(10)


def wait_for_line(log: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while text not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    return log.read_text()


def test_push_is_not_held_while_airflow_hangs(tmp_path: Path, silent_port: int) -> None:
    with watching(tmp_path, silent_port) as (clone, log):
        mine = user_commit(clone, {"dags/new.py": "# new\n"}, "new")
        git(clone, "-c", "user.name=t", "push", "--quiet", "origin", "main")

        # the push came back while the watcher was still waiting on the hung Airflow (10 s timeout)
        assert "could not ask" not in log.read_text()
        text = wait_for_line(log, "could not ask")
    assert f"push of {mine[:12]} to main: could not ask Airflow to re-parse" in text
    assert "timed out" in text and "next bundle refresh" in text


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


def test_a_branch_name_is_never_run(tmp_path: Path) -> None:
    """`main$(touch${IFS}pwned)` is a valid branch name; a shell hook once ran it."""
    branch = "main$(touch${IFS}pwned)"
    with watching(tmp_path, free_port_base(), branch) as (clone, log):  # nothing listens there
        mine = user_commit(clone, {"dags/new.py": "# new\n"}, "new")
        git(clone, "-c", "user.name=t", "push", "--quiet", "origin", branch)
        text = wait_for_line(log, "could not ask")

    assert f"push of {mine[:12]} to {branch}: could not ask" in text  # seen, for this branch
    assert list(tmp_path.rglob("pwned")) == []


def test_the_branch_is_read_as_git_stores_it(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    remote, _ = ensure_local_remote(settings)
    loose = git(remote, "rev-parse", "main")
    assert read_ref(remote, "main") == loose

    git(remote, "pack-refs", "--all")

    assert not (remote / "refs" / "heads" / "main").exists() and read_ref(remote, "main") == loose
    assert read_ref(remote, "no-such-branch") is None


def test_a_planted_link_or_pipe_is_not_read(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    remote, _ = ensure_local_remote(settings)
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef-not-a-commit")
    heads = remote / "refs" / "heads"
    (heads / "linked").symlink_to(secret)
    os.mkfifo(heads / "piped")  # a read would wait forever

    assert read_ref(remote, "linked") is None
    assert read_ref(remote, "piped") is None
