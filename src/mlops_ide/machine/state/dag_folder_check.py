"""`make up` checks that the pipeline repository has the DAG folder MLOPS_IDE_DAGS_FOLDER
names, before anything starts: without it Airflow would list no DAG and say nothing. The
local remote is read in place; a team's repository (MLOPS_IDE_REPO_URL) through a shallow,
blob-less bare clone of the tracked branch (its trees only, kilobytes), with the operator's
token handed to git by an askpass program, never in a URL or an argument. A repository that
cannot be read now (offline, a token git refuses) is said, not fatal: Airflow's bundle will
say the same later.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from mlops_ide.machine.state.credentials import operator_git_token
from mlops_ide.portable import dag_folder
from mlops_ide.settings import Settings

READ_SECONDS = 30.0
ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$GIT_ASKPASS_USERNAME" ;;
  *) printf '%s\\n' "$GIT_ASKPASS_TOKEN" ;;
esac
"""


class Unreadable(Exception):
    """The repository could not be read now; the message says why."""


def folder_problem(settings: Settings) -> str | None:
    """What to set, when the tracked branch has no DAG folder; None when it has one (or the
    whole repository is the folder). Unreadable when the repository cannot be read."""
    if settings.dags_folder == dag_folder.WHOLE_REPOSITORY:
        return None
    if settings.repo_url is None:
        return problem_in(settings.local_remote, settings)
    with tempfile.TemporaryDirectory(prefix="mlops-ide-dag-folder-") as scratch:
        clone = Path(scratch) / "repository.git"
        askpass = Path(scratch) / "askpass"
        askpass.write_text(ASKPASS)
        askpass.chmod(0o700)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": str(askpass),
            "GIT_ASKPASS_USERNAME": settings.git_username or "x-access-token",
            "GIT_ASKPASS_TOKEN": operator_git_token(settings),
        }
        argv = ["git", "clone", "--quiet", "--bare", "--depth", "1", "--filter=blob:none", "--single-branch"]
        argv += ["--branch", settings.repo_branch, "--", settings.repo_url, str(clone)]
        try:
            cloned = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=READ_SECONDS)
        except subprocess.TimeoutExpired:
            raise Unreadable(f"no answer from {settings.repo_url} in {READ_SECONDS:.0f} s") from None
        if cloned.returncode:
            raise Unreadable(
                cloned.stderr.strip().splitlines()[-1] if cloned.stderr.strip() else "git failed"
            )
        return problem_in(clone, settings)


def problem_in(repository: Path, settings: Settings) -> str | None:
    branch = f"refs/heads/{settings.repo_branch}"
    found = git(repository, "ls-tree", "-d", "--name-only", branch, "--", settings.dags_folder)
    if found.strip() == settings.dags_folder:
        return None
    tops = [
        name + "/" for name in git(repository, "ls-tree", "-d", "--name-only", branch).split("\n") if name
    ]
    return (
        f"MLOPS_IDE_DAGS_FOLDER={settings.dags_folder}: the pipeline repository has no such folder on "
        f"{settings.repo_branch}, so Airflow would find no DAG. Its top folders: "
        f"{', '.join(tops) or 'none'}. Set MLOPS_IDE_DAGS_FOLDER to the folder of its DAG files (`.` for "
        "the whole repository)."
    )


def git(repository: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repository), *args], capture_output=True, text=True)
    if result.returncode:
        raise Unreadable(result.stderr.strip() or f"git {args[0]} failed")
    return result.stdout
