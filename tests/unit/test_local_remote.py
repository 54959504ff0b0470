"""The shared local remote keeps every commit: no force-push, no branch deletion (its
pre-receive hook refuses them outside preview/, tests/unit/test_preview_hooks.py), every ref
update logged, also for a remote made by an earlier version."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mlops_ide import names
from mlops_ide.hub.modes import load
from mlops_ide.machine import os_accounts
from mlops_ide.machine.state.code_copy import install_code
from mlops_ide.machine.state.layout import lock_down
from mlops_ide.machine.state.remote import (
    REMOTE_CONFIG,
    ensure_local_remote,
    install_push_hooks,
    share_remote,
)
from mlops_ide.machine.state.tools import Tools
from tests.support.gitrepos import git, user_commit


@pytest.fixture
def remote_and_clone(tmp_path: Path) -> tuple[Path, Path]:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    remote, _ = ensure_local_remote(settings)
    install_code(settings)
    install_push_hooks(settings, Tools.load())  # as `make up` does
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(remote), str(clone))
    git(clone, "config", "user.name", "t")
    git(clone, "config", "user.email", "t@t")
    return remote, clone


def push(clone: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "push", *args], cwd=clone, capture_output=True, text=True)


def test_a_force_push_that_drops_commits_is_refused(remote_and_clone: tuple[Path, Path]) -> None:
    remote, clone = remote_and_clone
    before = git(remote, "rev-parse", "main")
    user_commit(clone, {"dags/a.py": "# a\n"}, "a")
    assert push(clone, "origin", "main").returncode == 0
    pushed = git(remote, "rev-parse", "main")

    result = push(clone, "--force", "origin", "HEAD~1:main")

    assert result.returncode != 0 and "non-fast-forward" in result.stderr
    assert git(remote, "rev-parse", "main") == pushed != before


def test_deleting_a_branch_is_refused(remote_and_clone: tuple[Path, Path]) -> None:
    remote, clone = remote_and_clone

    result = push(clone, "origin", ":main")

    assert result.returncode != 0 and "deletion prohibited" in result.stderr
    assert git(remote, "rev-parse", "main")


def test_every_update_of_the_branch_is_logged(remote_and_clone: tuple[Path, Path]) -> None:
    remote, clone = remote_and_clone
    commits = [user_commit(clone, {f"dags/{n}.py": "# n\n"}, f"c{n}") for n in range(2)]
    for commit in commits:
        assert push(clone, "origin", f"{commit}:main").returncode == 0

    logged = git(remote, "reflog", "show", "--format=%H", "main").split()

    assert logged[:2] == commits[::-1]


def test_a_remote_made_by_an_earlier_version_is_protected_at_the_next_start(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    remote, _ = ensure_local_remote(settings)
    for key in REMOTE_CONFIG:
        git(remote, "config", "--unset", key)

    _, how = ensure_local_remote(settings)

    assert how == "kept"
    assert {key: git(remote, "config", key) for key in REMOTE_CONFIG} == REMOTE_CONFIG


def test_an_old_open_state_folder_is_made_private_at_the_next_start(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    state = settings.home
    (state / "logs").mkdir(parents=True)
    state.chmod(0o755)
    (state / "logs").chmod(0o755)
    (state / "jupyterhub.sqlite").write_text("")
    (state / "jupyterhub.sqlite").chmod(0o644)

    lock_down(settings)

    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "logs").stat().st_mode & 0o777 == 0o700
    assert (state / "jupyterhub.sqlite").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="handing the remote to the git service's account runs as root")
def test_handing_the_remote_over_never_follows_a_link_a_user_planted(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    remote, _ = ensure_local_remote(settings)
    writer = os_accounts.ensure_component_account(names.GIT_ACCOUNT)
    secret = tmp_path / "roots-secret"
    secret.write_text("only root")
    secret.chmod(0o600)
    # as a user could in a remote of an earlier version, which the users' group wrote:
    (remote / "objects" / "planted").symlink_to(secret)
    (remote / "hooks" / "post-update").symlink_to(secret)
    (remote / "commondir").write_text(str(tmp_path / "elsewhere"))  # its hooks would run for pushers

    share_remote(remote, writer)

    assert (secret.stat().st_uid, secret.stat().st_gid, secret.stat().st_mode & 0o777) == (0, 0, 0o600)
    assert (remote / "config").stat().st_uid == 0 and (remote / "config").stat().st_mode & 0o022 == 0
    objects = (remote / "objects").stat()
    assert (objects.st_uid, objects.st_gid, objects.st_mode & 0o7777) == (
        writer.pw_uid,
        writer.pw_gid,
        0o2775,
    )
    assert remote.stat().st_gid == writer.pw_gid and remote.stat().st_mode & 0o7777 == 0o3775  # sticky
    assert not (remote / "commondir").exists() and (remote / "commondir.set-aside-by-mlops-ide").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="handing the remote to the git service's account runs as root")
def test_handing_the_remote_over_never_follows_a_link_to_a_folder(tmp_path: Path) -> None:
    """A remote of an earlier version let users add entries to its folder: a link there (or
    below) to a folder of root's must not hand that folder's files over or open them up."""
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    remote, _ = ensure_local_remote(settings)
    writer = os_accounts.ensure_component_account(names.GIT_ACCOUNT)
    roots = tmp_path / "roots-folder"
    roots.mkdir(mode=0o700)
    (roots / "secret").write_text("only root")
    (roots / "secret").chmod(0o600)
    (remote / "planted").symlink_to(roots)  # at the top: give_to_root's walk
    (remote / "objects" / "planted").symlink_to(roots)  # below: the writer's walk

    share_remote(remote, writer)

    for path in (roots, roots / "secret"):
        info = path.stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, 0, 0o700 if path == roots else 0o600)
