"""One OS account per hub user when the platform runs as root, as The Littlest JupyterHub
does: `jupyter-<name>`, made at the user's first start, no password and no login shell, in
the group `mlops-ide-users` (which may write the shared git remote and nothing else of
the platform's). The home, MLOPS_IDE_HOME/homes/<name>, is the account's, mode 0700.

The OS is the boundary: a user's server and everything it starts (code-server, terminals,
git) run as that account, so they cannot read another home or the platform's secrets.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import threading
from pathlib import Path

PREFIX = "jupyter-"
GROUP = "mlops-ide-users"
NO_LOGIN = "/usr/sbin/nologin"


class AccountError(RuntimeError):
    """An OS account cannot be made; the message says what to do."""


def enabled() -> bool:
    """Accounts per user need root; otherwise every server runs as the platform's account."""
    return os.geteuid() == 0


def system_name(hub_name: str) -> str:
    return PREFIX + hub_name


def ensure_group() -> int:
    """The group of every user account; its gid."""
    try:
        return grp.getgrnam(GROUP).gr_gid
    except KeyError:
        run(["groupadd", "--system", GROUP])
        return grp.getgrnam(GROUP).gr_gid


_accounts_file = threading.Lock()  # useradd fails when another holds /etc/passwd's lock


def ensure_account(hub_name: str, home: Path) -> pwd.struct_passwd:
    """The account of `hub_name` (made when missing) and its private home."""
    with _accounts_file:
        return _ensure_account(hub_name, home)


def _ensure_account(hub_name: str, home: Path) -> pwd.struct_passwd:
    name = system_name(hub_name)
    group = ensure_group()
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        where = ["--no-create-home", "--home-dir", str(home), "--shell", NO_LOGIN]
        run(["useradd", "--system", "--user-group", *where, "--groups", GROUP, "--comment", hub_name, name])
        account = pwd.getpwnam(name)
    if group not in os.getgrouplist(name, account.pw_gid):
        run(["usermod", "--append", "--groups", GROUP, name])
    if account.pw_dir != str(home):  # MLOPS_IDE_HOME moved, or another platform's account
        run(["usermod", "--home", str(home), name])
        account = pwd.getpwnam(name)
    ensure_home(home, account.pw_uid, account.pw_gid)
    return account


def ensure_home(home: Path, uid: int, gid: int) -> None:
    """The home exists, belongs to the account and is its alone (also a home made earlier
    by a server that ran as root: its files are handed over once)."""
    home.mkdir(parents=True, exist_ok=True)
    if home.stat().st_uid != uid:
        for path in [home, *home.rglob("*")]:
            os.lchown(path, uid, gid)
    home.chmod(0o700)


def share_with_users(path: Path, writable: bool) -> None:
    """Let the users' group reach `path` (and, when `writable`, write under it): setgid
    folders so that what users add stays in the group."""
    gid = ensure_group()
    for item in [path, *path.rglob("*")] if writable else [path]:
        if item.is_symlink():
            continue
        os.chown(item, -1, gid)
        mode = item.stat().st_mode & 0o7777
        if item.is_dir():
            item.chmod((mode | 0o2070) if writable else (mode | 0o010))
        elif writable:
            item.chmod(mode | 0o060 if mode & 0o100 == 0 else mode | 0o070)


def run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
        raise AccountError(
            f"`{' '.join(argv)}` failed: {result.stderr.strip()}; the platform must run as root "
            "with useradd/groupadd available (Debian's passwd package)."
        )
