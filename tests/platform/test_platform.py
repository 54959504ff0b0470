"""The local platform end to end over HTTP: real hub, proxy, user servers, code-server
and git. One platform for the module; each test says what it checks."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import requests

from tests.support.gitrepos import git, user_commit
from tests.support.local_platform import PlatformConfig, RunningPlatform, wait_for, wait_for_progress

PLATFORM = PlatformConfig("platform")


@pytest.fixture(scope="module")
def alice(platform: RunningPlatform) -> requests.Session:
    session = platform.login("alice")
    platform.open_vscode(session, "alice")
    return session


def test_login_lands_in_vscode_with_the_repository_open(
    platform: RunningPlatform, alice: requests.Session
) -> None:
    response = alice.get(f"{platform.url}/user/alice/vscode/", timeout=30)

    clone = platform.home / "homes" / "alice" / "pipelines"
    assert response.status_code == 200
    assert response.url.endswith(f"?folder={clone}")
    assert 'id="vscode-workbench-web-configuration"' in response.text
    assert git(clone, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(clone, "rev-parse", "HEAD") == git(
        platform.home / "remote" / "pipelines.git", "rev-parse", "main"
    )
    assert "# Pipeline repository: ready" in (clone.parent / "sync-status.md").read_text()


def test_the_default_url_after_login_is_vscode(platform: RunningPlatform, alice: requests.Session) -> None:
    response = alice.get(f"{platform.url}/user/alice/", timeout=30)

    assert response.status_code == 200
    assert "/user/alice/vscode/" in response.url


def test_code_server_listens_on_a_private_unix_socket(
    platform: RunningPlatform, alice: requests.Session
) -> None:
    home = platform.home / "homes" / "alice"
    procs = [pid for pid in os.listdir("/proc") if pid.isdigit() and code_server_of(pid, home)]
    assert procs, "no code-server process for alice"
    args = Path(f"/proc/{procs[0]}/cmdline").read_bytes().split(b"\0")
    socket_path = args[args.index(b"--socket") + 1].decode()
    assert args[args.index(b"--socket-mode") + 1] == b"0600"
    assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
    assert not any(a.startswith(b"--port") or a.startswith(b"--bind-addr") for a in args)


def test_code_server_starts_with_the_server_not_at_the_first_request(platform: RunningPlatform) -> None:
    """A login's wait for VS Code does not include code-server's own start (startup/
    vscode_early.py): it runs once the server is ready, before anyone asked for /vscode/;
    the first request then uses it, and starts no second one."""
    session = platform.login("carol")
    session.get(f"{platform.url}/hub/spawn/carol", allow_redirects=False, timeout=60)
    wait_for_progress(platform, session, "carol")
    home = platform.home / "homes" / "carol"

    before = wait_for(
        lambda: [pid for pid in os.listdir("/proc") if pid.isdigit() and code_server_of(pid, home)],
        timeout=60,
        what="carol's code-server, started with her server",
    )
    platform.open_vscode(session, "carol")
    after = [pid for pid in os.listdir("/proc") if pid.isdigit() and code_server_of(pid, home)]

    assert after == before


def code_server_of(pid: str, home: Path) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"code-server/out/node/entry.js") for a in args) and str(
        home
    ).encode() in b" ".join(args)


def test_vscode_settings_keep_it_offline_and_quiet(
    platform: RunningPlatform, alice: requests.Session
) -> None:
    home = platform.home / "homes" / "alice"
    config = (home / ".config" / "mlops-ide" / "code-server.yaml").read_text()
    settings = (home / ".local" / "share" / "code-server" / "User" / "settings.json").read_text()

    for flag in (
        "disable-telemetry",
        "disable-update-check",
        "disable-workspace-trust",
        "disable-getting-started-override",
    ):
        assert f"{flag}: true" in config
    assert '"workbench.startupEditor": "none"' in settings
    assert '"chat.disableAIFeatures": true' in settings


def test_jupyterlab_stays_reachable(platform: RunningPlatform, alice: requests.Session) -> None:
    response = alice.get(f"{platform.url}/user/alice/lab", timeout=30)

    assert response.status_code == 200
    assert "JupyterLab" in response.text


def test_user_pushes_to_the_local_remote_without_typing_credentials(
    platform: RunningPlatform, alice: requests.Session
) -> None:
    clone = platform.home / "homes" / "alice" / "pipelines"
    mine = user_commit(clone, {"dags/hello.py": "# hello\n"}, "hello from alice")

    push = platform.terminal("alice", "git", "push", "--quiet", "origin", "main", cwd=clone)

    assert push.returncode == 0, push.stderr
    assert (
        "TOKEN" not in (clone / ".git" / "config").read_text().upper()
    )  # the helper gives it, nothing stores it
    assert git(platform.home / "remote" / "pipelines.git", "rev-parse", "main") == mine


def git_service(
    platform: RunningPlatform, path: str, token: str | None, user: str = "alice"
) -> requests.Response:
    """A request of git's smart protocol to the git service, as git sends it."""
    url = f"http://127.0.0.1:{platform.env['MLOPS_IDE_GIT_PORT']}/services/git/{path}"
    return requests.get(url, auth=(user, token) if token else None, timeout=30)


