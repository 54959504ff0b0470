"""What Airflow made of the last push to the tracked branch: a small JSON file the push check
writes after each verdict (mlops_ide/in_airflow/push_check.py for the local remote's pushes,
remote_watch.py for a remote outside the platform) and `mlops-ide dag status` reads in a
user's server (mlops_ide/workspace/dag_status.py), at the path MLOPS_IDE_PUSH_STATUS_FILE.

    {"branch": "main", "commit": "<40 hex>", "when": 1733360000.0,
     "state": "live" | "broken" | "pending" | "unknown", "lines": ["live: x", ...]}

It holds DAG ids and import errors (what every Airflow user sees anyway), never a token or a
password: every user's account reads it, only the pipeline's writes it (the folder is its).
Standard library only: Airflow's side and the user's side import it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

ENV = "MLOPS_IDE_PUSH_STATUS_FILE"  # where user servers find it (the local spawner sets it)
MAX_BYTES = 256 * 1024  # a verdict is a few lines; a bigger file is not ours
MAX_LINES = 200
STATES = ("live", "broken", "pending", "unknown")
COMMIT = re.compile(r"[0-9a-f]{40}")


class BadStatus(ValueError):
    """The file is missing, too big or not a status: the message says what to do."""


def make(branch: str, commit: str, state: str, lines: list[str]) -> dict:
    if state not in STATES or not COMMIT.fullmatch(commit):
        raise ValueError(f"not a push status: state {state!r}, commit {commit!r}")
    lines = lines[:MAX_LINES]
    return {"branch": branch, "commit": commit, "when": time.time(), "state": state, "lines": lines}


def write(path: Path, status: dict) -> None:
    """Atomically (a reader sees the old file or the new one), readable by every account."""
    text = json.dumps(status, indent=1) + "\n"
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            os.fchmod(out.fileno(), 0o644)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def read(path: Path) -> dict:
    """The status at `path`, checked field by field; BadStatus says what is wrong."""
    try:
        with open(path, "rb") as source:
            raw = source.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise BadStatus(f"{path} does not exist: Airflow has not given a verdict on any push yet") from None
    except OSError as error:
        raise BadStatus(f"cannot read {path} ({error.strerror}): ask the platform's operator") from None
    if len(raw) > MAX_BYTES:
        raise BadStatus(f"{path} is over {MAX_BYTES} bytes: it is not a push status; ask the operator")
    try:
        status = json.loads(raw)
    except ValueError:
        raise BadStatus(f"{path} is not JSON: it is not a push status; ask the operator") from None
    if not (
        isinstance(status, dict)
        and isinstance(status.get("commit"), str)
        and COMMIT.fullmatch(status["commit"])
        and status.get("state") in STATES
        and isinstance(status.get("branch"), str)
        and isinstance(status.get("when"), (int, float))
        and isinstance(status.get("lines"), list)
        and all(isinstance(line, str) for line in status["lines"])
    ):
        raise BadStatus(f"{path} is not a push status (a field is missing or wrong); ask the operator")
    return status
