"""A preview branch pushed to the local remote with the platform's hooks and the two services
they ask, started as the supervisor starts them (the DAG check's sandbox, the push check;
no Airflow): its DAG folder is checked as the tracked branch's, and the push check keeps the
previews' registry (mlops_ide/portable/previews.py) as the owner pushes and deletes it.
tests/unit/test_preview_hooks.py has the hooks' rules, without the services."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mlops_ide.machine.state.layout import previews_registry
from mlops_ide.portable import previews
from tests.support.gitrepos import git, user_commit
from tests.support.local_platform import free_port_base
from tests.support.push_remote import remote_with_hooks

GOOD_DAG = (
    "from airflow.sdk import dag\n\n\n@dag(dag_id='lr', schedule=None)\ndef lr():\n    pass\n\n\nlr()\n"
)
BROKEN_DAG = "from airflow.sdk import dag\nraise ValueError('no')\n"


def push_as(clone: Path, user: str, *args: str) -> subprocess.CompletedProcess:
    """As the git service runs a push of hub user `user` (not an admin)."""
    env = {**os.environ, "REMOTE_USER": user, "REMOTE_USER_IS_ADMIN": "0"}
    return subprocess.run(
        ["git", "push", *args], cwd=clone, capture_output=True, text=True, env=env, timeout=120
    )


def test_a_preview_is_checked_given_a_slot_and_freed_when_its_owner_deletes_it(tmp_path: Path) -> None:
    with remote_with_hooks(tmp_path, free_port_base()) as (clone, settings):  # no Airflow there
        user_commit(clone, {"dags/lr.py": BROKEN_DAG}, "broken")
        broken = push_as(clone, "alice", "origin", "HEAD:preview/alice/lr")
        git(clone, "reset", "--quiet", "--hard", "origin/main")
        mine = user_commit(clone, {"dags/lr.py": GOOD_DAG}, "a learning rate to try")
        pushed = push_as(clone, "alice", "origin", "HEAD:preview/alice/lr")
        registry = previews.read(previews_registry(settings))
        bobs = push_as(clone, "bob", "origin", ":preview/alice/lr")
        deleted = push_as(clone, "alice", "origin", ":preview/alice/lr")
        after = previews.read(previews_registry(settings))

    assert broken.returncode != 0 and "remote:   dags/lr.py:2: ValueError: no" in broken.stderr, broken.stderr
    assert pushed.returncode == 0 and "DAG check passed" in pushed.stderr, pushed.stderr
    assert "mlops-ide: preview/alice/lr is in preview-1; cannot tell what is live" in pushed.stderr
    assert [(e.slot, e.branch, e.commit, e.pushed_by) for e in registry] == [
        ("preview-1", "preview/alice/lr", mine, "alice")
    ]
    assert bobs.returncode != 0 and "is alice's preview" in bobs.stderr
    assert deleted.returncode == 0 and "mlops-ide: preview removed: preview/alice/lr" in deleted.stderr
    assert after == []
