"""The local remote's push hooks, the DAG check's sandbox and the push check, without Airflow
running: a broken DAG is refused with its file and line, a push is never held long by a
hung Airflow nor lost when the checks are away, a branch name is data, and a crafted
request cannot write outside its folder. Both services run for real (Airflow's virtualenv,
as the platform runs them, here without the platform's accounts: tests/platform/test_push_sandbox.py
has them); the remote is a real bare repository with the platform's hooks."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops_ide.hub.modes import load
from mlops_ide.in_airflow import dag_sandbox
from mlops_ide.machine.state.code_copy import install_code
from mlops_ide.machine.state.remote import ensure_local_remote, install_push_hooks
from mlops_ide.machine.state.tools import Tools
from mlops_ide.portable import dag_check
from tests.support.gitrepos import git, user_commit
from tests.support.local_platform import ROOT, free_port_base
from tests.support.push_remote import logs, push, remote_with_hooks

GOOD_DAG = (
    "from airflow.sdk import dag\n\n\n@dag(dag_id='good', schedule=None)\ndef good():\n    pass\n\n\ngood()\n"
)


def test_a_broken_dag_is_refused_and_a_hung_airflow_holds_a_good_push_only_briefly(
    tmp_path: Path, silent_port: int
) -> None:
    with remote_with_hooks(tmp_path, silent_port) as (clone, settings):
        before = git(clone, "rev-parse", "origin/main")
        user_commit(
            clone, {"dags/broken.py": "from airflow.sdk import dag\nraise ValueError('no')\n"}, "broken"
        )
        refused = push(clone)
        assert refused.returncode != 0
        assert "remote:   dags/broken.py:2: ValueError: no" in refused.stderr, refused.stderr
        assert git(clone, "ls-remote", "origin", "main").split()[0] == before

        git(clone, "reset", "--quiet", "--hard", "origin/main")
        mine = user_commit(clone, {"dags/good.py": GOOD_DAG}, "good")
        started = time.monotonic()
        accepted = push(clone)
        took = time.monotonic() - started

    assert accepted.returncode == 0, accepted.stderr
    assert "DAG check passed" in accepted.stderr
    assert "cannot tell what is live (TimeoutError)" in accepted.stderr or "still parsing" in accepted.stderr
    assert took < 15  # the live report waits 2 s here (5 s on the platform), then gives up
    assert git(clone, "ls-remote", "origin", "main").split()[0] == mine
    logged = logs(settings)  # the push log: each check and each live report, with the pusher
    assert "pushed by local: 1 problem(s)" in logged and "pushed by local: passed" in logged
    assert f"push of {mine[:12]} by local: cannot tell what is live" in logged


BROKEN_DAG = "from airflow.sdk import dag\nraise ValueError('no')\n"


@pytest.mark.parametrize("folder", ["pipelines/dags", "."])
def test_the_remote_checks_the_dag_folder_the_setting_names(
    tmp_path: Path, silent_port: int, folder: str
) -> None:
    """MLOPS_IDE_DAGS_FOLDER: a team's sub-folder, or the whole repository (its .airflowignore
    honoured, sub-folders searched as Airflow does); problems named by repository path."""
    inside = "pipelines/dags" if folder != "." else "team"
    with remote_with_hooks(tmp_path, silent_port, MLOPS_IDE_DAGS_FOLDER=folder) as (clone, _):
        user_commit(clone, {f"{inside}/sub/broken.py": BROKEN_DAG}, "broken, in a sub-folder")
        refused = push(clone)
        git(clone, "reset", "--quiet", "--hard", "origin/main")
        ignored = {".airflowignore": "scratch/\n", "scratch/broken.py": BROKEN_DAG}
        outside = {"elsewhere/broken.py": BROKEN_DAG} if folder != "." else ignored
        user_commit(clone, {**outside, f"{inside}/good.py": GOOD_DAG}, "Airflow never reads the broken one")
        accepted = push(clone)

    assert refused.returncode != 0
    assert f"remote:   {inside}/sub/broken.py:2: ValueError: no" in refused.stderr, refused.stderr
    assert accepted.returncode == 0 and "DAG check passed" in accepted.stderr, accepted.stderr
    assert "broken.py" not in accepted.stderr  # outside the folder, or ignored: Airflow never reads it


def test_a_file_name_that_is_not_utf8_does_not_let_a_broken_dag_through(tmp_path: Path) -> None:
    """The DAG check failing on this push (not its sandbox being away) refuses it: a name of
    bytes git keeps as they are once let a broken DAG through unchecked."""
    with remote_with_hooks(tmp_path, free_port_base()) as (clone, _):  # no Airflow there
        before = git(clone, "rev-parse", "origin/main")
        user_commit(clone, {"dags/a.py": BROKEN_DAG, os.fsdecode(b"dags/\xff.txt"): "bytes\n"}, "odd name")
        refused = push(clone)

    assert refused.returncode != 0, refused.stderr
    assert "remote:   dags/a.py:2: ValueError: no" in refused.stderr, refused.stderr
    assert "unchecked" not in refused.stderr
    assert git(clone, "ls-remote", "origin", "main").split()[0] == before


def test_a_push_goes_through_unchecked_when_the_push_check_is_away(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    remote, _ = ensure_local_remote(settings)
    install_code(settings)
    install_push_hooks(settings, Tools.load())  # and no push check listening
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(remote), str(clone))
    mine = user_commit(clone, {"dags/new.py": "# new\n"}, "new")

    pushed = push(clone)

    assert pushed.returncode == 0, pushed.stderr
    assert "DAG check unavailable (FileNotFoundError); pushed unchecked" in pushed.stderr
    assert git(remote, "rev-parse", "main") == mine


def test_tags_are_added_never_moved_and_none_shadows_a_branch(tmp_path: Path) -> None:
    """git guards branches only (no force-push, no deletion there): the hook guards tags and
    refuses other refs. A tag `origin/main` would be what Airflow's clone runs as main."""
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    remote, _ = ensure_local_remote(settings)
    install_code(settings)
    install_push_hooks(settings, Tools.load())
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(remote), str(clone))
    git(clone, "tag", "v1")
    assert push(clone, "v1").returncode == 0  # a new tag: fine
    user_commit(clone, {"notes.md": "x\n"}, "a commit elsewhere")

    moved = subprocess.run(
        ["git", "push", "--force", "origin", "HEAD:refs/tags/v1"], cwd=clone, capture_output=True, text=True
    )
    deleted = subprocess.run(
        ["git", "push", "origin", ":refs/tags/v1"], cwd=clone, capture_output=True, text=True
    )
    shadow = subprocess.run(
        ["git", "push", "origin", "HEAD:refs/tags/origin/main"], cwd=clone, capture_output=True, text=True
    )
    other = subprocess.run(
        ["git", "push", "origin", "HEAD:refs/notes/x"], cwd=clone, capture_output=True, text=True
    )

    assert moved.returncode != 0 and "tags are kept as they are" in moved.stderr, moved.stderr
    assert deleted.returncode != 0 and "tags are kept as they are" in deleted.stderr
    assert shadow.returncode != 0 and "would shadow a branch" in shadow.stderr
    assert other.returncode != 0 and "only branches and tags" in other.stderr
    assert git(remote, "tag", "--list") == "v1"


