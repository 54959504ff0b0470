"""OS accounts when the platform runs as root, as The Littlest JupyterHub does.

- One per hub user: `jupyter-<name>`, made at the user's first start, no password and no
  login shell, in the group `mlops-ide-users` (which names them; it may write nothing).
  The home, MLOPS_IDE_HOME/homes/<name>, is the account's, mode 0700. Removing the user
  deletes the account (mlops_ide.supervisor.users).
- Five for the components that run apart (`names.COMPONENT_ACCOUNTS`): `mlops-ide-pipeline`
  runs Airflow's scheduler, DAG processor and triggerer, serving and the app, so a pushed
  DAG runs as it, not as root; `mlops-ide-airflow` runs Airflow's API server (in the
  pipeline's group, for the database they share) and `mlops-ide-mlflow` MLflow's server,
  so a DAG can neither signal them nor read MLflow's files; `mlops-ide-git` runs the git
  service, the only account that writes the shared remote; `mlops-ide-dagcheck` runs the
  DAG check's sandbox (the code of a push not yet taken), in no group that reads anything
  of the platform's.

The OS is the boundary: a user's server and everything it starts (code-server, terminals,
git) run as that account, so they cannot read another home or the platform's secrets;
the pipeline's account reads the remote and writes its own folders, nothing else.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import threading
from pathlib import Path

from mlops_ide import names

NO_LOGIN = "/usr/sbin/nologin"
NO_HOME = "/nonexistent"


def as_account(account: pwd.struct_passwd | None, groups: tuple[int, ...] = ()) -> dict:
    """subprocess's arguments that run a child as `account` and its group alone (and `groups`)."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": list(groups)}


class AccountError(RuntimeError):
    """An OS account cannot be made; the message says what to do."""


def enabled() -> bool:
    """Accounts per user need root; otherwise every server runs as the platform's account."""
    return os.geteuid() == 0


def system_name(hub_name: str) -> str:
    return names.USER_ACCOUNT_PREFIX + hub_name


def processes_of(hub_name: str) -> list[int]:
    """Every process that runs as `hub_name`'s OS account ([] when it has none)."""
    try:
        uid = pwd.getpwnam(system_name(hub_name)).pw_uid
    except KeyError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                continue  # gone while we looked
    return found


def ensure_group() -> int:
    """The group of every user account; its gid."""
    try:
        return grp.getgrnam(names.USERS_GROUP).gr_gid
    except KeyError:
        run(["groupadd", "--system", names.USERS_GROUP])
        return grp.getgrnam(names.USERS_GROUP).gr_gid


ACCOUNT_FILES_LOCK = threading.Lock()  # useradd, usermod fail when another holds /etc/passwd's lock


def ensure_account(hub_name: str, home: Path) -> pwd.struct_passwd:
    """The account of `hub_name` (made when missing) and its private home."""
    with ACCOUNT_FILES_LOCK:
        return _ensure_account(hub_name, home)


def _ensure_account(hub_name: str, home: Path) -> pwd.struct_passwd:
    name = system_name(hub_name)
    group = ensure_group()
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        where = ["--no-create-home", "--home-dir", str(home), "--shell", NO_LOGIN]
        run(
            [
                "useradd",
                "--system",
                "--user-group",
                *where,
                "--groups",
                names.USERS_GROUP,
                "--comment",
                hub_name,
                name,
            ]
        )
        account = pwd.getpwnam(name)
    if group not in os.getgrouplist(name, account.pw_gid):
        run(["usermod", "--append", "--groups", names.USERS_GROUP, name])
    if account.pw_dir != str(home):  # MLOPS_IDE_HOME moved, or another platform's account
        run(["usermod", "--home", str(home), name])
        account = pwd.getpwnam(name)
    ensure_home(home, account.pw_uid, account.pw_gid)
    return account


def delete_account(hub_name: str) -> bool:
    """`hub_name`'s account and its group gone (userdel; the home is the caller's to set
    aside or delete); False when it had none. userdel refuses while a process of the
    account runs: end them first (processes_of)."""
    with ACCOUNT_FILES_LOCK:
        try:
            pwd.getpwnam(system_name(hub_name))
        except KeyError:
            return False
        run(["userdel", system_name(hub_name)])
        return True


