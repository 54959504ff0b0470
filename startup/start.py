"""The single-user start wrapper: sync the pipeline repository, prepare VS Code, then
become `jupyterhub-singleuser`.

    python -m startup.start [jupyterhub-singleuser arguments]   (local mode)
    eval "$(python -m startup.start --export)"                    (the image's start hook)

With --export it does the same work and prints the server's environment as `export`
lines for the shell that sources it (docker-stacks' start.sh runs the hooks in
before-notebook.d, then starts the server itself); its messages go to stderr.

A failed sync never stops the server from starting: the user gets VS Code with whatever
is there, and the status file says what went wrong.
"""

from __future__ import annotations

import os
import shlex
import sys
import traceback
from pathlib import Path

from startup import git_hooks, vscode, vscode_early
from startup.sync import STATUS_FILE_NAME, repo_name, sync

SINGLEUSER = "jupyterhub-singleuser"


def sync_repository(home: Path) -> Path | None:
    """Clone or update the repository; return its folder when there is one."""
    url = os.environ.get("MLOPS_IDE_REPO_URL", "").strip()
    if not url:
        print("mlops-ide start: MLOPS_IDE_REPO_URL is not set; no repository to sync", file=sys.stderr)
        return None
    try:
        dest = home / repo_name(url)
        sync(
            url,
            os.environ.get("MLOPS_IDE_REPO_BRANCH") or "main",
            dest,
            timeout=float(os.environ.get("MLOPS_IDE_SYNC_TIMEOUT") or 60),
            user=os.environ.get("JUPYTERHUB_USER"),
            status_file=home / STATUS_FILE_NAME,
        )
    except Exception:  # the server must start whatever happens here
        traceback.print_exc()
        return None
    return dest if (dest / ".git").exists() else None


def prepare(home: Path) -> dict[str, str]:
    """Sync the repository, add the DAG check to its pushes, write VS Code's config; return
    the variables the server needs."""
    repository = sync_repository(home)
    env = {"MLOPS_IDE_WORKSPACE": str(repository)} if repository else {}
    try:
        if repository:
            git_hooks.install_pre_push(repository)
        env.update(vscode.prepare(home, repository or home))
    except OSError:
        traceback.print_exc()
    return env


def server_environment() -> dict[str, str]:
    """Prepare the home (`prepare`), then the server's environment: ours with what that
    adds, without PYTHONPATH."""
    home = Path(os.environ.get("HOME") or Path.home())
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # it pointed at this checkout for us, not for the user's code
    env.update(prepare(home))
    env[vscode_early.EARLY] = "1"  # code-server starts with the server (startup/vscode_early.py)
    return env


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    home = Path(os.environ.get("HOME") or Path.home())
    if args == ["--export"]:
        # Only the export lines may reach stdout (the shell evals it): git and every other
        # child write to stderr meanwhile.
        stdout = os.dup(1)
        os.dup2(2, 1)
        try:
            env = prepare(home)
        finally:
            sys.stdout.flush()
            os.dup2(stdout, 1)
        for name, value in env.items():
            print(f"export {name}={shlex.quote(value)}")
        return
    # startup/preloaded_server.py runs the server in place of this exec
    os.execvpe(SINGLEUSER, [SINGLEUSER, *args], server_environment())


if __name__ == "__main__":
    main()
