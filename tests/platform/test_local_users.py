"""Local mode's accounts on the real platform: a password per person, nobody logs in as
another or as an admin by choosing a name, lockout, and the command line for operators."""

from __future__ import annotations

import os
import pwd
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from mlops_ide.hub import authenticators
from mlops_ide.hub.modes import load
from mlops_ide.settings import SettingsError
from mlops_ide.supervisor import users
from tests.support.local_platform import PlatformConfig, RunningPlatform, wait_for

PLATFORM = PlatformConfig("users")


def attempt(platform: RunningPlatform, username: str, password: str) -> int:
    """The status of one login through the login form (302: in)."""
    session = requests.Session()
    session.get(f"{platform.url}/hub/login", timeout=30)
    return session.post(
        f"{platform.url}/hub/login",
        data={"username": username, "password": password, "_xsrf": session.cookies.get("_xsrf")},
        allow_redirects=False,
        timeout=30,
    ).status_code


def sign_up(platform: RunningPlatform, username: str, password: str) -> str:
    """The page the signup form answers with."""
    session = requests.Session()
    session.get(f"{platform.url}/hub/signup", timeout=30)
    fields = {"username": username, "signup_password": password, "signup_password_confirmation": password}
    response = session.post(
        f"{platform.url}/hub/signup", data={**fields, "_xsrf": session.cookies.get("_xsrf")}, timeout=30
    )
    assert response.status_code == 200, response.status_code
    return response.text


def test_each_person_logs_in_with_their_own_password_only(platform: RunningPlatform) -> None:
    alice, bob = platform.add_user("alice"), platform.add_user("bob")

    assert attempt(platform, "alice", alice) == 302
    assert attempt(platform, "alice", bob) == 403  # another user's password
    assert attempt(platform, "bob", platform.password) == 403  # the admin's password
    assert attempt(platform, "mallory", alice) == 403  # a name nobody was given


def test_an_admin_name_in_any_case_needs_the_admins_password(platform: RunningPlatform) -> None:
    carol = platform.add_user("carol")

    assert attempt(platform, "ADMIN", carol) == 403
    assert attempt(platform, "Admin", platform.password) == 302
    admin = platform.login("admin")
    assert admin.get(f"{platform.url}/hub/admin", timeout=30).status_code == 200
    assert platform.login("carol").get(f"{platform.url}/hub/admin", timeout=30).status_code == 403


def test_repeated_failures_lock_the_account(platform: RunningPlatform) -> None:
    dave = platform.add_user("dave")
    for _ in range(5):
        assert attempt(platform, "dave", "not-daves-password") == 403

    assert attempt(platform, "dave", dave) == 403  # even the right password, for 5 minutes
    assert attempt(platform, "erin", platform.add_user("erin")) == 302  # others are not locked out


def test_nobody_can_sign_up_under_an_admins_name(platform: RunningPlatform) -> None:
    page = sign_up(platform, "admin", "a-new-long-password")

    assert "username is already in use" in page
    assert attempt(platform, "admin", "a-new-long-password") == 403
    assert attempt(platform, "admin", platform.password) == 302


def test_a_signup_waits_for_an_admins_approval(platform: RunningPlatform) -> None:
    assert "username is already in use" not in sign_up(platform, "frank", "franks-long-password")
    assert attempt(platform, "frank", "franks-long-password") == 403
    assert "frank (awaiting approval)" in platform.users("list").stdout.splitlines()

    admin = platform.login("admin")
    assert admin.get(f"{platform.url}/hub/authorize/frank", timeout=30).status_code == 200

    assert attempt(platform, "frank", "franks-long-password") == 302


def test_another_site_cannot_make_an_admin_approve_a_signup(platform: RunningPlatform) -> None:
    sign_up(platform, "mallory", "mallorys-long-password")
    admin = platform.login("admin")

    lured = admin.get(
        f"{platform.url}/hub/authorize/mallory", headers={"Sec-Fetch-Site": "cross-site"}, timeout=30
    )

    assert lured.status_code == 403
    assert "mallory (awaiting approval)" in platform.users("list").stdout.splitlines()
    assert attempt(platform, "mallory", "mallorys-long-password") == 403


