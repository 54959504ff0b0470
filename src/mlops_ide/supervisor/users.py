"""The hub's accounts in local mode, each with its own password (JupyterHub's
NativeAuthenticator keeps them in the hub's database), from the command line:

    python -m mlops_ide.supervisor.users add NAME [--admin]     the new password, alone on the last line
    python -m mlops_ide.supervisor.users reset NAME             a new password for NAME, likewise
    python -m mlops_ide.supervisor.users list
    python -m mlops_ide.supervisor.users remove NAME [--delete-home]   the home is set aside unless deleted

Run it from the checkout with the platform's MLOPS_IDE_HOME: `make users ARGS='add NAME'`
does, with the hub's virtualenv. It works whether the platform runs or not, writing the
database as the hub's signup and authorization pages do. People can also sign up at
/hub/signup; an admin approves them at /hub/authorize.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_ide import names
from mlops_ide.machine import account_removal, os_accounts
from mlops_ide.machine.state.layout import accounts_token_file, ensure_folder, hub_db_url
from mlops_ide.settings import Settings, SettingsError


class UsersError(ValueError):
    """A request about accounts that cannot be done; the message says what to do."""


@dataclass(frozen=True)
class Account:
    name: str
    admin: bool
    authorized: bool


def check_name(name: str) -> str:
    name = name.strip().lower()
    if not names.USERNAME.fullmatch(name):
        raise UsersError(
            f"{name!r} is not a username: use 1 to 23 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def new_password() -> str:
    return secrets.token_urlsafe(12)


@contextmanager
def hub_database(settings: Settings) -> Iterator[Any]:
    """A session on the hub's database, made (and stamped for JupyterHub) when missing."""
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo  # registers its table with JupyterHub's

    if not settings.home.exists():
        ensure_folder(settings.home)
    logging.disable(logging.INFO)  # alembic says so when it stamps a new database: no news here
    try:
        session = orm.new_session_factory(hub_db_url(settings))()
    finally:
        logging.disable(logging.NOTSET)
    try:
        UserInfo.__table__.create(session.get_bind(), checkfirst=True)
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def hash_password(password: str) -> bytes:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt())


def add(settings: Settings, name: str, admin: bool = False, password: str | None = None) -> str:
    """A new authorized account; returns its password (generated unless given)."""
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    name = check_name(name)
    password = password or new_password()
    with hub_database(settings) as db:
        if UserInfo.find(db, name) is not None:
            raise UsersError(
                f"{name} has an account already: `make users ARGS='reset {name}'` gives it a new password."
            )
        db.add(UserInfo(username=name, password=hash_password(password), is_authorized=True))
        if admin:
            user = orm.User.find(db, name) or orm.User(name=name)
            user.admin = True
            db.add(user)
    return password


def reset(settings: Settings, name: str) -> str:
    from nativeauthenticator.orm import UserInfo

    name = check_name(name)
    password = new_password()
    with hub_database(settings) as db:
        info = UserInfo.find(db, name)
        if info is None:
            raise UsersError(f"{name} has no account: `make users ARGS='add {name}'` makes one.")
        info.password = hash_password(password)
    return password


def accounts(settings: Settings) -> list[Account]:
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    with hub_database(settings) as db:
        admins = {user.name for user in db.query(orm.User).filter(orm.User.admin.is_(True))}
        return [
            Account(
                info.username,
                info.username in admins or info.username in settings.admin_users,
                bool(info.is_authorized),
            )
            for info in sorted(UserInfo.all_users(db), key=lambda info: info.username)
        ]


def listener_uid(port: int) -> int | None:
    """The account that listens on 127.0.0.1:`port` (or on every address), from
    /proc/net/tcp; None when nothing does."""
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields[1] in wanted and fields[3] == "0A":  # LISTEN
            return int(fields[7])
    return None


