"""`mlops-ide dag status [--wait SECONDS]`: which commit of the tracked branch Airflow runs,
what it made of it (`live: <dag_id>`, or a DAG file's import error with file:line), and
whether your push is in it yet. Run in a user's server, in your clone.

    $ git push && mlops-ide dag status --wait 30
    Airflow runs main at 1a2b3c4d5e6f (its verdict 2 s ago):
      live: daily_report
    your push 1a2b3c4d5e6f is live

It reads the status file the platform's push check writes after each verdict
(MLOPS_IDE_PUSH_STATUS_FILE, mlops_ide/portable/push_status.py): after a push to the local
remote, or, for a remote outside the platform (GitHub), when its watch sees the new commit
(within seconds, whoever pushed). "Your push" is your clone's `origin/<branch>` (what your
last push or fetch left); a HEAD not pushed yet is named too.

Exit codes:
    0  your push is in Airflow and every DAG file it changed loads (live)
    1  your push is in Airflow and a DAG file does not load (the lines say file:line)
    2  usage, or no status to read (no clone, no status file, a corrupt one)
    3  not yet: your push is not in Airflow yet, or Airflow is still parsing it
       (with --wait: still so when the time was up)
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from mlops_ide.portable import push_status

LIVE, BROKEN, USAGE, NOT_YET = 0, 1, 2, 3
POLL = 0.5  # seconds between reads of the status file while waiting


class StatusError(Exception):
    """Nothing to compare: the message says what to do (exit 2)."""


def git(clone: Path, *args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=clone, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def clone_of(start: Path) -> Path:
    """The git clone holding `start`, else MLOPS_IDE_WORKSPACE's (the start wrapper's)."""
    for candidate in (start, Path(os.environ.get("MLOPS_IDE_WORKSPACE") or start)):
        top = git(candidate, "rev-parse", "--show-toplevel") if candidate.is_dir() else None
        if top:
            return Path(top)
    raise StatusError(f"{start} is not in a git clone: cd into your clone of the pipeline repository")


def status_path() -> Path:
    raw = os.environ.get(push_status.ENV)
    if not raw:
        raise StatusError(
            f"{push_status.ENV} is not set: this server does not know where Airflow's verdicts are "
            "(the platform's local mode sets it; elsewhere, see Airflow's UI)"
        )
    return Path(raw)


def yours(clone: Path, branch: str) -> tuple[str | None, str | None]:
    """Your clone's origin/<branch> (what you pushed or fetched last) and HEAD."""
    return git(clone, "rev-parse", "--verify", "--quiet", f"origin/{branch}^{{commit}}"), git(
        clone, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"
    )


def contains(clone: Path, newer: str, commit: str) -> bool:
    """Whether Airflow's commit `newer` has `commit` in its history (as far as the clone knows)."""
    done = subprocess.run(
        ["git", "merge-base", "--is-ancestor", commit, newer], cwd=clone, capture_output=True
    )
    return done.returncode == 0


def judge(status: dict, pushed: str | None, clone: Path) -> tuple[int, str]:
    """The exit code, and what it means for your push."""
    airflows, state = status["commit"], status["state"]
    if pushed is None:
        return USAGE, f"your clone has no origin/{status['branch']}: `git fetch` (or push) first"
    if pushed != airflows and not contains(clone, airflows, pushed):
        return NOT_YET, f"your push {pushed[:12]} is not in Airflow yet"
    subject = f"your push {pushed[:12]}"
    if pushed != airflows:
        subject += f" is in Airflow's newer {airflows[:12]}, which"
    if state in ("pending", "unknown"):
        return NOT_YET, f"{subject} is in Airflow, still being parsed"
    if state == "broken":
        return BROKEN, f"{subject} is in Airflow, and a DAG file does not load (above)"
    return LIVE, f"{subject} is live"


def show(status: dict) -> None:
    ago = max(0, round(time.time() - status["when"]))
    print(f"Airflow runs {status['branch']} at {status['commit'][:12]} (its verdict {ago} s ago):")
    for line in status["lines"]:
        print(f"  {line}")


def status(wait: float = 0.0, start: Path | None = None) -> int:
    """Print the verdict and compare it with your clone; with `wait`, read again until your
    push's verdict is there or the time is up."""
    try:
        clone, path = clone_of(start or Path.cwd()), status_path()
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                current = push_status.read(path)
            except push_status.BadStatus as error:
                missing = not path.exists()
                if not missing or time.monotonic() >= deadline:
                    raise StatusError(str(error)) from None
                time.sleep(POLL)  # no verdict yet: the platform's first one is coming
                continue
            pushed, head = yours(clone, current["branch"])
            code, meaning = judge(current, pushed, clone)
            if code != NOT_YET or time.monotonic() >= deadline:
                break
            time.sleep(POLL)
    except StatusError as error:
        print(f"mlops-ide: {error}", flush=True)
        return USAGE
    show(current)
    print(meaning)
    if head and pushed and head != pushed:
        print(f"(your HEAD {head[:12]} is not pushed: origin/{current['branch']} is {pushed[:12]})")
    if code == NOT_YET and wait:
        print(f"waited {wait:g} s; run `mlops-ide dag status --wait 30` again, or see Airflow's UI")
    return code