REFS = "pipelines.git/info/refs?service=git-upload-pack"


def test_the_git_service_lets_in_a_users_server_token_and_nothing_else(
    platform: RunningPlatform, alice: requests.Session
) -> None:
    token = platform.server_environ("alice")["MLOPS_IDE_GIT_TOKEN"]
    narrow = alice.post(
        f"{platform.url}/hub/api/users/alice/tokens",
        json={"scopes": ["read:users:name!user"], "note": "no git"},
        headers={"X-XSRFToken": alice.cookies.get("_xsrf", path="/hub/")},
        timeout=30,
    )
    assert narrow.status_code == 201, narrow.text

    assert git_service(platform, REFS, token).status_code == 200
    # git's token is not the server's: it opens the git service alone, the server's opens no git
    server_token = platform.server_environ("alice")["JUPYTERHUB_API_TOKEN"]
    assert token != server_token and git_service(platform, REFS, server_token).status_code == 403
    status = requests.get(
        f"{platform.url}/user/alice/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert status.status_code == 403
    assert git_service(platform, REFS, None).status_code == 401
    assert git_service(platform, REFS, "not-a-token").status_code == 401
    refused = git_service(platform, REFS, narrow.json()["token"])
    assert refused.status_code == 403 and "access:services!service=git" in refused.text
    # the one repository's protocol paths only, even with a good token
    for path in ("pipelines.git/config", "pipelines.git/HEAD", "other.git/info/refs", "../password"):
        assert git_service(platform, path, token).status_code == 404, path
    assert (
        requests.get(f"{platform.url}/services/git/health", timeout=30).status_code == 200
    )  # behind the proxy too


def test_another_users_cookie_cannot_reach_alices_server(
    platform: RunningPlatform, alice: requests.Session
) -> None:
    bob = platform.login("bob")

    for path in ("vscode/", "lab", "api/status", "api/contents"):
        response = bob.get(f"{platform.url}/user/alice/{path}", timeout=30)
        assert response.status_code == 403, (path, response.status_code, response.url)
        assert "vscode-workbench" not in response.text


def test_anonymous_requests_never_reach_a_server(platform: RunningPlatform, alice: requests.Session) -> None:
    for path in ("vscode/", "vscode/healthz", "lab", "api/status", "api/contents"):
        response = requests.get(f"{platform.url}/user/alice/{path}", allow_redirects=False, timeout=30)
        if response.status_code == 302:  # pages: off to the hub's login
            followed = requests.get(f"{platform.url}/user/alice/{path}", timeout=30)
            assert "/hub/login" in followed.url, (path, followed.url)
        else:  # APIs: refused outright
            assert response.status_code == 403, (path, response.status_code)
            assert "vscode" not in response.text and "content" not in response.text


def test_wrong_password_returns_to_login_with_an_error(platform: RunningPlatform) -> None:
    session = requests.Session()
    session.get(f"{platform.url}/hub/login", timeout=30)

    response = session.post(
        f"{platform.url}/hub/login",
        data={"username": "mallory", "password": "not-the-password", "_xsrf": session.cookies.get("_xsrf")},
        timeout=30,
    )

    assert response.status_code == 403
    assert "Invalid username or password" in response.text
    assert session.get(f"{platform.url}/hub/api/user", timeout=30).status_code == 403


def test_the_first_admin_logs_in_with_the_platform_password_and_is_admin(platform: RunningPlatform) -> None:
    admin = platform.login("admin")

    assert admin.get(f"{platform.url}/hub/admin", timeout=30).status_code == 200
    bob = platform.login("bob")
    assert bob.get(f"{platform.url}/hub/admin", timeout=30).status_code == 403


def test_home_page_links_each_tool_with_a_health_check(
    platform: RunningPlatform, alice: requests.Session
) -> None:
    page = alice.get(f"{platform.url}/hub/home", timeout=30).text

    assert 'href="/user/alice/vscode/"' in page
    assert 'href="/user/alice/lab"' in page
    health = re.findall(r'data-health-url="([^"]+)"', page)
    assert health == ["/user/alice/vscode/healthz", "/user/alice/api"]
    for url in health:
        assert alice.get(f"{platform.url}{url}", timeout=30).status_code == 200


def test_password_is_kept_private_in_the_state_folder(platform: RunningPlatform) -> None:
    mode = stat.S_IMODE((platform.home / "password").stat().st_mode)

    assert mode == 0o600
    assert len(platform.password) >= 16