def test_a_name_with_more_after_a_valid_start_is_refused(platform: RunningPlatform) -> None:
    sign_up(platform, "zed:evil", "zeds-long-password")
    sign_up(platform, "zed" + "x" * 30, "zeds-long-password")

    assert not [line for line in platform.users("list").stdout.splitlines() if line.startswith("zed")]


def test_the_command_line_adds_lists_resets_and_removes_while_the_platform_runs(
    platform: RunningPlatform,
) -> None:
    first = platform.add_user("grace", "--admin")
    new = platform.users("reset", "grace").stdout.splitlines()[-1]

    assert attempt(platform, "grace", first) == 403 and attempt(platform, "grace", new) == 302
    assert "grace (admin)" in platform.users("list").stdout.splitlines()
    session = platform.login("grace", new)
    assert session.get(f"{platform.url}/hub/admin", timeout=30).status_code == 200

    removed = platform.users("remove", "grace")

    assert removed.returncode == 0 and "they had no home" in removed.stdout  # never started a server
    assert attempt(platform, "grace", new) == 403
    assert "grace" not in platform.users("list").stdout


def test_a_removed_person_loses_their_session_and_server_and_nobody_inherits_them(
    platform: RunningPlatform,
) -> None:
    """Removed while the hub runs: their cookie opens nothing, their server stops, and the
    next new account (the database hands it the same id) is itself, not them."""
    platform.add_user("ivan")
    ivan = platform.login("ivan")
    platform.open_vscode(ivan, "ivan")
    escaped = None
    if os.geteuid() == 0:  # something ivan left running outside his server's session
        account = pwd.getpwnam("jupyter-ivan")
        escaped = subprocess.Popen(["sleep", "300"], user=account.pw_uid, start_new_session=True)

    assert platform.users("remove", "ivan").returncode == 0

    if escaped:
        assert escaped.wait(10) is not None
    assert ivan.get(f"{platform.url}/hub/api/user", timeout=30).status_code == 403
    assert ivan.get(f"{platform.url}/user/ivan/vscode/", timeout=30, allow_redirects=False).status_code != 200
    with pytest.raises(AssertionError, match="has no running server"):
        platform.server_environ("ivan")
    platform.add_user("judy")
    judy = platform.login("judy")
    assert judy.get(f"{platform.url}/hub/api/user", timeout=30).json()["name"] == "judy"


def test_a_new_account_of_a_removed_name_starts_empty_and_cannot_reach_the_old_files(
    platform: RunningPlatform,
) -> None:
    """An approved signup of a removed person's name gets a fresh OS account and home: not
    their files, tokens or shell history. Theirs stay where the command says, root's alone,
    also when the new account gets the old uid."""
    platform.add_user("olga")
    platform.open_vscode(platform.login("olga"), "olga")
    home = platform.home / "homes" / "olga"
    (home / "notes.txt").write_text("olga's own\n")
    left = Path(tempfile.gettempdir(), f"olga-left-this-{os.getpid()}")  # outside her home
    planted = left.with_name(left.name + "-setuid")
    left.write_text("olga's too\n")
    planted.write_bytes(Path("/bin/true").read_bytes())
    if os.geteuid() == 0:
        old_uid = pwd.getpwnam("jupyter-olga").pw_uid
        for path in (home / "notes.txt", left, planted):
            os.chown(path, old_uid, old_uid)
        left.chmod(0o600)
        planted.chmod(0o6755)

    removed = platform.users("remove", "olga")

    assert removed.returncode == 0, removed.stderr
    aside = Path(removed.stdout.split("kept in ")[1].split(",")[0].split(" (")[0])
    assert aside.parent == home.parent and aside.name.startswith("olga.removed-")
    assert (aside / "notes.txt").read_text() == "olga's own\n" and not home.exists()
    if os.geteuid() == 0:
        with pytest.raises(KeyError):
            pwd.getpwnam("jupyter-olga")
        assert aside.stat().st_uid == 0 and aside.stat().st_mode & 0o777 == 0o700
    platform.add_user("olga")
    platform.open_vscode(platform.login("olga"), "olga")
    assert not (home / "notes.txt").exists() and (home / "pipelines").is_dir()
    peek = platform.terminal("olga", "cat", str(aside / "notes.txt"), cwd=home)
    peek_outside = platform.terminal("olga", "cat", str(left), cwd=home)
    if os.geteuid() == 0:  # also when useradd gave the new olga the old uid (it does, here)
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
        assert peek_outside.returncode != 0 and "Permission denied" in peek_outside.stderr
        assert home.stat().st_uid == pwd.getpwnam("jupyter-olga").pw_uid
        assert (left.stat().st_uid, planted.stat().st_uid) == (0, 0)  # root's, kept
        assert not planted.stat().st_mode & 0o6000  # never a set-user-ID program of root's
    left.unlink()
    planted.unlink()
    deleted = platform.users("remove", "olga", "--delete-home")
    assert deleted.returncode == 0 and "home is deleted" in deleted.stdout and not home.exists()


