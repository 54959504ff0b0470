"""The push check: the local remote's hooks (mlops_ide/push_hook.py) ask it whether the
pushed DAG files load, and, once a push is in, what Airflow made of it.

    <airflow venv>/bin/python src/mlops_ide/push_check.py --socket-fd FD --airflow-url URL \
        --passwords-file FILE --bundle pipelines --dag platform_smoke_test

Runs beside Airflow, as the pipeline's account (it runs pushed DAG code, as Airflow does),
warm: Airflow is imported once, and each check runs in a forked child (network blocked, no
metadata database, a time limit) that imports every DAG file as dag_check.py does and ends
with it, so nothing one push's DAG does stays for the next. One request at a time, on a
Unix socket the platform makes (as root) in a folder only the git service's account and
root can reach, and hands over as --socket-fd (no password travels); one JSON line each way:

  {"check": COMMIT, "files": {"dags/x.py": BASE64}, "only": ["dags/x.py"] (optional)}
                                                     -> {"problems": ["dags/x.py:3: ..."]}
      (a line per DAG file that would not load, "dags/<file>.py:<line>: <error>")
  {"live": COMMIT, "changed": [["M", "dags/x.py"]]} -> {"lines": ["live: x (at 1a2b3c4d5e6f)"]}
  {"skipped": COMMIT}                                -> {} (logged)

`live` moves Airflow's bundle to the commit (every DAG file re-parsed, so the next run of
any DAG records and runs it, also after a push of code outside dags/) and waits at most
--wait seconds for the verdict on each DAG file the push touched. Each answer is logged.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import select
import signal
import socket
import socketserver
import sys
import tempfile
import time
import urllib.error
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings
import dag_check
import dag_refresh

CHECK_SECONDS = 30.0  # the whole check; each file has Airflow's own import timeout below it
FILE_IMPORT_SECONDS = "20"
MAX_REQUEST_BYTES = 32 * 2**20


def log(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", flush=True)


# -- the check: in a forked child ---------------------------------------------------------


def write_files(files: dict[str, str], root: Path) -> Path:
    """The pushed dags/ as files under `root`; a path that would leave it is refused."""
    for name, content in files.items():
        parts = PurePosixPath(name).parts
        if (
            not parts
            or parts[0] != "dags"
            or any(part in ("", ".", "..") for part in parts)
            or name.startswith("/")
        ):
            raise ValueError(f"not a path under dags/: {name!r}")
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(content))
    return root / "dags"


def problem_lines(results: list[dict]) -> list[str]:
    """One line per DAG file that would not load: `dags/<file>.py:<line>: <error>`."""
    return [
        f"dags/{r['file']}:{r['line']}: {r['error']}" if r["line"] else f"dags/{r['file']}: {r['error']}"
        for r in results
        if r["error"]
    ]


def run_check(files: dict[str, str], only: list[str] | None = None, keep_from_child: tuple = ()) -> dict:
    """Every DAG file of the pushed dags/ (or those named in `only`) imported in a child;
    its problems, one line each. The child (which runs the pushed code) gets none of the
    server's sockets (`keep_from_child`) and a session of its own, and its whole process
    group is killed when it is done: nothing it starts outlives the check."""
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 0
        try:
            os.setsid()
            for sock in keep_from_child:
                sock.close()
            os.close(readable)
            dag_check.block_network()
            with tempfile.TemporaryDirectory(prefix="push-check-") as tmp:
                folder = write_files(files, Path(tmp))
                chosen = None if only is None else {PurePosixPath(name).name for name in only}
                results = dag_check.check(folder, chosen) if folder.is_dir() else []
            answer = {
                "problems": problem_lines(results),
                "broken": broken(results),
                "summary": summary(results),
            }
        except BaseException as error:
            answer, code = {"problems": [f"the check itself failed: {error!r}"]}, 1
        with os.fdopen(writable, "w") as out:
            out.write(json.dumps(answer))
        os._exit(code)
    os.close(writable)
    return read_child(child, readable)


def read_child(child: int, readable: int) -> dict:
    """The child's answer, once it has exited (a process it left behind may hold the pipe
    open: its end is not waited for), or a problem after CHECK_SECONDS."""
    deadline = time.monotonic() + CHECK_SECONDS
    data, reaped = b"", False
    try:
        while True:
            ready, _, _ = select.select([readable], [], [], 0.05)
            if ready:
                chunk = os.read(readable, 65536)
                if not chunk:
                    break
                data += chunk
            elif reaped:
                break  # it has exited and said all it had
            elif os.waitpid(child, os.WNOHANG)[0]:
                reaped = True
            elif time.monotonic() > deadline:
                late = f"dags/: the check took over {CHECK_SECONDS:.0f} s (a DAG doing work at import?)"
                return {"problems": [late], "broken": ["dags/"]}
    finally:
        os.close(readable)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)  # the child and all it started, in its session
        if not reaped:
            os.waitpid(child, 0)
    return (
        json.loads(data) if data else {"problems": ["the check ended without an answer"], "broken": ["dags/"]}
    )


def broken(results: list[dict]) -> list[str]:
    """The DAG files of `problem_lines`, in the same order."""
    return [f"dags/{r['file']}" for r in results if r["error"]]


def summary(results: list[dict]) -> str:
    dags = sum(len(r["dags"]) for r in results)
    return f"{len(results)} DAG file(s), {dags} DAG(s)"


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
            if "check" in request:
                sockets = (self.server.socket, self.request)
                answer = run_check(request.get("files", {}), request.get("only"), sockets)
                outcome = f"{len(answer['problems'])} problem(s)" if answer["problems"] else "passed"
                log(f"check of {request['check'][:12]} pushed by {who}: {outcome}")
                for problem in answer["problems"]:
                    log(f"  {problem}")
            elif "live" in request:
                answer = {"lines": live(args, request["live"], request.get("changed", []))}
                log(f"push of {request['live'][:12]} by {who}: " + "; ".join(answer["lines"]))
            elif "skipped" in request:
                answer = {}
                why = request.get("why", "push option skip-dag-check")
                log(f"check of {request['skipped'][:12]} SKIPPED by {who} ({why})")
            else:
                answer = {"error": "unknown request"}
        except (OSError, ValueError, KeyError, urllib.error.URLError) as error:
            answer = {"problems": [], "broken": [], "lines": [f"the push check failed: {error!r}"]}
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
    dag_check.block_database()
    os.environ["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = FILE_IMPORT_SECONDS
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"  # the push log: a line per check and per push
    import airflow.sdk  # noqa: F401 - paid once, not at each push
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Server(args) as server:
        log(f"checking pushes on {server.socket.getsockname()}")
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