def test_nothing_a_checked_dag_starts_outlives_the_check(tmp_path: Path, silent_port: int) -> None:
    """The pushed code runs in the check's child: whatever it forks is ended with it, so it
    cannot stay to answer later checks."""
    pid_file = tmp_path / "lingering.pid"
    lingering = (
        "import os, time\nfrom airflow.sdk import dag\npid = os.fork()\n"
        "if pid == 0:\n    time.sleep(600)\n    os._exit(0)\n"
        f"open({str(pid_file)!r}, 'w').write(str(pid))\n"
    )
    with remote_with_hooks(tmp_path, silent_port) as (clone, _):
        user_commit(clone, {"dags/lingering.py": lingering}, "a DAG that leaves a process behind")
        started = time.monotonic()
        pushed = push(clone)
        took = time.monotonic() - started
        pid = int(pid_file.read_text())

    assert pushed.returncode == 0 and "DAG check passed" in pushed.stderr, pushed.stderr
    assert took < 15  # the check ends with its child, not with what the child left behind
    time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_branch_name_is_never_run(tmp_path: Path) -> None:
    """`main$(touch${IFS}pwned)` is a valid branch name; a shell hook once ran it."""
    branch = "main$(touch${IFS}pwned)"
    with remote_with_hooks(tmp_path, free_port_base(), branch) as (clone, _):  # no Airflow there
        user_commit(clone, {"dags/good.py": GOOD_DAG}, "good")
        pushed = push(clone, branch)

    assert pushed.returncode == 0, pushed.stderr
    assert "DAG check passed" in pushed.stderr  # the hook saw the push to this very branch
    assert list(tmp_path.rglob("pwned")) == []