def test_a_person_removed_while_their_server_starts_is_removed_once_it_has(platform: RunningPlatform) -> None:
    platform.add_user("leo")
    leo = platform.login("leo")
    with pytest.raises(requests.ReadTimeout):  # the spawn begins; the hub answers when it is up
        leo.get(f"{platform.url}/hub/spawn/leo", timeout=0.05)  # its account, its clone: longer

    removed = platform.users("remove", "leo")

    assert removed.returncode == 0, removed.stderr
    assert "leo" not in platform.users("list").stdout
    with pytest.raises(AssertionError, match="has no running server"):
        platform.server_environ("leo")
    assert attempt(platform, "leo", platform.passwords["leo"]) == 403


def test_the_command_lines_hub_token_deletes_people_and_does_nothing_else(platform: RunningPlatform) -> None:
    token_file = platform.home / "accounts_token"
    headers = {"Authorization": f"token {token_file.read_text().strip()}"}
    hub = f"{platform.url}/hub/api"

    assert token_file.stat().st_mode & 0o777 == 0o600
    assert requests.get(f"{hub}/users", headers=headers, timeout=30).status_code == 403
    assert requests.post(f"{hub}/users/admin/server", headers=headers, timeout=30).status_code == 403
    assert requests.post(f"{hub}/users/admin/tokens", headers=headers, json={}, timeout=30).status_code == 403


def test_the_command_line_names_what_is_wrong(platform: RunningPlatform) -> None:
    platform.add_user("heidi")

    again = platform.users("add", "heidi")
    bad = platform.users("add", "Not A Name")
    missing = platform.users("remove", "nobody-here")
    an_admin = platform.users("remove", "admin")

    assert (
        again.returncode == 2 and "heidi has an account already" in again.stderr and "reset" in again.stderr
    )
    assert bad.returncode == 2 and "'not a name' is not a username" in bad.stderr
    assert missing.returncode == 2 and "nobody-here has no account" in missing.stderr
    assert an_admin.returncode == 2 and "take it out there" in an_admin.stderr  # else free for a signup


def test_accounts_made_before_the_first_start_can_log_in(tmp_path: Path) -> None:
    platform = RunningPlatform(tmp_path / "state")
    password = platform.add_user("ivan")  # no database yet: the command makes it
    platform.add_user("kim")
    assert platform.users("remove", "kim").returncode == 0  # no hub runs: the database alone
    try:
        platform.start()
        assert attempt(platform, "ivan", password) == 302
        assert attempt(platform, "admin", platform.password) == 302
        assert "kim" not in platform.users("list").stdout
    finally:
        platform.stop()
    # the hub stopped: another account's program on its port gets no token
    hub_port = int(platform.env["MLOPS_IDE_PORT"]) + 1
    squatter = subprocess.Popen(
        [sys.executable, "-c", SQUATTER, str(hub_port), str(tmp_path / "heard")],
        user="nobody" if os.geteuid() == 0 else None,
    )
    try:
        wait_for(lambda: users.listener_uid(hub_port) is not None, 10, "the squatter to listen")
        refused = platform.users("remove", "ivan")
        if os.geteuid() == 0:
            assert refused.returncode == 2 and "held by uid" in refused.stderr
            assert not (tmp_path / "heard").exists()
    finally:
        squatter.kill()
        squatter.wait()
    assert platform.users("remove", "ivan").returncode == 0  # the database alone
    assert "ivan" not in platform.users("list").stdout


