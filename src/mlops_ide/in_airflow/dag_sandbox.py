"""The DAG check's sandbox: the local remote's pre-receive hook (mlops_ide/portable/push_hook.py)
asks it whether the pushed DAG files load. It runs the pushed code, so it holds nothing.

    PYTHONPATH=LIB <airflow venv>/bin/python -s -P -m mlops_ide.in_airflow.dag_sandbox \
        --socket-fd FD --work FOLDER --dags-folder dags

As root the platform starts it (machine/components/airflow.py:dag_sandbox) as the account
`mlops-ide-dagcheck`, in no group that reads a secret, with a minimal environment (no
token), in a network namespace of its own with no interface up (no connection to
anything, from any process it starts) and a PID namespace of its own, of which it is the
first process. Warm: Airflow is imported once; each check is a forked child that imports
the DAG files as dag_check.py does, under CPU, memory, file-size and process caps, with a
tmp folder of its own, within CHECK_SECONDS; after each check every other process of the
namespace is killed (whatever the pushed code forked, in any session) and the folder is
removed. The server cannot be traced by what it runs (not dumpable).

Without root (no accounts, no namespaces) it runs as the platform's user with the network
blocked in Python only and says so in its log: the pushed code could read what that user
reads.

One request at a time, on a Unix socket the platform makes and hands over (--socket-fd);
one JSON line each way, files named by their path in the repository (the DAG folder,
--dags-folder, is MLOPS_IDE_DAGS_FOLDER: `dags` below, or a sub-folder, or `.`):

  {"check": COMMIT, "files": {"dags/x.py": BASE64}, "only": ["dags/x.py"] (optional)}
      -> {"problems": ["dags/x.py:3: ..."], "broken": ["dags/x.py"], "summary": "..."}
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import socket
import socketserver
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

from mlops_ide.portable import airflow3_upgrade, dag_check, dag_folder

CHECK_SECONDS = 30.0  # the whole check; each file has Airflow's own import timeout below it
FILE_IMPORT_SECONDS = "20"
MAX_REQUEST_BYTES = 32 * 2**20
MAX_ANSWER_BYTES = 4 * 2**20
# What one check may use (the child and all it starts): DAG files import cheap code.
LIMITS = {
    resource.RLIMIT_CPU: 30,  # seconds of CPU
    resource.RLIMIT_AS: 2 * 2**30,  # bytes of memory (Airflow imported: ~150 MB)
    resource.RLIMIT_FSIZE: 64 * 2**20,  # bytes per file written
    resource.RLIMIT_NPROC: 64,  # processes of the account
    resource.RLIMIT_NOFILE: 256,
}
PR_SET_DUMPABLE = 4
WHOLE_CHECK = "(the DAG folder)"  # what "broken" names when the check as a whole failed


def log(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", flush=True)


def write_files(files: dict[str, str], root: Path, folder: str) -> Path:
    """The pushed DAG folder as files under `root`; a path that would leave it (or is not
    in the DAG folder) is refused. Returns the DAG folder there."""
    for name, content in files.items():
        parts = PurePosixPath(name).parts
        if (
            not parts
            or dag_folder.in_folder(name, folder) is None
            or any(part in ("", ".", "..") for part in parts)
            or name.startswith("/")
            or "\\" in name
        ):
            raise ValueError(f"not a path under the DAG folder {dag_folder.prefix(folder) or './'}: {name!r}")
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(content))
    return root.joinpath(*PurePosixPath(folder).parts)


def problem_lines(results: list[dict], folder: str) -> list[str]:
    """One problem per DAG file that would not load: `dags/<file>.py:<line>: <error>`, and
    how to set what it reads from Airflow at parse time, when that is what it lacks."""
    lines = []
    for r in results:
        if r["error"]:
            where = dag_folder.in_repository(r["file"], folder) + (f":{r['line']}" if r["line"] else "")
            to_set = dag_check.what_to_set(r["error"])
            lines.append(f"{where}: {r['error']}" + (f"\n  {to_set}" if to_set else ""))
    return lines


def with_upgrade_hints(problems: list[str], results: list[dict], dags: Path, folder: str) -> list[str]:
    """Each problem with what Airflow 3 changed in its file under it (ruff's AIR rules, as
    `mlops-ide dag check` prints them), on the lines after the problem's own."""
    failing = [r for r in results if r["error"]]
    try:
        found = airflow3_upgrade.hints([dags / r["file"] for r in failing], dags)
    except airflow3_upgrade.UpgradeError:
        return problems  # the problems are said all the same
    said = []
    for problem, result in zip(problems, failing, strict=True):
        command = f"mlops-ide dag upgrade {dag_folder.in_repository(result['file'], folder)}"
        hints = airflow3_upgrade.hint_lines(
            found.get((dags / result["file"]).resolve(), []), result["line"], command
        )
        said.append("\n".join([problem, *hints]))
    return said


