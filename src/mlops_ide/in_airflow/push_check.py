"""The push report: once a push is in, the local remote's post-receive hook
(mlops_ide/portable/push_hook.py) asks it what Airflow made of it.

    PYTHONPATH=LIB <airflow venv>/bin/python -P -m mlops_ide.in_airflow.push_check \
        --socket-fd FD --airflow-url URL \
        --passwords-file FILE --bundle pipelines --dag platform_smoke_test \
        [--dags-folder dags] [--status-file FILE --branch main]

Runs beside Airflow, as the pipeline's account: it reads Airflow's password and calls its
API. It never runs pushed code: whether pushed DAG files load is the sandbox's question
(mlops_ide/in_airflow/dag_sandbox.py). One request at a time, on a Unix socket the platform makes
(as root) in a folder only the git service's account and root can reach, and hands over
as --socket-fd (no password travels); one JSON line each way:

  {"live": COMMIT, "changed": [["M", "dags/x.py"]]} -> {"lines": ["live: x (at 1a2b3c4d5e6f)"]}
  {"skipped": COMMIT}                                -> {} (logged)
  {"preview": {"branch": B, "commit": C, "pushed_by": P}} -> {"lines": ["preview: x__alice_lr (paused) URL"]}
  {"preview": {"branch": B, "commit": null, ...}}        -> {"lines": ["preview removed: B"]}
  {"previews_on_remote": {"branches": [B, ...], "listed": T}} -> {} (at every push)

`live` moves Airflow's bundle to the commit (every DAG file re-parsed, so the next run of
any DAG records and runs it, also after a push of code outside dags/) and waits at most
--wait seconds for the verdict on each DAG file the push touched. Each answer is logged,
and written to --status-file for `mlops-ide dag status` (mlops_ide/portable/push_status.py).
A preview's push or deletion (mlops_ide/portable/previews.py) updates the registry at
--previews-file (a slot taken, moved on or freed); for a push it then waits, at most --wait
seconds, until Airflow lists the DAGs of the preview's slot bundle at the pushed commit.
The hook sends the remote's preview branches with each (`remote`) and at every push
(`previews_on_remote`): a preview whose branch is gone loses its slot (a deletion whose
report was lost), one pushed after that list keeps it (reports arriving out of order).
A remote outside the platform has no hooks: remote_watch.py polls it and calls `live`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import socket
import socketserver
import sys
import time
import urllib.error
import urllib.parse
from pathlib import Path

from mlops_ide.portable import dag_folder, dag_refresh, previews, push_status

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
        refresh_bundle(airflow, args.bundle, args.dag)
        dag_files = [(status, path) for status, path in changed if is_dag_file(path, args.dags_folder)]
        while True:
            verdict = verdicts(airflow, args.bundle, commit, dag_files, args.dags_folder)
            if verdict is not None or time.monotonic() >= airflow.deadline:
                break
            time.sleep(0.1)
    except (OSError, KeyError, ValueError, urllib.error.URLError) as error:
        return [f"{CANNOT_TELL} ({error.__class__.__name__}); see {args.airflow_url}"]
    took = f"{time.monotonic() - started:.1f} s"
    if verdict is None:
        return [f"{STILL_PARSING} after {took}; see {args.airflow_url}/dags"]
    if not dag_files:
        return [f"next runs use {commit[:12]} (no DAG file changed; in {took})"]
    return [*verdict, f"Airflow runs {commit[:12]} (in {took})"]


CANNOT_TELL, STILL_PARSING, IMPORT_ERROR = "cannot tell what is live", "still parsing", "import error"


def state_of(lines: list[str]) -> str:
    """The verdict in a word, for the status file: live, broken, pending or unknown."""
    if any(line.startswith(CANNOT_TELL) for line in lines):
        return "unknown"
    if any(line.startswith(STILL_PARSING) for line in lines):
        return "pending"
    return "broken" if any(f": {IMPORT_ERROR}: " in line for line in lines) else "live"


def refresh_bundle(airflow: Airflow, bundle: str, anchor_dag: str) -> None:
    """Ask Airflow to re-parse the anchor's file (which refreshes the bundle first), or any
    DAG's of the bundle when a team's repository has no anchor, then every other DAG file
    (on a new bundle version Airflow only queues new files). A bundle with no DAG loaded
    yet has no file to name: Airflow's own refresh_interval picks the commit up."""
    dags = [dag for dag in bundle_dags(airflow, bundle) if not dag["is_stale"]]
    anchors = [dag["file_token"] for dag in dags if dag["dag_id"] == anchor_dag]
    tokens = list(dict.fromkeys(anchors + [dag["file_token"] for dag in dags]))
    for token in tokens:
        with contextlib.suppress(urllib.error.HTTPError):  # its DAGs just went away
            airflow.put(f"parseDagFile/{token}")  # the first moves the bundle to the commit


def airflow_password(args: argparse.Namespace) -> str:
    return json.loads(args.passwords_file.read_text())[dag_refresh.PLATFORM_ACCOUNT]