def delete_in_running_hub(settings: Settings, name: str, wait: float = 150) -> bool:
    """Delete `name` through the running hub (it stops their server and forgets them); False
    when no hub runs. Deleted in the database alone, a running hub kept them in memory under
    their id, which SQLite then gives to the next new account: that person was logged in as
    the removed one. The token goes to the hub's port only when the account listening there
    is this one (the hub's), never through a proxy; a server that is starting or stopping
    is waited for (the hub answers 400 or 500 until it settles)."""
    try:
        token = accounts_token_file(settings).read_text().strip()
    except FileNotFoundError:  # the platform never started: no hub remembers anyone
        return False
    owner = listener_uid(settings.hub_port)
    if owner is None:
        return False
    if owner != os.geteuid():
        raise UsersError(
            f"port {settings.hub_port} (the hub's API) is held by uid {owner}, not by the platform: "
            "stop that program, or run this command as the platform's account."
        )
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.hub_port}/hub/api/users/{name}",
        method="DELETE",
        headers={"Authorization": f"token {token}"},
    )
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + wait
    while True:
        try:
            direct.open(request, timeout=120).close()
            return True
        except urllib.error.HTTPError as error:
            if error.code == 404:  # the hub has never seen them log in
                return True
            if error.code in (400, 500) and time.monotonic() < deadline:
                time.sleep(1)
                continue
            raise UsersError(
                f"the running hub refused to delete {name} ({error.code}): retry, or stop the "
                "platform and run the command again."
            ) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, ConnectionRefusedError):  # the platform stopped meanwhile
                return False
            raise UsersError(f"the hub did not answer ({error.reason}): retry.") from None
        except (ConnectionError, http.client.HTTPException) as error:  # it hung up mid-answer
            raise UsersError(f"the hub did not answer ({error}): retry.") from None


def remove(settings: Settings, name: str, delete_home: bool = False) -> Path | None:
    """The account goes (no more logins, their server and every process of their OS account
    stopped, that account deleted); their home is set aside where the next account of that
    name does not get it, or deleted when asked. Returns where the home went (None: deleted,
    or there was none)."""
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    name = check_name(name)
    if name in settings.admin_users:  # its name would be free for a signup, approved as admin
        raise UsersError(
            f"{name} is in MLOPS_IDE_ADMIN_USERS: take it out there and restart the platform first."
        )
    with hub_database(settings) as db:  # a removal cut short left the hub's user: finish it
        if UserInfo.find(db, name) is None and orm.User.find(db, name) is None:
            raise UsersError(f"{name} has no account.")
    deleted = delete_in_running_hub(settings, name)
    with hub_database(settings) as db:  # what the hub did not delete (its authenticator drops the login)
        for row in (UserInfo.find(db, name), None if deleted else orm.User.find(db, name)):
            if row is not None:
                db.delete(row)
    if os_accounts.enabled():
        try:
            account_removal.delete_account(name)
        except os_accounts.AccountError as error:
            raise UsersError(str(error)) from None
    home = settings.homes / name
    if delete_home:
        shutil.rmtree(home, ignore_errors=True)
        return None
    return account_removal.set_aside_home(home)


def ensure_admins(settings: Settings, first_password: str) -> dict[str, str]:
    """At every start: an account for each name in MLOPS_IDE_ADMIN_USERS that has none, so
    that nobody can sign up under an admin's name. The first gets the platform's password;
    the others a generated one, returned here to be shown once."""
    from nativeauthenticator.orm import UserInfo

    with hub_database(settings) as db:
        missing = [name for name in settings.admin_users if UserInfo.find(db, name) is None]
    made = {}
    for name in missing:
        first = name == settings.admin_users[0]
        made[name] = add(settings, name, admin=True, password=first_password if first else None)
    return made


def main(argv: list[str] | None = None) -> int:
    from mlops_ide.hub.modes import local

    parser = argparse.ArgumentParser(
        prog="python -m mlops_ide.supervisor.users", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="a new account; prints its password last")
    adding.add_argument("name")
    adding.add_argument("--admin", action="store_true", help="a hub admin")
    commands.add_parser("reset", help="a new password; prints it last").add_argument("name")
    commands.add_parser("list", help="every account")
    removing = commands.add_parser("remove", help="no more logins; the home is set aside, kept")
    removing.add_argument("name")
    removing.add_argument("--delete-home", action="store_true", help="delete the home folder too")
    args = parser.parse_args(argv)
    try:
        settings = local.load()
        if args.command == "add":
            password = add(settings, args.name, admin=args.admin)
            print(f"{check_name(args.name)} can log in at {settings.public_url} with the password:")
            print(password)
        elif args.command == "reset":
            password = reset(settings, args.name)
            print(f"new password for {check_name(args.name)}:")
            print(password)
        elif args.command == "list":
            for account in accounts(settings):
                flags = [
                    flag
                    for flag, on in (("admin", account.admin), ("awaiting approval", not account.authorized))
                    if on
                ]
                print(account.name + (f" ({', '.join(flags)})" if flags else ""))
        else:
            aside = remove(settings, args.name, delete_home=args.delete_home)
            name = check_name(args.name)
            if args.delete_home:
                home = "their home is deleted"
            elif aside is None:
                home = "they had no home"
            else:
                private = ", root's alone" if os_accounts.enabled() else ""
                home = f"their home is kept in {aside}{private} (a new {name} starts with an empty one)"
            print(f"{name} can no longer log in and no server or process of theirs runs; {home}.")
    except (UsersError, SettingsError) as problem:
        print(f"mlops-ide users: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