def broken(results: list[dict], folder: str) -> list[str]:
    """The DAG files of `problem_lines`, in the same order."""
    return [dag_folder.in_repository(r["file"], folder) for r in results if r["error"]]


def summary(results: list[dict]) -> str:
    dags = sum(len(r["dags"]) for r in results)
    return f"{len(results)} DAG file(s), {dags} DAG(s)"


def sandboxed() -> bool:
    """Whether this process is the first of a PID namespace of its own, as an account that
    is not root: then every other process it may signal is one a check left."""
    return os.getpid() == 1 and os.getuid() != 0


def run_check(
    files: dict[str, str], work: Path, dags_folder: str, only: list[str] | None = None, close: tuple = ()
) -> dict:
    """Every DAG file of the pushed DAG folder (or those named in `only`) imported in a child,
    in a folder of its own under `work`; its problems, one line each. The child gets none of
    the server's sockets (`close`), a session of its own and the caps of LIMITS; once it is
    done, all it started is killed and its folder removed."""
    where = Path(tempfile.mkdtemp(prefix="check-", dir=work))
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 0
        try:
            os.setsid()
            for sock in close:  # detached first: a file made from it (makefile) keeps it open
                os.close(sock.detach())
            quiet = os.open(os.devnull, os.O_WRONLY)  # the log is the server's: no line forged into it
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            os.close(readable)
            for limit, value in LIMITS.items():
                resource.setrlimit(limit, (value, value))
            os.environ.update(HOME=str(where), TMPDIR=str(where))
            tempfile.tempdir = str(where)
            dag_check.block_network()  # a clear message; the namespace is what holds
            dags = write_files(files, where, dags_folder)
            chosen = None if only is None else {dag_folder.in_folder(name, dags_folder) for name in only}
            results = dag_check.check(dags, chosen) if dags.is_dir() else []
            answer = {
                "problems": with_upgrade_hints(
                    problem_lines(results, dags_folder), results, dags, dags_folder
                ),
                "broken": broken(results, dags_folder),
                "summary": summary(results),
            }
        except BaseException as error:
            answer, code = {"problems": [f"the check itself failed: {error!r}"]}, 1
        with os.fdopen(writable, "w") as out:
            out.write(json.dumps(answer))
        os._exit(code)
    os.close(writable)
    try:
        return read_child(child, readable)
    finally:
        end_leftovers(child)
        reset_work(work)


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
                if len(data) > MAX_ANSWER_BYTES:  # the checked code writes it: it may not fill our memory
                    return {"problems": ["the check answered too much"], "broken": [WHOLE_CHECK]}
            elif reaped:
                break  # it has exited and said all it had
            elif os.waitpid(child, os.WNOHANG)[0]:
                reaped = True
            elif time.monotonic() > deadline:
                late = (
                    f"the DAG folder: the check took over {CHECK_SECONDS:.0f} s (a DAG doing work at import?)"
                )
                return {"problems": [late], "broken": [WHOLE_CHECK]}
    finally:
        os.close(readable)
    try:
        return (
            json.loads(data)
            if data
            else {"problems": ["the check ended without an answer"], "broken": [WHOLE_CHECK]}
        )
    except ValueError:
        return {"problems": ["the check answered nonsense"], "broken": [WHOLE_CHECK]}


