"""What removing a person (`make users ARGS='remove NAME'`) does to the machine, as root:
their OS account is deleted once all its processes have ended, what they left in the
shared temporary folders becomes root's, and their home is set aside where the next account
of the same name does not get it. useradd hands a deleted account's uid to the next new
account: whatever still belonged to the old uid would then be the new person's.
"""

from __future__ import annotations

import os
import pwd
import stat
import time
from pathlib import Path

from mlops_ide.machine import os_accounts
from mlops_ide.processes import end_processes

SHARED_TEMP = ("/tmp", "/var/tmp", "/dev/shm")  # where any account may leave files
REMOVED = ".removed-"  # <home>.removed-<UTC time>: capitals and a length no username has


def delete_account(name: str, attempts: int = 5) -> None:
    """Every process of `name`'s OS account ended (what they started outside their server's
    session too), the account deleted, and what it owned in the shared temporary folders
    given to root. Kept, a later account of the same name (an approved signup) would be
    that account."""
    try:
        uid = pwd.getpwnam(os_accounts.system_name(name)).pw_uid
    except KeyError:
        return
    for attempt in range(attempts):
        end_processes(os_accounts.processes_of(name), grace=3)
        try:
            os_accounts.delete_account(name)
            break
        except os_accounts.AccountError as error:  # a process just started, or /etc/passwd locked
            if attempt == attempts - 1:
                account = os_accounts.system_name(name)
                raise os_accounts.AccountError(
                    f"the OS account {account} could not be deleted ({error}): run the command "
                    f"again; `ps -u {account}` shows what still runs."
                ) from None
            time.sleep(1)
    for folder in SHARED_TEMP:
        give_to_root(Path(folder), uid)


def give_to_root(top: Path, uid: int) -> None:
    """Everything below `top` that `uid` owns, root's (nothing deleted, the rest untouched):
    the same uid given to a new account gets none of it. Walked through open folders and
    changed relative to them, links never followed (as os_accounts.own_tree), on `top`'s
    file system only; set-user-ID and set-group-ID bits dropped, never made root's."""
    try:
        device = os.stat(top).st_dev
    except OSError:
        return
    for _, folders, names, folder_fd in os.fwalk(top, follow_symlinks=False):
        folders[:] = [name for name in folders if on_device(name, folder_fd, device)]
        for name in (*folders, *names):
            try:
                info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
                if info.st_uid != uid or stat.S_ISLNK(info.st_mode):
                    continue
                os.chown(name, 0, 0, dir_fd=folder_fd, follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_mode & 0o6000:
                    drop_set_id_bits(name, folder_fd)
            except OSError:
                continue  # gone meanwhile


def on_device(name: str, folder_fd: int, device: int) -> bool:
    try:
        return os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_dev == device
    except OSError:
        return False


def drop_set_id_bits(name: str, folder_fd: int) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=folder_fd)
    try:
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) & ~0o6000)
    finally:
        os.close(fd)


def set_aside_home(home: Path) -> Path | None:
    """`home` renamed to `<home>.removed-<UTC time>`, root's and open to root alone (as
    root): nothing stored is lost, the next account of that name starts in an empty home,
    and an account that gets the removed one's uid again cannot enter it. Only the top
    folder changes owner: root never walks a tree its former owner could fill with links.
    None when there is no home."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = home.with_name(home.name + REMOVED + stamp)
    for number in range(2, 100):  # removed twice within a second
        if not aside.exists():
            break
        aside = home.with_name(f"{home.name}{REMOVED}{stamp}-{number}")
    try:
        home.rename(aside)
    except FileNotFoundError:
        return None
    if os_accounts.enabled():
        folder = os.open(aside, os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY)
        try:
            os.fchown(folder, 0, 0)
            os.fchmod(folder, 0o700)
        finally:
            os.close(folder)
    return aside
