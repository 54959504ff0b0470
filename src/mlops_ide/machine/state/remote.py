"""The local git remote users clone and push to: seeded once from the checkout, kept
forever after (no rewriting, every ref update logged), shared with the git service's
account, and its hooks that check each push."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

from mlops_ide import names
from mlops_ide.machine import os_accounts
from mlops_ide.machine.state.layout import (
    StateError,
    code_lib,
    dag_sandbox_socket,
    ensure_folder,
    push_check_socket,
)
from mlops_ide.machine.state.tools import Tools
from mlops_ide.portable import pipeline_repo
from mlops_ide.settings import CHECKOUT, Settings


def ensure_local_remote(settings: Settings, checkout: Path = CHECKOUT) -> tuple[Path, str]:
    """The bare repository users clone and push to. Made once, seeded with the pipeline
    repository built from the checkout's committed HEAD (mlops_ide.portable.pipeline_repo) as branch
    main; after that it belongs to its users and is kept (a remote of an earlier version,
    seeded with the whole checkout, too: README, "A fresh pipeline repository")."""
    remote = settings.local_remote
    if (remote / "HEAD").exists():
        protect_remote(remote)  # also a remote made by an earlier version
        return remote, "kept"
    try:
        seed = pipeline_repo.commit(checkout)
    except pipeline_repo.PipelineRepoError as error:
        raise StateError(f"cannot seed the local git remote: {error}") from None
    partial = remote.with_name(remote.name + ".partial")
    subprocess.run(["rm", "-rf", str(partial)], check=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    run_git(["init", "--quiet", "--bare", "--initial-branch", settings.repo_branch, str(partial)], checkout)
    protect_remote(partial)
    run_git(["push", "--quiet", str(partial), f"{seed}:refs/heads/{settings.repo_branch}"], checkout)
    os.rename(partial, remote)
    return remote, f"seeded with the pipeline repository {seed[:12]}"


# What makes the shared remote keep every commit: every ref update logged (bare repositories
# log none by default); no rewriting or deleting a branch, which the pre-receive hook refuses
# (mlops_ide/portable/push_hook.py) outside preview/: git's own receive.denyDeletes and
# denyNonFastForwards hold for every branch, and a preview is its person's to force-push
# and delete. Pushes arrive through the git
# service (mlops_ide.hub_services.git_http), as its account; what they write is readable by everyone
# (Airflow's account clones from it), whatever the writer's umask.
REMOTE_CONFIG = {
    "receive.denyNonFastForwards": "false",  # the hook's, per branch (above)
    "receive.denyDeletes": "false",
    "core.logAllRefUpdates": "always",
    "core.sharedRepository": "0664",  # the writer's group writes too (root's pushes stay usable)
    "receive.maxInputSize": "256m",  # a pack beyond it is refused, with git saying why
    "receive.fsckObjects": "true",  # a malformed object is refused, not stored
    "receive.advertisePushOptions": "true",  # git push -o skip-dag-check (mlops_ide/portable/push_hook.py)
    # No gc as a pusher: it would rewrite packed-refs, a file of the remote's own folder.
    "receive.autogc": "false",
    "gc.auto": "0",
}


WRITTEN_BY_PUSHES = ("objects", "refs", "logs")  # the rest is root's alone


REDIRECTS = ("commondir",)  # a file that would make git use another folder's hooks and config


def protect_remote(remote: Path) -> None:
    for key, value in REMOTE_CONFIG.items():
        run_git(["config", key, value], remote)


def share_remote(remote: Path, writer: pwd.struct_passwd) -> None:
    """With OS accounts: the git service's account (`writer`) owns what a push writes
    (objects, refs and their logs) and may add files to the remote's own folder, where a
    push to the branch HEAD names locks HEAD. That folder is sticky: the writer replaces no
    file of root's there (config, hooks). Users write nothing: they push through the service.

    Sharing walks the tree as root, so it runs only while the writer cannot write there yet:
    at creation, or for a remote of an earlier version (which let the users' group write it:
    their files are handed over, and a `commondir` one of them may have added is set aside);
    later starts skip it."""
    info = remote.stat()
    if info.st_uid == 0 and info.st_gid == writer.pw_gid and info.st_mode & 0o7777 == 0o3775:
        return  # shared already
    for entry in remote.iterdir():
        if entry.is_symlink():
            continue  # not followed, not changed (own_tree would refuse it too)
        if entry.name in WRITTEN_BY_PUSHES:
            os_accounts.hand_over_tree(entry, writer.pw_uid, writer.pw_gid)
        elif entry.name in REDIRECTS:
            entry.rename(entry.with_name(entry.name + ".set-aside-by-mlops-ide"))
            os_accounts.give_to_root(entry.with_name(entry.name + ".set-aside-by-mlops-ide"))
        else:
            os_accounts.give_to_root(entry)
    os.chown(remote, 0, writer.pw_gid)
    remote.chmod(0o3775)


def push_check_listener(
    settings: Settings, accounts: dict[str, pwd.struct_passwd], path: Path | None = None
) -> socket.socket:
    """The push check's (or, with `path`, the sandbox's) listening socket, made here (root)
    and handed over: in a folder of root's that only the git service's account (its group)
    enters, so neither a user nor a DAG can put another socket there; while the push check
    restarts, hooks wait in the socket's queue."""

    path = path or push_check_socket(settings)
    folder = ensure_folder(path.parent, 0o750 if accounts else 0o700)
    if accounts:
        os.chown(folder, 0, accounts[names.GIT_ACCOUNT].pw_gid)
    if path.exists() or path.is_symlink():
        path.unlink()  # left by an earlier run
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    if accounts:
        os.chown(path, 0, accounts[names.GIT_ACCOUNT].pw_gid)
    path.chmod(0o660 if accounts else 0o600)
    listener.listen(16)
    return listener