def is_dag_file(path: str, folder: str) -> bool:
    """A Python file of the DAG folder (repository paths, as the hook sends them)."""
    return path.endswith(".py") and dag_folder.in_folder(path, folder) is not None


def import_error_line(path: str, trace: str) -> str:
    """`dags/x.py:2: import error: ModuleNotFoundError: ...`: the last line of this file that
    Airflow's traceback names (the frames of what it imported come after), and the error."""
    name = re.escape(path.rsplit("/", 1)[-1])
    numbers = re.findall(rf'File "(?:[^"]*/)?{name}", line (\d+)', trace)
    where = f"{path}:{numbers[-1]}" if numbers else path
    last = trace.strip().splitlines()[-1] if trace.strip() else "(no message)"
    return f"{where}: {IMPORT_ERROR}: {last}"


def bundle_dags(airflow: Airflow, bundle: str) -> list[dict]:
    """The bundle's DAGs, stale ones too (Airflow 3.3 filters by bundle_name; checked here again)."""
    query = urllib.parse.urlencode({"limit": 1000, "exclude_stale": "false", "bundle_name": bundle})
    dags = airflow.get(f"dags?{query}")["dags"]
    return [dag for dag in dags if dag.get("bundle_name") == bundle]


def verdicts(
    airflow: Airflow, bundle: str, commit: str, dag_files: list[tuple[str, str]], folder: str
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
        name = dag_folder.in_folder(path, folder)  # Airflow's relative_fileloc
        of_file = [dag for dag in dags if (dag.get("relative_fileloc") or "") == name]
        same = (name, path)
        error = next((text for f, text in errors.items() if f in same or f.endswith(f"/{name}")), None)
        if status == "D":
            if any(not dag["is_stale"] for dag in of_file):
                return None
            lines += [f"removed: {dag['dag_id']}" for dag in of_file] or [f"removed: {path}"]
        elif error is not None:
            lines.append(import_error_line(path, error))
        elif any(not dag["is_stale"] for dag in of_file):  # a stale one: an id it had before
            lines += [f"live: {dag['dag_id']}" for dag in of_file if not dag["is_stale"]]
        else:
            return None  # not parsed yet (or a file with no DAG in it: say so at the deadline)
    return lines


# -- previews: a slot per preview branch ------------------------------------------------------


def preview(args: argparse.Namespace, request: dict) -> list[str]:
    """Record a preview's push (a slot taken or moved on) or deletion (its slot freed) in the
    registry; for a push, what Airflow lists of it. A push over a limit stays on the remote,
    not run: the answer says why (the hook refuses it first where it can count)."""
    branch, commit, pushed_by = (
        str(request["branch"]),
        request.get("commit"),
        str(request.get("pushed_by", "?")),
    )
    files = request.get("files") or []
    if not isinstance(files, list) or not all(isinstance(path, str) for path in files):
        raise ValueError("files: a list of repository paths")
    if args.previews_file is None or args.preview_slots == 0:
        return [f"previews are off on this platform: {branch} is not run"]
    entries = previews.read(args.previews_file)
    if "remote" in request:
        entries = on_remote(entries, request["remote"])
    if commit is None:
        if "remote" not in request:  # no list: the sender saw it deleted
            entries = previews.removed(entries, branch)
        previews.write(args.previews_file, entries)
        if previews.of_branch(entries, branch) is not None:
            return [f"{branch} was pushed again since: it keeps its slot"]
        return [f"preview removed: {branch}"]
    try:
        entries, entry = previews.pushed(
            entries, branch, str(commit), pushed_by, args.preview_slots, args.previews_per_person
        )
    except previews.NoSlot as refusal:
        return [f"preview not run: {refusal}"]
    previews.write(args.previews_file, entries)
    return preview_dags(args, entry, files)


def on_remote(entries: list[previews.Entry], remote: dict) -> list[previews.Entry]:
    """The registry without the previews whose branch the remote no longer has (the hook's
    list: {"branches": [...], "listed": seconds}), but those pushed after it was listed."""
    if not isinstance(remote, dict):
        raise ValueError("remote: {branches, listed}")
    branches, listed = remote.get("branches"), remote.get("listed")
    if not isinstance(branches, list) or not all(isinstance(b, str) for b in branches):
        raise ValueError("remote: branches, a list of branch names")
    if not isinstance(listed, (int, float)) or isinstance(listed, bool):
        raise ValueError("remote: listed, a time in seconds")
    return previews.reconciled(entries, set(branches), float(listed))


def reconcile(args: argparse.Namespace, remote: dict) -> list[str]:
    """At every push: free the slots of previews whose branch the remote no longer has."""
    if args.previews_file is None or args.preview_slots == 0:
        return []
    entries = previews.read(args.previews_file)
    kept = on_remote(entries, remote)
    if kept != entries:
        previews.write(args.previews_file, kept)
    return [f"preview removed: {entry.branch} (its branch is gone)" for entry in entries if entry not in kept]


def preview_dags(args: argparse.Namespace, entry: previews.Entry, files: list[str]) -> list[str]:
    """`preview: <dag id> (paused) <link>` for each DAG of the slot at the entry's commit, and
    the import error of each DAG file that has one, once Airflow has a verdict on every one of
    `files` (the branch's DAG files, as the hook lists them; none: the first DAG listed); at
    most --wait seconds (the slot's bundle refreshes itself every few seconds: a new branch has
    no file yet to ask Airflow to re-parse)."""
    started = time.monotonic()
    dag_files = [("A", path) for path in files if is_dag_file(path, args.dags_folder)]
    try:
        airflow = Airflow(args.airflow_url, airflow_password(args), started + args.wait)
        refresh_bundle(airflow, entry.slot, args.dag + entry.preview.suffix)  # a name, never refused
        while True:
            listed = preview_listed(airflow, entry, args.ui_url)
            settled = verdicts(airflow, entry.slot, entry.commit, dag_files, args.dags_folder)
            if not dag_files:
                settled = listed or None
            if settled is not None or time.monotonic() >= airflow.deadline:
                break
            time.sleep(0.2)
        errors = [
            line for line in settled or slot_errors(airflow, entry.slot) if f": {IMPORT_ERROR}: " in line
        ]
    except (OSError, KeyError, ValueError, urllib.error.URLError) as error:
        why = error.__class__.__name__
        return [f"{entry.branch} is in {entry.slot}; {CANNOT_TELL} ({why}); see {args.ui_url}/dags"]
    if settled is None:
        took = f"{time.monotonic() - started:.1f} s"
        return [
            *listed,
            *errors,
            f"{entry.branch} is in {entry.slot}; {STILL_PARSING} after {took}; see {args.ui_url}/dags",
        ]
    return [*listed, *errors]


def preview_listed(airflow: Airflow, entry: previews.Entry, ui_url: str) -> list[str]:
    """A line per DAG Airflow lists of the slot, once every one is the entry's, at its commit."""
    dags = [dag for dag in bundle_dags(airflow, entry.slot) if not dag["is_stale"]]
    if any(
        dag.get("bundle_version") != entry.commit or not dag["dag_id"].endswith(entry.preview.suffix)
        for dag in dags
    ):
        return []
    lines = []
    for dag in sorted(dags, key=lambda dag: dag["dag_id"]):
        paused = "paused" if dag.get("is_paused") else "NOT paused"
        lines.append(f"preview: {dag['dag_id']} ({paused}) {ui_url}/dags/{dag['dag_id']}")
    return lines


def slot_errors(airflow: Airflow, slot: str) -> list[str]:
    """The slot's import errors, once Airflow has not listed a DAG in time (the likely why)."""
    return [
        import_error_line(error["filename"], error["stack_trace"])
        for error in airflow.get("importErrors?limit=1000")["import_errors"]
        if error.get("bundle_name") == slot
    ]


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
                record(args, request["live"], answer["lines"])
            elif "preview" in request:
                answer = {"lines": preview(args, request["preview"])}
                log(f"preview {request['preview'].get('branch')} by {who}: " + "; ".join(answer["lines"]))
            elif "previews_on_remote" in request:
                answer = {"lines": reconcile(args, request["previews_on_remote"])}
                if answer["lines"]:
                    log(f"push by {who}: " + "; ".join(answer["lines"]))
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


def record(args: argparse.Namespace, commit: str, lines: list[str]) -> None:
    """The verdict in the status file users' `mlops-ide dag status` reads (if one is kept)."""
    if args.status_file is None:
        return
    try:
        push_status.write(args.status_file, push_status.make(args.branch, commit, state_of(lines), lines))
    except (OSError, ValueError) as error:
        log(f"cannot write {args.status_file}: {error!r}")


def add_airflow_arguments(parser: argparse.ArgumentParser) -> None:
    """What `live` needs: Airflow, its bundle, where the verdict goes (remote_watch too)."""
    parser.add_argument("--airflow-url", required=True)
    parser.add_argument("--passwords-file", type=Path, required=True)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--dag", required=True, help="the anchor DAG whose re-parse refreshes the bundle")
    parser.add_argument("--dags-folder", type=dag_folder.parse, default=dag_folder.DEFAULT)
    parser.add_argument("--wait", type=float, default=5.0, help="at most this long for Airflow's verdict")
    parser.add_argument("--status-file", type=Path, help="write each verdict there (push_status.py)")
    parser.add_argument("--branch", default="main", help="the tracked branch, named in the status file")
    parser.add_argument("--ui-url", help="Airflow's UI as users reach it (links); --airflow-url if not given")
    parser.add_argument("--previews-file", type=Path, help="the previews' registry (previews.py); none: off")
    parser.add_argument("--preview-slots", type=int, default=0, help="Airflow's preview bundles preview-1..N")
    parser.add_argument("--previews-per-person", type=int, default=3)
    parser.add_argument(
        "--preview-days", type=float, default=7, help="a preview nobody pushed to this long goes"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket-fd", type=int, required=True, help="the listening socket, inherited")
    add_airflow_arguments(parser)
    args = parser.parse_args(argv)
    args.ui_url = (args.ui_url or args.airflow_url).rstrip("/")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Server(args) as server:
        log(f"reporting pushes on {server.socket.getsockname()}")
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
