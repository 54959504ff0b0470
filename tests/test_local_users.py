"""Local mode's accounts on the real platform: a password per person, nobody logs in as
another or as an admin by choosing a name, lockout, and the command line for operators."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from mlops_ide.modes import load
from mlops_ide.settings import SettingsError
from tests.local_platform import Platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Platform:
    running = Platform(tmp_path_factory.mktemp("users") / "state").start()
    yield running
    running.stop()


def attempt(platform: Platform, username: str, password: str) -> int:
    """The status of one login through the login form (302: in)."""
    session = requests.Session()
    session.get(f"{platform.url}/hub/login", timeout=30)
    return session.post(
        f"{platform.url}/hub/login",
        data={"username": username, "password": password, "_xsrf": session.cookies.get("_xsrf")},
        allow_redirects=False,
        timeout=30,
    ).status_code


def sign_up(platform: Platform, username: str, password: str) -> str:
    """The page the signup form answers with."""
    session = requests.Session()
    session.get(f"{platform.url}/hub/signup", timeout=30)
    fields = {"username": username, "signup_password": password, "signup_password_confirmation": password}
    response = session.post(
        f"{platform.url}/hub/signup", data={**fields, "_xsrf": session.cookies.get("_xsrf")}, timeout=30
    )
    assert response.status_code == 200, response.status_code
    return response.text


def test_each_person_logs_in_with_their_own_password_only(platform: Platform) -> None:
    alice, bob = platform.add_user("alice"), platform.add_user("bob")

    assert attempt(platform, "alice", alice) == 302
    assert attempt(platform, "alice", bob) == 403  # another user's password
    assert attempt(platform, "bob", platform.password) == 403  # the admin's password
    assert attempt(platform, "mallory", alice) == 403  # a name nobody was given


def test_an_admin_name_in_any_case_needs_the_admins_password(platform: Platform) -> None:
    carol = platform.add_user("carol")

    assert attempt(platform, "ADMIN", carol) == 403
    assert attempt(platform, "Admin", platform.password) == 302
    admin = platform.login("admin")
    assert admin.get(f"{platform.url}/hub/admin", timeout=30).status_code == 200
    assert platform.login("carol").get(f"{platform.url}/hub/admin", timeout=30).status_code == 403


def test_repeated_failures_lock_the_account(platform: Platform) -> None:
    dave = platform.add_user("dave")
    for _ in range(5):
        assert attempt(platform, "dave", "not-daves-password") == 403

    assert attempt(platform, "dave", dave) == 403  # even the right password, for 5 minutes
    assert attempt(platform, "erin", platform.add_user("erin")) == 302  # others are not locked out


def test_nobody_can_sign_up_under_an_admins_name(platform: Platform) -> None:
    page = sign_up(platform, "admin", "a-new-long-password")

    assert "username is already in use" in page
    assert attempt(platform, "admin", "a-new-long-password") == 403
    assert attempt(platform, "admin", platform.password) == 302


def test_a_signup_waits_for_an_admins_approval(platform: Platform) -> None:
    assert "username is already in use" not in sign_up(platform, "frank", "franks-long-password")
    assert attempt(platform, "frank", "franks-long-password") == 403
    assert "frank (awaiting approval)" in platform.users("list").stdout.splitlines()

    admin = platform.login("admin")
    assert admin.get(f"{platform.url}/hub/authorize/frank", timeout=30).status_code == 200

    assert attempt(platform, "frank", "franks-long-password") == 302


def test_another_site_cannot_make_an_admin_approve_a_signup(platform: Platform) -> None:
    sign_up(platform, "mallory", "mallorys-long-password")
    admin = platform.login("admin")

    lured = admin.get(
        f"{platform.url}/hub/authorize/mallory", headers={"Sec-Fetch-Site": "cross-site"}, timeout=30
    )

    assert lured.status_code == 403
    assert "mallory (awaiting approval)" in platform.users("list").stdout.splitlines()
    assert attempt(platform, "mallory", "mallorys-long-password") == 403


def test_a_name_with_more_after_a_valid_start_is_refused(platform: Platform) -> None:
    sign_up(platform, "zed:evil", "zeds-long-password")
    sign_up(platform, "zed" + "x" * 30, "zeds-long-password")

    assert not [line for line in platform.users("list").stdout.splitlines() if line.startswith("zed")]


def test_the_command_line_adds_lists_resets_and_removes_while_the_platform_runs(platform: Platform) -> None:
    first = platform.add_user("grace", "--admin")
    new = platform.users("reset", "grace").stdout.splitlines()[-1]

    assert attempt(platform, "grace", first) == 403 and attempt(platform, "grace", new) == 302
    assert "grace (admin)" in platform.users("list").stdout.splitlines()
    session = platform.login("grace", new)
    assert session.get(f"{platform.url}/hub/admin", timeout=30).status_code == 200

    removed = platform.users("remove", "grace")

    assert removed.returncode == 0 and "kept in" in removed.stdout
    assert attempt(platform, "grace", new) == 403
    assert "grace" not in platform.users("list").stdout


def test_the_command_line_names_what_is_wrong(platform: Platform) -> None:
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
    platform = Platform(tmp_path / "state")
    password = platform.add_user("ivan")  # no database yet: the command makes it
    try:
        platform.start()
        assert attempt(platform, "ivan", password) == 302
        assert attempt(platform, "admin", platform.password) == 302
    finally:
        platform.stop()


def test_the_shared_password_is_for_loopback_only() -> None:
    with pytest.raises(SettingsError, match="MLOPS_IDE_AUTH=shared lets anyone"):
        load({"MLOPS_IDE_AUTH": "shared", "MLOPS_IDE_IP": "0.0.0.0", "MLOPS_IDE_ALLOW_HTTP": "1"})
    assert load({"MLOPS_IDE_AUTH": "shared"}).auth == "shared"


def test_the_banner_says_who_logs_in_how_and_how_to_add_people() -> None:
    from mlops_ide.up import banner

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

    from mlops_ide.local_hub import LocalVSCodeSpawner

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
                SimpleNamespace(start_timeout=10, proc=server), "127.0.0.1", port
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
        LocalVSCodeSpawner.until_listening(SimpleNamespace(start_timeout=10, proc=dead), "127.0.0.1", port)
    )
    assert time.monotonic() - started < 0.5  # a server that died is not waited for
