"""A preview branch pushed to the local remote with the platform's hooks and the two services
they ask, started as the supervisor starts them (the DAG check's sandbox, the push check;
no Airflow): its DAG folder is checked as the tracked branch's, and the push check keeps the
previews' registry (mlops_ide/portable/previews.py) as the owner pushes and deletes it;
then the same through the git service, with the platform's accounts (as root).
tests/unit/test_preview_hooks.py has the hooks' rules, without the services."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from mlops_ide.machine.components import git as git_component
from mlops_ide.machine.components.base import Inputs
from mlops_ide.machine.state.layout import previews_registry
from mlops_ide.portable import previews
from tests.platform.test_push_sandbox import HubStandIn, _answers, hub_user
from tests.support.gitrepos import git, user_commit
from tests.support.local_platform import free_port_base, wait_for
from tests.support.push_remote import platform_for, push_services, remote_with_hooks, running

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


def test_a_deletion_pushed_with_main_adding_a_path_git_quotes_frees_the_slot(tmp_path: Path) -> None:
    """The reviewer's push: one push of main adding `é.md` and deleting bob's preview."""
    with remote_with_hooks(tmp_path, free_port_base()) as (clone, settings):  # no Airflow there
        user_commit(clone, {"dags/lr.py": GOOD_DAG}, "lr")
        assert push_as(clone, "bob", "origin", "HEAD:preview/bob/t").returncode == 0
        held = previews.read(previews_registry(settings))
        user_commit(clone, {"é.md": "accents\n"}, "é")
        both = push_as(clone, "bob", "origin", "HEAD:main", ":preview/bob/t")
        after = previews.read(previews_registry(settings))

    assert [entry.branch for entry in held] == ["preview/bob/t"]
    assert both.returncode == 0 and "failed" not in both.stderr, both.stderr
    assert "mlops-ide: preview removed: preview/bob/t" in both.stderr, both.stderr
    assert after == []


def test_through_the_git_service_with_the_platforms_accounts(tmp_path: Path) -> None:
    """As the platform runs it: pushes through the git service (its account writes the
    remote, the hub names the pusher), the push check as the pipeline's account (it writes
    the registry): alice's preview is taken, force-pushed and deleted; bob, not an admin,
    can neither push nor delete it; ada, an admin, may."""
    platform: Inputs = platform_for(
        tmp_path,
        accounts=True,
        MLOPS_IDE_PORT=str(free_port_base()),
        MLOPS_IDE_GIT_PORT=str(free_port_base()),
        MLOPS_IDE_AIRFLOW_PORT=str(free_port_base()),
        MLOPS_IDE_ADMIN_USERS="ada",
    )
    tokens = {f"{name}-token": hub_user(name, name == "ada") for name in ("alice", "bob", "ada")}
    hub = HubStandIn(platform.settings.hub_port, tokens)
    (git_service,) = git_component.processes(platform)
    git_service.ready_url = None
    url = git_component.repo_url(platform.settings)
    registry = previews_registry(platform.settings)

    def push(token: str, *refspecs: str, force: bool = False) -> subprocess.CompletedProcess:
        authed = url.replace("://", f"://x:{token}@")
        argv = ["git", "push", *(["--force"] if force else []), authed, *refspecs]
        return subprocess.run(argv, cwd=clone, capture_output=True, text=True, timeout=120)

    try:
        with running(*push_services(platform)):
            git_service.start()
            wait_for(lambda: _answers(git_component.url(platform.settings) + "health"), 30, "the git service")
            clone = tmp_path / "clone"
            git(tmp_path, "clone", "--quiet", url.replace("://", "://x:alice-token@"), str(clone))
            first = user_commit(clone, {"dags/lr.py": GOOD_DAG}, "a learning rate to try")
            created = push("alice-token", "HEAD:preview/alice/lr")
            taken = [(e.branch, e.commit, e.pushed_by) for e in previews.read(registry)]
            user_commit(clone, {"notes.md": "x\n"}, "more")
            bob_pushes = push("bob-token", "HEAD:preview/alice/lr")
            bob_deletes = push("bob-token", ":preview/alice/lr")
            ada_pushes = push("ada-token", "HEAD:preview/alice/lr")
            rewritten = push("alice-token", f"{first}:preview/alice/lr", force=True)
            deleted = push("alice-token", ":preview/alice/lr")
            main_deleted = push("ada-token", ":main")
    finally:
        git_service.ask_to_stop()
        git_service.wait_stopped(time.monotonic() + 10)
        hub.close()

    assert created.returncode == 0 and "DAG check passed" in created.stderr, created.stderr
    assert taken == [("preview/alice/lr", first, "alice")]
    for refused in (bob_pushes, bob_deletes):
        assert refused.returncode != 0 and "is alice's preview" in refused.stderr, refused.stderr
    assert ada_pushes.returncode == 0 and rewritten.returncode == 0, ada_pushes.stderr + rewritten.stderr
    assert deleted.returncode == 0 and "preview removed: preview/alice/lr" in deleted.stderr, deleted.stderr
    assert previews.read(registry) == []
    assert main_deleted.returncode != 0 and "deletion prohibited" in main_deleted.stderr