SQUATTER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
connection, _ = server.accept()
open(sys.argv[2], "wb").write(connection.recv(65536))
"""


def test_the_shared_password_is_for_loopback_only() -> None:
    with pytest.raises(SettingsError, match="MLOPS_IDE_AUTH=shared lets anyone"):
        load({"MLOPS_IDE_AUTH": "shared", "MLOPS_IDE_IP": "0.0.0.0", "MLOPS_IDE_ALLOW_HTTP": "1"})
    assert load({"MLOPS_IDE_AUTH": "shared"}).auth == "shared"


def test_the_banner_says_who_logs_in_how_and_how_to_add_people() -> None:
    from mlops_ide.supervisor.up import banner

    native = banner(
        load({"MLOPS_IDE_ADMIN_USERS": "admin,ops"}), "pw-1", False, 1.0, {"admin": "pw-1", "ops": "pw-2"}
    )
    shared = banner(load({"MLOPS_IDE_AUTH": "shared"}), "pw-1", False, 1.0)

    assert any(line.startswith("   log in as admin with the password: pw-1") for line in native)
    assert any("new admin ops, password: pw-2  (shown once" in line for line in native)
    assert any("add people: `make users ARGS='add NAME'`" in line for line in native)
    assert "   log in with any username and the password: pw-1" in shared
    assert not any("add people" in line for line in shared)


def test_the_spawner_returns_once_the_server_listens_not_before(tmp_path) -> None:
    """The hub's first check then finds the server up, instead of polling with a backoff."""
    import asyncio
    import socket
    import subprocess
    import sys
    import time
    from types import SimpleNamespace

    from mlops_ide.hub.local_spawner import LocalVSCodeSpawner

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    late = (
        "import socket, time; time.sleep(0.6); s = socket.socket(); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(30)"
    )
    server = subprocess.Popen([sys.executable, "-c", late])
    try:
        started = time.monotonic()
        asyncio.run(
            LocalVSCodeSpawner.until_listening(
                SimpleNamespace(start_timeout=10, process_ended=lambda: server.poll() is not None),
                "127.0.0.1",
                port,
            )
        )
        waited = time.monotonic() - started
        assert 0.5 < waited < 2 and server.poll() is None
    finally:
        server.kill()
        server.wait()

    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    started = time.monotonic()
    asyncio.run(
        LocalVSCodeSpawner.until_listening(
            SimpleNamespace(start_timeout=10, process_ended=lambda: dead.poll() is not None),
            "127.0.0.1",
            port,
        )
    )
    assert time.monotonic() - started < 0.5  # a server that died is not waited for


def test_a_team_logging_in_at_once_each_reaches_vscode_and_its_websocket(platform: RunningPlatform) -> None:
    """Five people at the same moment (a stand-up): every one through the login form, the
    spawn, VS Code's HTML and its websocket, through the real proxy (bench/many_users.py
    measures 10, 20, 40)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.local_platform import log_in_to_vscode

    team = [f"member{n}" for n in range(5)]
    for name in team:
        platform.add_user(name)
    with ThreadPoolExecutor(max_workers=len(team)) as pool:
        arrivals = list(pool.map(lambda name: log_in_to_vscode(platform, name), team))

    assert [set(steps) for steps in arrivals] == [{"login", "ready", "vscode_html", "websocket"}] * 5
    # their servers yield the CPU to the hub and the proxy; commits do not wait for the disk
    assert {niceness(platform.server_pid(name)) for name in team} == {5}
    groups = [Path(f"/proc/{platform.server_pid(name)}/autogroup") for name in team]
    if all(group.exists() for group in groups):  # scheduled by session group: the group's nice weighs
        assert {group.read_text().split()[-1] for group in groups} == {"5"}
    with sqlite3.connect(platform.home / "jupyterhub.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    admin = platform.login("admin")
    running = admin.get(f"{platform.url}/hub/api/users", timeout=30).json()
    assert {user["name"] for user in running if user["servers"].get("", {}).get("ready")} >= set(team)
    for name in team:  # the next tests of this module do not need five servers
        admin.delete(
            f"{platform.url}/hub/api/users/{name}/server",
            headers={"X-XSRFToken": admin.cookies.get("_xsrf", path="/hub/") or ""},
            timeout=60,
        )


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_hubs_sqlite_connections_commit_without_fsync() -> None:
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import Engine

    from mlops_ide.hub.database import commit_without_waiting_for_the_disk, sqlite_pragmas

    commit_without_waiting_for_the_disk()
    commit_without_waiting_for_the_disk()  # the hub's configuration may load twice: one listener
    try:
        with create_engine("sqlite:///" + tempfile.mkdtemp() + "/hub.sqlite").connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        event.remove(Engine, "connect", sqlite_pragmas)


def native_authenticator(password: bytes, cost: int):
    """The hub's authenticator on a database of its own with one account, alice."""
    import bcrypt
    from nativeauthenticator.orm import UserInfo
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from mlops_ide.hub.authenticators import LocalNativeAuthenticator

    db = Session(create_engine("sqlite://"))
    authenticator = LocalNativeAuthenticator(db=db, allowed_failed_logins=5)
    db.add(
        UserInfo(username="alice", password=bcrypt.hashpw(password, bcrypt.gensalt(cost)), is_authorized=True)
    )
    db.commit()
    return authenticator


