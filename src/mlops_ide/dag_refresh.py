"""Ask Airflow to re-parse the DAG bundle now, at each push to the tracked branch.

In local mode it runs beside Airflow (`--watch`, started by the supervisor as the
platform's own account): it watches the bare remote's branch and asks Airflow at each
new commit. Not a post-receive hook: a hook runs as the pushing user, who must not hold
Airflow's admin password. On Kubernetes the push webhook calls `refresh()`.

Airflow 3 has no "refresh bundle" call, but a request to re-parse any one file of a
bundle refreshes the whole bundle first, and new files go to the front of the queue. So
we name a small always-valid DAG of the bundle (the anchor) and ask for its file:

    POST /auth/token                        -> a token for the admin user
    GET  /api/v2/dags/<anchor>/details      -> the anchor's file_token
    PUT  /api/v2/parseDagFile/<file_token>  -> the bundle is refreshed and parsed

(Edited files show within a second too, because the platform sets Airflow's
min_serialized_dag_update_interval to 0; see services/airflow.py.)

Standard library only. One log line per push.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import stat
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def call(method: str, url: str, token: str | None = None, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else {}


def refresh(airflow_url: str, username: str, password: str, anchor_dag: str) -> None:
    token = call("POST", f"{airflow_url}/auth/token", body={"username": username, "password": password})
    details = call("GET", f"{airflow_url}/api/v2/dags/{anchor_dag}/details", token["access_token"])
    call("PUT", f"{airflow_url}/api/v2/parseDagFile/{details['file_token']}", token["access_token"])


def read_ref(git_dir: Path, branch: str) -> str | None:
    """The commit of a branch of a bare repository, read as git stores it: a loose ref file,
    else a line of packed-refs. Users may write the repository and this runs as the
    platform's account: a link, a FIFO or a huge file is not followed, waited on or read."""
    loose = read_small_file(git_dir / "refs" / "heads" / branch)
    if loose is not None:
        return loose.strip() or None
    wanted = f"refs/heads/{branch}"
    packed = (read_small_file(git_dir / "packed-refs", 1 << 20) or "").splitlines()
    return next((line.split()[0] for line in packed if line.endswith(" " + wanted)), None)


def read_small_file(path: Path, limit: int = 4096) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return handle.read(limit).decode("ascii", errors="replace")


def ask(args: argparse.Namespace, what: str) -> bool:
    """One refresh, one log line."""
    started = time.monotonic()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        password = json.loads(args.passwords_file.read_text())[args.user]
        refresh(args.airflow_url.rstrip("/"), args.user, password, args.dag)
    except (OSError, KeyError, ValueError, urllib.error.URLError) as error:
        reason = f"HTTP {error.code}" if isinstance(error, urllib.error.HTTPError) else repr(error)
        print(
            f"{stamp} {what}: could not ask Airflow to re-parse ({reason}); it will pick the "
            f"push up at its next bundle refresh",
            flush=True,
        )
        return False
    print(
        f"{stamp} {what}: Airflow re-parsing the bundle (asked in {time.monotonic() - started:.2f}s)",
        flush=True,
    )
    return True


def watch(args: argparse.Namespace, poll: float = 0.1) -> None:
    """Until stopped: at each new commit of the branch, ask Airflow once."""
    seen = read_ref(args.watch, args.branch)
    print(f"watching {args.watch} branch {args.branch} (at {(seen or 'nothing')[:12]})", flush=True)
    while True:
        time.sleep(poll)
        now = read_ref(args.watch, args.branch)
        if now and now != seen:
            seen = now
            ask(args, f"push of {now[:12]} to {args.branch}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--airflow-url", required=True)
    parser.add_argument("--passwords-file", type=Path, required=True)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--dag", required=True, help="the anchor DAG whose file is re-parsed")
    parser.add_argument("--watch", type=Path, help="a bare repository: ask at each push to --branch")
    parser.add_argument("--branch", default="main")
    args = parser.parse_args(argv)
    if args.watch:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            watch(args)
        return 0
    return 0 if ask(args, "refresh") else 1


if __name__ == "__main__":
    sys.exit(main())