def ensure_component_account(name: str) -> pwd.struct_passwd:
    """A component's account (one of names.COMPONENT_ACCOUNTS), made when missing, in a
    group of its own, with no home of its own: one machine may run several platforms (each
    state folder gives the account's processes their HOME), and an account's home cannot
    change while any of its processes runs."""
    if name not in names.COMPONENT_ACCOUNTS:
        raise ValueError(f"{name!r} is not one of the components' accounts {names.COMPONENT_ACCOUNTS}")
    with ACCOUNT_FILES_LOCK:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            where = ["--no-create-home", "--home-dir", NO_HOME, "--shell", NO_LOGIN]
            run(["useradd", "--system", "--user-group", *where, "--comment", "mlops-ide", name])
            return pwd.getpwnam(name)


def ensure_home(home: Path, uid: int, gid: int) -> None:
    """The folder exists, belongs to the account and is its alone. A folder made earlier
    as root (a home, or a component's folder of an earlier version) is handed over once,
    links not followed; after that root never walks it (the account could plant links)."""
    home.mkdir(parents=True, exist_ok=True)
    if home.stat().st_uid != uid:
        for path in walk(home):
            os.lchown(path, uid, gid)
    home.chmod(0o700)


def hand_over_tree(path: Path, uid: int, gid: int) -> None:
    """`path` and all below it the account's (`uid`, `gid`), readable by all, writable by
    its group: folders 2775 (what is made in them stays in the group), files 0664 (0775
    when executable). Others could write below `path` before: see `own_tree`."""
    own_tree(path, uid, gid, folders=0o2775, executables=0o775, files=0o664)


def give_to_root(path: Path) -> None:
    """`path` and all below it root's, readable by all, writable by root only."""
    own_tree(path, 0, 0, folders=0o755, executables=0o755, files=0o644)


def own_tree(path: Path, uid: int, gid: int, folders: int, executables: int, files: int) -> None:
    """`path` and all below it owned by (`uid`, `gid`), with these modes.

    Others may have written below `path` (a remote of an earlier version let the users'
    group write it), and this runs as root: the tree is walked through open folders
    (os.fwalk), each item opened relative to its folder without following a symbolic link
    and changed through that open file, so no link (at the top, inside, or one swapped in
    meanwhile) ever points a change at a file of root's; a file with a second hard link
    (to who knows where) is left as it is."""
    top = open_no_link(path)
    if top is None:
        return
    try:
        if not stat.S_ISDIR(os.fstat(top).st_mode):
            own_one(top, uid, gid, folders, executables, files)
            return
    finally:
        os.close(top)
    for _, _, entries, folder_fd in os.fwalk(path, follow_symlinks=False):
        own_one(folder_fd, uid, gid, folders, executables, files)
        for name in entries:  # links of any kind are here too: not followed, left alone
            try:
                fd = os.open(
                    name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=folder_fd
                )
            except OSError:
                continue
            try:
                own_one(fd, uid, gid, folders, executables, files)
            finally:
                os.close(fd)


def own_one(fd: int, uid: int, gid: int, folders: int, executables: int, files: int) -> None:
    info = os.fstat(fd)
    folder = stat.S_ISDIR(info.st_mode)
    if folder or (stat.S_ISREG(info.st_mode) and info.st_nlink == 1):
        os.fchown(fd, uid, gid)
        os.fchmod(fd, folders if folder else executables if info.st_mode & 0o100 else files)


def walk(path: Path) -> list[Path]:
    """`path` and everything below it, not descending into linked folders."""
    items = [path]
    for folder, folders, files in os.walk(path):
        items += [Path(folder, name) for name in (*folders, *files)]
    return items


def open_no_link(item: Path) -> int | None:
    """An open file of `item` itself, never of what a symbolic link points at (None then)."""
    try:
        return os.open(item, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:  # a symbolic link (ELOOP), or gone
        return None


def run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
        raise AccountError(
            f"`{' '.join(argv)}` failed: {result.stderr.strip()}; the platform must run as root "
            "with useradd/groupadd available (Debian's passwd package)."
        )