PUSH_HOOKS = ("pre-receive", "post-receive")


HOOK_MARK = "Written by mlops-ide"


def install_push_hooks(settings: Settings, tools: Tools) -> None:
    """The remote's pre-receive and post-receive hooks (mlops_ide/portable/push_hook.py): each push
    to the tracked branch or a preview branch is checked (and refused from anyone
    MLOPS_IDE_TRACKED_BRANCH_PUSHERS does not name), and told what is live; no branch outside
    preview/ is rewritten or deleted. Values are shell-quoted (a
    branch may be named `main$(cmd)`). A hook of someone else's is set aside, not lost."""
    hooks = settings.local_remote / "hooks"
    lib = f"PYTHONPATH={code_lib(settings)}"  # the platform's copy, root's: what the hook imports
    for name in PUSH_HOOKS:
        argv = [
            shutil.which("env") or "/usr/bin/env",
            lib,
            str(tools.python),
            "-P",
            "-m",
            "mlops_ide.portable.push_hook",
            name,
        ]
        argv += [
            "--socket",
            str(push_check_socket(settings)),
            "--check-socket",
            str(dag_sandbox_socket(settings)),
        ]
        argv += ["--branch", settings.repo_branch, "--dags-folder", settings.dags_folder]
        if settings.tracked_branch_pushers:
            argv += ["--pushers", ",".join(settings.tracked_branch_pushers)]
        argv += ["--preview-slots", str(settings.preview_slots)]
        argv += ["--previews-per-person", str(settings.previews_per_person)]
        argv += ["--preview-days", str(settings.preview_days)]
        text = f"#!/bin/sh\n# {HOOK_MARK}: what a push is told.\nexec {shlex.join(argv)}\n"
        hook = hooks / name
        if hook.exists() and HOOK_MARK not in hook.read_text(errors="replace"):
            hook.rename(hook.with_name(name + ".before-mlops-ide"))
        if not hook.exists() or hook.read_text() != text:
            partial = hook.with_name(f".{name}.new")
            partial.write_text(text)
            partial.chmod(0o755)
            partial.rename(hook)


def run_git(args: list[str], cwd: Path) -> None:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise StateError(f"git {args[0]} failed in {cwd}: {result.stderr.strip()}")