def test_a_crafted_check_request_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    content = base64.b64encode(b"x").decode()
    for name in ("dags/../../escaped.py", "/etc/escaped.py", "other/x.py", "dags/sub/../../../escaped.py"):
        with pytest.raises(ValueError, match="not a path under the DAG folder dags/"):
            dag_sandbox.write_files({name: content}, tmp_path / "root", "dags")
    for name in ("../escaped.py", "/etc/escaped.py", "sub/../../escaped.py", "team/../../escaped.py"):
        for folder in (".", "team"):
            with pytest.raises(ValueError, match="not a path under the DAG folder"):
                dag_sandbox.write_files({name: content}, tmp_path / "root", folder)
    assert not list(tmp_path.rglob("escaped.py"))
    # the whole repository as the DAG folder: any path inside it
    assert dag_sandbox.write_files({"src/x.py": content}, tmp_path / "root", ".") == tmp_path / "root"
    assert (tmp_path / "root" / "src" / "x.py").read_bytes() == b"x"


def test_the_line_of_an_error_is_the_dag_files_own(tmp_path: Path) -> None:
    path = tmp_path / "x.py"
    traceback_text = (
        'Traceback (most recent call last):\n  File "/b/dags/x.py", line 7, in <module>\n    helper()\n'
        '  File "/b/dags/x.py", line 3, in helper\n    open_network()\n'
        '  File "/usr/lib/python3.11/socket.py", line 1, in connect\nOSError: no\n'
    )

    assert dag_check.error_line(traceback_text, path) == 3
    assert dag_check.error_line("OSError: no\n", path) is None
    assert dag_sandbox.problem_lines([{"file": "x.py", "line": None, "error": "E", "dags": []}], "dags") == [
        "dags/x.py: E"
    ]
    # a team's folder, a sub-folder of it, the whole repository: named by their repository paths
    nested = [{"file": "sub/x.py", "line": 4, "error": "E", "dags": []}]
    assert dag_sandbox.problem_lines(nested, "cnn_skin_cancer") == ["cnn_skin_cancer/sub/x.py:4: E"]
    assert dag_sandbox.problem_lines(nested, ".") == ["sub/x.py:4: E"]


def test_refresh_names_the_problem_when_airflow_refuses(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords.json"
    passwords.write_text('{"mlops-ide-platform": "x"}')
    argv = [sys.executable, str(ROOT / "src" / "mlops_ide" / "portable" / "dag_refresh.py"), "--airflow-url"]
    argv += [f"http://127.0.0.1:{free_port_base()}", "--passwords-file", str(passwords), "--dag", "d"]

    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)

    assert result.returncode == 1
    assert "could not ask Airflow to re-parse" in result.stdout and "Connection refused" in result.stdout


def test_a_refused_airflow_2_dag_is_told_what_airflow_3_changed(tmp_path: Path, silent_port: int) -> None:
    """The remote's refusal says what `mlops-ide dag check` says: the line, what Airflow 3
    changed in the file and the replacement (ruff's AIR rules, run in the sandbox)."""
    airflow2 = (
        "from datetime import datetime\n"
        "from airflow import DAG\n"
        "from airflow.kubernetes.secret import Secret\n\n"
        "secret = Secret(deploy_type='env', deploy_target='KEY', secret='s', key='k')\n"
        "with DAG(dag_id='team', schedule_interval='@daily', start_date=datetime(2024, 1, 1)):\n"
        "    pass\n"
    )
    with remote_with_hooks(tmp_path, silent_port) as (clone, _):
        user_commit(clone, {"dags/team.py": airflow2}, "the team's Airflow 2 DAG")
        refused = push(clone)

    assert refused.returncode != 0
    lines = [line.removeprefix("remote: ").rstrip() for line in refused.stderr.splitlines()]
    at = lines.index("  dags/team.py:3: ModuleNotFoundError: No module named 'airflow.kubernetes'")
    told = lines[at + 1 : at + 6]
    assert any("`airflow.providers.cncf.kubernetes.secret`" in line for line in told), told
    assert any("`schedule_interval` is removed" in line for line in told), told
    assert "    fix these: mlops-ide dag upgrade dags/team.py" in told
