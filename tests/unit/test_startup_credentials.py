"""Case 11 and the token rules: a real HTTP git server on loopback demands the token; the
token reaches git only through the credential helper and is written nowhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from startup import credential
from tests.support.git_http_server import GitHttpServer
from tests.support.gitrepos import Remote, git, user_commit

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghp_TestTokenNotReal0123456789abcdef"


@pytest.fixture
def server(remote: Remote) -> GitHttpServer:
    with GitHttpServer(remote.path.parent, token=TOKEN) as server:
        yield server


def sync_cli(url: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "startup.sync", "--url", url, "--timeout", "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def files_containing(folder: Path, text: str) -> list[Path]:
    found = subprocess.run(["grep", "-rlF", text, str(folder)], capture_output=True, text=True)
    return [Path(line) for line in found.stdout.splitlines()]


def test_token_from_the_environment_clones_and_lets_the_user_push(
    remote: Remote, home: Path, server: GitHttpServer
) -> None:
    url = server.url("pipelines.git")

    result = sync_cli(url, MLOPS_IDE_GIT_TOKEN=TOKEN)

    assert result.returncode == 0, result.stderr
    clone = home / "pipelines"
    assert git(clone, "remote", "get-url", "origin") == url
    # `git push` from the VS Code terminal: same environment, no further setup.
    mine = user_commit(clone, {"dags/new.py": "print('new')\n"}, "new dag")
    push = subprocess.run(
        ["git", "push", "--quiet", "origin", "main"],
        cwd=clone,
        capture_output=True,
        text=True,
        env={**os.environ, "MLOPS_IDE_GIT_TOKEN": TOKEN, "GIT_TERMINAL_PROMPT": "0"},
    )
    assert push.returncode == 0, push.stderr
    assert remote.head() == mine
    # The token is nowhere: not in the clone (.git included), the home (git config,
    # status file), nor what the hook logged.
    assert files_containing(home, TOKEN) == []
    assert TOKEN not in result.stderr


def test_token_from_a_file(remote: Remote, home: Path, server: GitHttpServer, tmp_path: Path) -> None:
    token_file = tmp_path / "secret" / "token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")

    result = sync_cli(server.url("pipelines.git"), MLOPS_IDE_GIT_TOKEN_FILE=str(token_file))

    assert result.returncode == 0, result.stderr
    assert (home / "pipelines" / "README.md").exists()
    assert files_containing(home, TOKEN) == []


def test_wrong_token_is_a_clear_error_that_never_shows_the_token(
    remote: Remote, home: Path, server: GitHttpServer
) -> None:
    wrong = "ghp_WrongTokenAlsoNotReal987654321"

    result = sync_cli(server.url("pipelines.git"), MLOPS_IDE_GIT_TOKEN=wrong)

    assert result.returncode == 1
    assert "auth_failed" in result.stderr and "the token that is set was refused" in result.stderr
    status = (home / "sync-status.md").read_text()
    assert "MLOPS_IDE_GIT_TOKEN" in status
    assert wrong not in result.stderr + status
    assert files_containing(home, wrong) == []
    assert not (home / "pipelines").exists()


def test_missing_token_says_none_is_set(remote: Remote, home: Path, server: GitHttpServer) -> None:
    result = sync_cli(server.url("pipelines.git"))

    assert result.returncode == 1
    assert "no token is set" in result.stderr


def test_refused_token_leaves_an_existing_copy_alone(
    remote: Remote, home: Path, server: GitHttpServer
) -> None:
    url = server.url("pipelines.git")
    assert sync_cli(url, MLOPS_IDE_GIT_TOKEN=TOKEN).returncode == 0
    (home / "pipelines" / "README.md").write_text("edited\n")

    result = sync_cli(url, MLOPS_IDE_GIT_TOKEN="revoked")

    assert result.returncode == 0  # the repository is there to work in
    assert "auth_failed" in result.stderr
    assert (home / "pipelines" / "README.md").read_text() == "edited\n"


def test_helper_is_configured_for_the_remote_host_only(
    remote: Remote, home: Path, server: GitHttpServer
) -> None:
    sync_cli(server.url("pipelines.git"), MLOPS_IDE_GIT_TOKEN=TOKEN)

    config = git(home, "config", "--global", "--get-regexp", r"^credential\.")

    key, _, value = config.partition(" ")
    assert key == f"credential.http://127.0.0.1:{server.port}.helper"
    assert value.endswith("startup/credential.py")
    # A second run leaves a single entry.
    sync_cli(server.url("pipelines.git"), MLOPS_IDE_GIT_TOKEN=TOKEN)
    assert git(home, "config", "--global", "--get-regexp", r"^credential\.") == config


def test_helper_answers_only_get_and_only_with_a_token() -> None:
    request = "protocol=https\nhost=github.com\n"
    assert credential.answer("get", request, {"MLOPS_IDE_GIT_TOKEN": "t0k"}) == (
        "username=x-access-token\npassword=t0k\n"
    )
    assert credential.answer("store", request, {"MLOPS_IDE_GIT_TOKEN": "t0k"}) == ""
    assert credential.answer("get", request, {}) == ""
    assert credential.answer("get", request, {"MLOPS_IDE_GIT_TOKEN_FILE": "/no/such/file"}) == ""
