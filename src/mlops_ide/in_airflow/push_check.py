"""The push report: once a push is in, the local remote's post-receive hook
(mlops_ide/portable/push_hook.py) asks it what Airflow made of it.

    PYTHONPATH=LIB <airflow venv>/bin/python -P -m mlops_ide.in_airflow.push_check \
        --socket-fd FD --airflow-url URL \
        --passwords-file FILE --bundle pipelines --dag platform_smoke_test

Runs beside Airflow, as the pipeline's account: it reads Airflow's password and calls its
API. It never runs pushed code: whether pushed DAG files load is the sandbox's question
(mlops_ide/in_airflow/dag_sandbox.py). One request at a time, on a Unix socket the platform makes
(as root) in a folder only the git service's account and root can reach, and hands over
as --socket-fd (no password travels); one JSON line each way:

  {"live": COMMIT, "changed": [["M", "dags/x.py"]]} -> {"lines": ["live: x (at 1a2b3c4d5e6f)"]}
  {"skipped": COMMIT}                                -> {} (logged)

`live` moves Airflow's bundle to the commit (every DAG file re-parsed, so the next run of
any DAG records and runs it, also after a push of code outside dags/) and waits at most
--wait seconds for the verdict on each DAG file the push touched. Each answer is logged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import socketserver
import sys
import time
import urllib.error
from pathlib import Path

from mlops_ide.portable import dag_refresh

MAX_REQUEST_BYTES = 2**20


def log(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", flush=True)


# -- live: what Airflow made of the push ----------------------------------------------------


class Airflow:
    """Airflow's API as the platform's account, every call bounded by `deadline` (a push waits on it)."""

    def __init__(self, url: str, password: str, deadline: float):
        self.url = url.rstrip("/")
        self.deadline = deadline
        self.token = dag_refresh.login(self.url, dag_refresh.PLATFORM_ACCOUNT, password, self.left())

    def left(self) -> float:
        return max(0.2, self.deadline - time.monotonic())

    def get(self, path: str) -> dict:
        return dag_refresh.call("GET", f"{self.url}/api/v2/{path}", self.token, timeout=self.left())

    def put(self, path: str) -> dict:
        return dag_refresh.call("PUT", f"{self.url}/api/v2/{path}", self.token, timeout=self.left())


def live(args: argparse.Namespace, commit: str, changed: list[list[str]]) -> list[str]:
    """Move the bundle to `commit`, re-parse every DAG file, and say what each changed DAG
    file became; at most --wait seconds, whatever Airflow does."""
    started = time.monotonic()
    try:
        airflow = Airflow(args.airflow_url, airflow_password(args), started + args.wait)
        anchor = airflow.get(f"dags/{args.dag}/details")["file_token"]
        airflow.put(f"parseDagFile/{anchor}")  # the bundle moves to the pushed commit first
        for token in {
            dag["file_token"] for dag in bundle_dags(airflow, args.bundle) if not dag["is_stale"]
        } - {anchor}:
            with contextlib.suppress(urllib.error.HTTPError):  # its DAGs just went away
                airflow.put(f"parseDagFile/{token}")  # runs of any DAG use the commit at once
        dag_files = [(status, path) for status, path in changed if is_dag_file(path)]
        while True:
            verdict = verdicts(airflow, args.bundle, commit, dag_files)
            if verdict is not None or time.monotonic() >= airflow.deadline:
                break
            time.sleep(0.1)
    except (OSError, KeyError, ValueError, urllib.error.URLError) as error:
        return [f"cannot tell what is live ({error.__class__.__name__}); see {args.airflow_url}"]
    took = f"{time.monotonic() - started:.1f} s"
    if verdict is None:
        return [f"still parsing after {took}; see {args.airflow_url}/dags"]
    if not dag_files:
        return [f"next runs use {commit[:12]} (no DAG file changed; in {took})"]
    return [*verdict, f"Airflow runs {commit[:12]} (in {took})"]


def airflow_password(args: argparse.Namespace) -> str:
    return json.loads(args.passwords_file.read_text())[dag_refresh.PLATFORM_ACCOUNT]


def is_dag_file(path: str) -> bool:
    return path.startswith("dags/") and path.endswith(".py") and path.count("/") == 1


def bundle_dags(airflow: Airflow, bundle: str) -> list[dict]:
    dags = airflow.get("dags?limit=1000&exclude_stale=false")["dags"]
    return [dag for dag in dags if dag.get("bundle_name") == bundle]


def verdicts(
    airflow: Airflow, bundle: str, commit: str, dag_files: list[tuple[str, str]]
) -> list[str] | None:
    """One line per changed DAG file once Airflow has settled on `commit`, else None."""
    dags = bundle_dags(airflow, bundle)
    if any(not dag["is_stale"] and dag.get("bundle_version") != commit for dag in dags):
        return None  # some DAG still runs an older commit
    errors = {
        error["filename"]: error["stack_trace"]
        for error in airflow.get("importErrors?limit=1000")["import_errors"]
        if error.get("bundle_name") in (bundle, None)
    }
    lines = []
    for status, path in dag_files:
        name = path.removeprefix("dags/")
        of_file = [dag for dag in dags if (dag.get("relative_fileloc") or "") == name]
        error = next((text for file, text in errors.items() if file.endswith(name)), None)
        if status == "D":
            if any(not dag["is_stale"] for dag in of_file):
                return None
            lines += [f"removed: {dag['dag_id']}" for dag in of_file] or [f"removed: {path}"]
        elif error is not None:
            lines.append(f"{path}: import error: {error.strip().splitlines()[-1]}")
        elif of_file and all(not dag["is_stale"] for dag in of_file):
            lines += [f"live: {dag['dag_id']}" for dag in of_file]
        else:
            return None  # not parsed yet (or a file with no DAG in it: say so at the deadline)
    return lines


# -- the server -------------------------------------------------------------------------------


class Handler(socketserver.StreamRequestHandler):
    timeout = 30  # a connection that sends nothing does not hold the next push

    def handle(self) -> None:
        args = self.server.args
        try:
            request = json.loads(self.rfile.readline(MAX_REQUEST_BYTES))
            who = request.get("pusher", "?")
            if "live" in request:
                answer = {"lines": live(args, request["live"], request.get("changed", []))}
                log(f"push of {request['live'][:12]} by {who}: " + "; ".join(answer["lines"]))
            elif "skipped" in request:
                answer = {}
                why = request.get("why", "push option skip-dag-check")
                log(f"check of {request['skipped'][:12]} SKIPPED by {who} ({why})")
            else:
                answer = {"error": "unknown request"}
        except (OSError, ValueError, KeyError, urllib.error.URLError) as error:
            answer = {"lines": [f"the push check failed: {error!r}"]}
            log(f"request failed: {error!r}")
        self.wfile.write(json.dumps(answer).encode() + b"\n")


class Server(socketserver.UnixStreamServer):
    """On the listening socket the platform made and handed over (--socket-fd): this
    account cannot make or replace one where the hooks look."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        super().__init__("", Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = socket.socket(fileno=args.socket_fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket-fd", type=int, required=True, help="the listening socket, inherited")
    parser.add_argument("--airflow-url", required=True)
    parser.add_argument("--passwords-file", type=Path, required=True)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--dag", required=True, help="the anchor DAG whose re-parse refreshes the bundle")
    parser.add_argument("--wait", type=float, default=5.0, help="at most this long for Airflow's verdict")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Server(args) as server:
        log(f"reporting pushes on {server.socket.getsockname()}")
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