def end_leftovers(child: int) -> None:
    """Every process the check started is killed and reaped. Sandboxed, that is every other
    process of the namespace (kill -1 spares the caller), whatever session it made; else the
    child's process group only (what called setsid() there escapes: the log says so)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child, signal.SIGKILL)
    if sandboxed():
        while True:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                break  # none left
            while True:  # orphans are ours (the namespace's first process): reap them all
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    break
    else:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)


def reset_work(work: Path) -> None:
    """The work folder as at start, this account's alone and empty but for an empty Airflow
    home: a check writes as this account, and what it left there (an Airflow plugin, say)
    could change the verdict on later pushes."""
    work.chmod(0o700)
    for entry in work.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, onerror=force_remove)
        else:
            entry.unlink(missing_ok=True)
    Path(os.environ["AIRFLOW_HOME"]).mkdir(mode=0o700, exist_ok=True)


def force_remove(remove: callable, path: str, _: object) -> None:
    """What a check made unreadable or unwritable is its own account's: opened up, removed."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            shutil.rmtree(path, onerror=force_remove)
        else:
            remove(path)


def not_dumpable() -> None:
    """No process of the same account may trace this one (or read its memory)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


class Handler(socketserver.StreamRequestHandler):
    timeout = 30  # a connection that sends nothing does not hold the next push

    def handle(self) -> None:
        try:
            request = json.loads(self.rfile.readline(MAX_REQUEST_BYTES))
            who = request.get("pusher", "?")
            close = (self.server.socket, self.request)
            answer = run_check(
                request.get("files", {}),
                self.server.work,
                self.server.dags_folder,
                request.get("only"),
                close,
            )
            outcome = f"{len(answer['problems'])} problem(s)" if answer["problems"] else "passed"
            log(f"check of {str(request['check'])[:12]} pushed by {who}: {outcome}")
            for problem in answer["problems"]:
                log(f"  {problem}")
        except (OSError, ValueError, KeyError, AttributeError) as error:
            answer = {"problems": [f"the DAG check failed: {error!r}"], "broken": [WHOLE_CHECK]}
            log(f"request failed: {error!r}")
        self.wfile.write(json.dumps(answer).encode() + b"\n")


class Server(socketserver.UnixStreamServer):
    """On the listening socket the platform made and handed over (--socket-fd)."""

    def __init__(self, args: argparse.Namespace):
        self.work = args.work
        self.dags_folder = args.dags_folder
        super().__init__("", Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = socket.socket(fileno=args.socket_fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket-fd", type=int, required=True, help="the listening socket, inherited")
    parser.add_argument("--work", type=Path, required=True, help="a folder of this account's for the checks")
    parser.add_argument(
        "--dags-folder", type=dag_folder.parse, default=dag_folder.DEFAULT, help="the repository's DAG folder"
    )
    args = parser.parse_args(argv)
    not_dumpable()
    # The namespace's first process ignores signals it has no handler for: what a check
    # runs cannot stop it (the platform stops it by killing `unshare`, outside).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if not sandboxed():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.environ.update(TMPDIR=str(args.work), AIRFLOW_HOME=str(args.work / "airflow-home"))
    tempfile.tempdir = str(args.work)
    reset_work(args.work)  # also what an earlier run's checks left
    dag_check.block_database()
    os.environ["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = FILE_IMPORT_SECONDS
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"  # the push log: a line per check
    import airflow.sdk  # noqa: F401 - paid once, not at each push
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401

    with Server(args) as server:
        if sandboxed():
            log(f"checking pushed DAGs on {server.socket.getsockname()} (uid {os.getuid()}, no network)")
        else:
            log(
                f"checking pushed DAGs on {server.socket.getsockname()} WITHOUT A SANDBOX: not run as "
                "root, so the checked code runs as the platform's user, can read what it reads, and "
                "has the network blocked in Python only; run the platform as root for the sandbox"
            )
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