def test_password_checks_leave_the_hub_answering() -> None:
    """bcrypt runs off the hub's event loop: while a slow check runs (cost 13, about 0.6 s
    here), the loop keeps turning. Checked inline it would not turn once."""
    import asyncio

    authenticator = native_authenticator(b"right horse battery", 13)

    async def check_while_ticking(password: str) -> tuple[str | None, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)  # the ticker starts before the check
        who = await authenticator.authenticate(None, {"username": "alice", "password": password})
        ticker.cancel()
        return who, ticks

    who, ticks = asyncio.run(check_while_ticking("right horse battery"))
    assert who == "alice" and ticks >= 20
    who, ticks = asyncio.run(check_while_ticking("wrong"))
    assert who is None and ticks >= 20
    assert authenticator.login_attempts["alice"]["count"] == 1  # the failure counts toward the lockout


def test_guesses_sent_at_once_cannot_pass_the_lockout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve wrong passwords at the same moment: five are checked, the rest refused
    unchecked, and then the right one too (locked). Counted after the check, all twelve
    would have been tried."""
    import asyncio

    authenticator = native_authenticator(b"right horse battery", 4)
    checked = []
    matches = authenticators.password_matches
    monkeypatch.setattr(
        authenticators,
        "password_matches",
        lambda given, stored: checked.append(given) or matches(given, stored),
    )

    async def at_once(passwords: list[str]) -> list[str | None]:
        return await asyncio.gather(
            *(authenticator.authenticate(None, {"username": "alice", "password": p}) for p in passwords)
        )

    assert asyncio.run(at_once([f"guess {n}" for n in range(12)])) == [None] * 12
    assert len(checked) == 5
    assert asyncio.run(at_once(["right horse battery"])) == [None]


def test_a_password_bcrypt_cannot_take_is_a_failed_login_not_an_error() -> None:
    import asyncio

    authenticator = native_authenticator(b"right horse battery", 4)
    too_long = {"username": "alice", "password": "x" * 100}  # bcrypt takes 72 bytes

    assert asyncio.run(authenticator.authenticate(None, too_long)) is None
    assert authenticator.login_attempts["alice"]["count"] == 1


def test_servers_start_in_turns_first_come_first_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most `starts_at_once` servers start together; the others wait, in arrival order."""
    import asyncio

    from jupyterhub.spawner import SimpleLocalProcessSpawner

    from mlops_ide.hub.local_spawner import LocalVSCodeSpawner

    starting, most, order = 0, 0, []

    async def process_start(spawner) -> tuple[str, int]:
        nonlocal starting, most
        starting += 1
        most = max(most, starting)
        order.append(crowd.index(spawner))
        await asyncio.sleep(0.05)
        starting -= 1
        return "127.0.0.1", 1

    monkeypatch.setattr(SimpleLocalProcessSpawner, "start", process_start)
    monkeypatch.setattr(LocalVSCodeSpawner, "start_turns", None)
    crowd = [LocalVSCodeSpawner(starts_at_once=2, return_when_listening=False) for _ in range(7)]

    async def arrive() -> None:
        await asyncio.gather(*(spawner.start() for spawner in crowd))

    asyncio.run(arrive())
    assert most == 2 and order == list(range(7))
