"""The single-user image's start hook, run the way the docker-stacks start script runs it
(sourced by bash with `set -e`, as the notebook user), with what the pod gets from
KubeSpawner: the repository URL and branch, and the user's GitHub token as a file from
the pod's Secret. The git server is real (git http-backend demanding the token)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.git_http_server import GitHttpServer
from tests.support.gitrepos import Remote, git, user_commit
from tests.support.local_platform import ROOT

HOOK = ROOT / "images" / "singleuser" / "mlops-ide-start-hook.sh"
TOKEN = "gho_TestTokenOfAliceNotReal0123456789"


def run_start_script(home: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Like docker-stacks' start.sh: `set -e`, source the hook, then start the server
    (here: print the environment the server would get, NUL-separated)."""
    script = f'set -e\nsource "{HOOK}"\necho "server starts" >&2\nenv -0'
    full_env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
        "MLOPS_IDE_STARTUP_DIR": str(ROOT),
        **env,
    }
    result = subprocess.run(["bash", "-c", script], env=full_env, cwd=home, capture_output=True, timeout=120)
    server_env = dict(item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    return result, server_env


@pytest.fixture
def server(remote: Remote) -> GitHttpServer:
    with GitHttpServer(remote.path.parent, token=TOKEN) as server:
        yield server


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """Where the kubelet puts the Secret's key `token` (mode 0440, group of the user)."""
    folder = tmp_path / "secrets" / "git"
    folder.mkdir(parents=True)
    (folder / "token").write_text(TOKEN)
    (folder / "token").chmod(0o440)
    return folder / "token"


def test_hook_clones_with_the_users_token_and_the_server_gets_vscode_settings(
    remote: Remote, home: Path, server: GitHttpServer, token_file: Path
) -> None:
    url = server.url("pipelines.git")

    result, env = run_start_script(
        home,
        {
            "MLOPS_IDE_REPO_URL": url,
            "MLOPS_IDE_GIT_TOKEN_FILE": str(token_file),
            "MLOPS_IDE_USER_PYTHON": "/opt/pipeline-venv/bin/python",
        },
    )

    assert result.returncode == 0, result.stderr.decode()
    clone = home / "pipelines"
    assert git(clone, "rev-parse", "HEAD") == remote.head()
    assert env["CODE_WORKINGDIR"] == str(clone)
    assert env["MLOPS_IDE_WORKSPACE"] == str(clone)  # `python` and `mlops-ide` find the clone
    assert env["JUPYTER_VSCODE_PROXY_USE_SOCKET"] == "1"
    assert "EXTENSIONS_GALLERY" not in env  # code-server's own gallery, Open VSX, by default
    machine = json.loads((home / ".local/share/code-server/Machine/settings.json").read_text())
    assert machine == {"python.defaultInterpreterPath": "/opt/pipeline-venv/bin/python"}
    assert "mlops-ide dag check --pre-push" in (clone / ".git" / "hooks" / "pre-push").read_text()
    assert env["VSCODE_PROXY_URI"] == "/user/alice/proxy/{{port}}/"
    assert Path(env["CODE_SERVER_CONFIG"]).read_text().startswith("# Written by mlops-ide")
    assert "PYTHONPATH" not in env  # the hook's own path does not leak into the user's server
    # the token stays in the Secret's file: not in the clone's config, the status file or the logs
    assert TOKEN not in (clone / ".git" / "config").read_text()
    assert TOKEN not in (home / "sync-status.md").read_text()
    assert TOKEN.encode() not in result.stderr
    # and `git push` from VS Code's terminal works as the user, with the pod's environment
    mine = user_commit(clone, {"dags/mine.py": "# alice's DAG\n"}, "alice's DAG")
    push = subprocess.run(
        ["git", "push", "--quiet", "origin", "main"],
        cwd=clone,
        env={**os.environ, "MLOPS_IDE_GIT_TOKEN_FILE": str(token_file), "GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert push.returncode == 0, push.stderr
    assert remote.head() == mine


def test_hook_failure_never_stops_the_server(home: Path, silent_port: int, tmp_path: Path) -> None:
    (home / "notes.txt").write_text("the user's own file")
    url = f"http://127.0.0.1:{silent_port}/pipelines.git"  # a remote that hangs

    result, env = run_start_script(home, {"MLOPS_IDE_REPO_URL": url, "MLOPS_IDE_SYNC_TIMEOUT": "2"})

    assert result.returncode == 0
    assert b"server starts" in result.stderr
    assert env["CODE_WORKINGDIR"] == str(home)  # VS Code opens the home instead
    assert (home / "notes.txt").read_text() == "the user's own file"
    assert "not available" in (home / "sync-status.md").read_text()


def test_hook_survives_a_broken_python(home: Path, tmp_path: Path) -> None:
    result, env = run_start_script(home, {"MLOPS_IDE_STARTUP_DIR": str(tmp_path / "missing")})

    assert result.returncode == 0
    assert b"the start hook failed" in result.stderr and b"server starts" in result.stderr
    assert "CODE_WORKINGDIR" not in env


def test_export_output_is_only_shell_assignments(home: Path, remote: Remote) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "startup.start", "--export"],
        cwd=ROOT,
        env={**os.environ, "MLOPS_IDE_REPO_URL": remote.url, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(re.fullmatch(r"export [A-Z_]+=\S+", line) for line in lines), lines
    assert "mlops-ide sync: cloned" in result.stderr
