"""Real git repositories for scenario tests: a bare remote, a teammate who pushes to it,
and snapshots that prove nothing a user had was lost."""

from __future__ import annotations

import hashlib
import os
import pwd
import subprocess
from pathlib import Path


def git(cwd: Path, *args: str) -> str:
    """git in `cwd`, as the owner of that folder: a user's clone is theirs (git refuses a
    repository of another account), with their home as HOME."""
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, **as_owner_of(cwd))
    if result.returncode:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}")
    return result.stdout.strip()


def as_owner_of(folder: Path) -> dict:
    """subprocess.run arguments that run a command as `folder`'s owner, when that is
    another account and we are root (the platform gives each user their own)."""
    owner = folder.stat()
    if owner.st_uid == os.geteuid() or os.geteuid() != 0:
        return {}
    account = pwd.getpwuid(owner.st_uid)
    env = {**os.environ, "HOME": account.pw_dir, "USER": account.pw_name}
    groups = os.getgrouplist(account.pw_name, account.pw_gid)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": groups, "env": env}


class Remote:
    """A bare repository with one commit on ``branch``, and a teammate's clone of it
    that makes and pushes further commits."""

    def __init__(self, root: Path, name: str = "pipelines", branch: str = "main"):
        self.branch = branch
        self.path = root / "remotes" / f"{name}.git"
        self.path.mkdir(parents=True)
        git(self.path, "init", "--quiet", "--bare", "--initial-branch", branch)
        self.teammate = root / "teammate" / name
        self.teammate.parent.mkdir(parents=True, exist_ok=True)
        git(root, "clone", "--quiet", str(self.path), str(self.teammate))
        git(self.teammate, "config", "user.name", "Teammate")
        git(self.teammate, "config", "user.email", "teammate@example.com")
        self.commit({"README.md": "# pipelines\n", "dags/train.py": "print('train')\n"}, "first")

    @property
    def url(self) -> str:
        return str(self.path)

    def commit(self, files: dict[str, str | None], message: str, branch: str | None = None) -> str:
        """Write (or, for None, delete) files as the teammate, commit and push."""
        branch = branch or self.branch
        if git(self.teammate, "branch", "--list", branch):
            git(self.teammate, "checkout", "--quiet", branch)
        else:  # a new branch, or the first commit of an empty clone
            git(self.teammate, "checkout", "--quiet", "-b", branch)
        for name, text in files.items():
            path = self.teammate / name
            if text is None:
                git(self.teammate, "rm", "--quiet", name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            git(self.teammate, "add", name)
        git(self.teammate, "commit", "--quiet", "-m", message)
        git(self.teammate, "push", "--quiet", "origin", branch)
        return git(self.teammate, "rev-parse", "HEAD")

    def head(self, branch: str | None = None) -> str:
        return git(self.path, "rev-parse", branch or self.branch)


def user_commit(clone: Path, files: dict[str, str | None], message: str) -> str:
    """Commit `files` (None: delete it) as the clone's owner would: what is written is
    theirs too (their own OS account when the platform runs as root)."""
    owner = clone.stat()
    for name, text in files.items():
        if text is None:
            git(clone, "rm", "--quiet", name)
            continue
        path = clone / name
        for folder in reversed([*path.relative_to(clone).parents][:-1]):
            if not (clone / folder).exists():
                (clone / folder).mkdir()
                os.chown(clone / folder, owner.st_uid, owner.st_gid)
        path.write_text(text)
        os.chown(path, owner.st_uid, owner.st_gid)
        git(clone, "add", name)
    git(clone, "commit", "--quiet", "-m", message)
    return git(clone, "rev-parse", "HEAD")


def snapshot(folder: Path) -> dict[str, object]:
    """Everything a user could lose in a clone: every file's bytes (outside .git, ignored
    files included), the index, HEAD, every local branch and the stash."""
    files = {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(folder).parts
    }
    state: dict[str, object] = {"files": files}
    if (folder / ".git").exists():
        state["head"] = (
            git(folder, "rev-parse", "--symbolic-full-name", "HEAD") + " " + git(folder, "rev-parse", "HEAD")
        )
        state["branches"] = git(folder, "for-each-ref", "refs/heads", "refs/stash")
        state["index"] = git(folder, "ls-files", "--stage")
    return state
