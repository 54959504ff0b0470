"""The DAG check from a warm process, for `mlops-ide dag check` and the clone's pre-push hook.

dag_check.py imports Airflow (~1 s of CPU) before it loads a single DAG file; a pre-push hook
that pays it at every push to a remote outside the platform (GitHub: no check of ours runs
there) makes each push slow. The first check starts this server, which imports Airflow once and
answers every later check from a forked child: the child runs dag_check.py's `main` on the
files asked for, as the script would, and its answer is what the script would have printed.

    python -m mlops_ide.workspace.warm_dag_check SOCKET [--idle SECONDS] [--lifeline PID:START]

One per user: the socket is `~/.cache/mlops-ide/dag-check/<key>.sock`, in a folder only its
user may open (checked before each use); `key` hashes what the server reads once, as it starts
(the Python, the checker's code, the PYTHON* and AIRFLOW* variables): a change of any starts a
new server in place of the old. Each check runs with the environment its request brings (the
user's, without credentials: dag_commands.check_environment), so a teammate's DAG code sees no
more here than without it. It answers its own user only (the peer's uid, from the kernel), one
request at a time; it ends after --idle seconds without one (600) or with its lifeline, the
user's single-user server (or the pod's first process), removing its socket. Memory: ~130 MiB
while it lives.

Request: one JSON line {"dags": FOLDER, "args": [dag_check.py flags], "env": {...}}; answer:
what the check printed, then a NUL byte and its exit status. MLOPS_IDE_WARM_CHECK=0 turns it
off (each check then imports Airflow afresh, as before).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

SWITCH = "MLOPS_IDE_WARM_CHECK"
IDLE_SECONDS = 600.0
LIFELINE_POLL_SECONDS = 2.0
START_SECONDS = 60.0  # a server's Airflow import, on a busy machine
MAX_REQUEST_BYTES = 4 * 2**20
MAX_ANSWER_BYTES = 16 * 2**20
CODE = Path(__file__).resolve().parents[2]  # the folder holding mlops_ide/
CHECKER = CODE / "mlops_ide" / "portable" / "dag_check.py"
STARTUP_VARIABLES = ("PYTHON", "AIRFLOW")  # PYTHONPATH, AIRFLOW_HOME, AIRFLOW__CORE__...


class Unavailable(Exception):
    """No warm check for this one: the caller checks without it; the message says why."""


def enabled(environ: dict[str, str]) -> bool:
    return environ.get(SWITCH, "1") != "0"


def key(env: dict[str, str], python: str = sys.executable) -> str:
    """What a server's state depends on: the Python, its code, and the variables read as it
    starts (Python's and Airflow's configuration). Each check runs with the whole environment
    its request brings."""
    read_at_start = {name: value for name, value in env.items() if name.startswith(STARTUP_VARIABLES)}
    digest = hashlib.sha256(json.dumps(sorted(read_at_start.items())).encode())
    digest.update(python.encode())
    for code in (CHECKER, Path(__file__).resolve()):
        info = code.stat()
        digest.update(f"{code}:{info.st_mtime_ns}:{info.st_size}".encode())
    return digest.hexdigest()[:20]


def sockets_folder(home: Path) -> Path:
    return home / ".cache" / "mlops-ide" / "dag-check"


def socket_name(env: dict[str, str], python: str = sys.executable) -> str:
    return f"{key(env, python)}.sock"


@contextlib.contextmanager
def private_folder(folder: Path) -> Iterator[int]:
    """`folder` (made 0700 if missing), open: refused if another user could have put a
    socket in it. Sockets are reached through the open folder (/proc/self/fd/N/NAME): the
    folder checked is the one used, and a long home makes no address too long."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise Unavailable(f"{folder} is not a folder of this user's alone (mode 0700)")
        yield fd
    finally:
        os.close(fd)


def address(folder_fd: int, name: str) -> str:
    return f"/proc/self/fd/{folder_fd}/{name}"


def request(where: str, dags: Path, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Ask the server at `where`; (exit status, output) as dag_check.py would give them."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(where)
        client.sendall(json.dumps({"dags": str(dags), "args": args, "env": env}).encode() + b"\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    output, nul, status = answer.rpartition(b"\0")
    if not nul or not status.strip().lstrip(b"-").isdigit():
        raise Unavailable("the warm check ended without an answer")
    return int(status), output.decode(errors="replace")


def start(path: Path, where: str, env: dict[str, str]) -> None:
    """A server on `path` (reached at `where`), in a session of its own (it outlives this
    command), with `env`; returns once it listens."""
    launcher = (
        f"import sys; sys.path.insert(0, {str(CODE)!r}); "
        "from mlops_ide.workspace.warm_dag_check import main; sys.exit(main())"
    )
    server = subprocess.Popen(
        [sys.executable, "-P", "-c", launcher, str(path), "--lifeline", lifeline()],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise Unavailable(f"the warm check exited at its start (status {server.returncode})")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(where)
            return
        time.sleep(0.05)
    server.kill()
    raise Unavailable(f"the warm check did not start within {START_SECONDS:.0f} s")


def run(dags: Path, args: list[str], env: dict[str, str], home: Path) -> tuple[int, str]:
    """dag_check.py `args` on `dags`, from this user's warm server for `env` (started if
    there is none). Raises Unavailable when it cannot answer."""
    folder, name = sockets_folder(home), socket_name(env)
    with private_folder(folder) as fd:
        where = address(fd, name)
        try:
            return request(where, dags, args, env)
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        stop_all(folder)  # one server per user: one for another Airflow configuration goes
        start(folder / name, where, env)
        try:
            return request(where, dags, args, env)
        except OSError as problem:
            raise Unavailable(f"the warm check did not answer ({problem})") from problem


def servers(folder: Path) -> dict[str, int]:
    """This user's live servers in `folder`: socket name -> pid; sockets no server holds are removed."""
    found = {}
    with contextlib.suppress(FileNotFoundError, Unavailable), private_folder(folder) as fd:
        for name in os.listdir(fd):
            if not name.endswith(".sock"):
                continue
            try:
                with socket.socket(socket.AF_UNIX) as client:
                    client.connect(address(fd, name))
                    pid, uid, _gid = peer(client)
                if uid == os.getuid():
                    found[name] = pid
            except ConnectionRefusedError:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
            except OSError:
                continue
    return found


def stop_all(folder: Path) -> None:
    """End this user's servers in `folder` (each removes its socket as it ends)."""
    for pid in servers(folder).values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def proc_stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command's name: state, parent, ..., start time [19]."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def lifeline() -> str:
    """`PID:START` of the process the warm check ends with: among this process's ancestors that
    run as this user, the outermost single-user server (JupyterHub gives it
    JUPYTERHUB_SERVICE_PREFIX; with accounts of their own, its parent is the hub's), else the
    outermost of them (in a pod, the process below its first)."""
    pid, uid = os.getpid(), os.getuid()
    chain = [pid]
    while (parent := int(proc_stat(pid)[1])) > 1 and os.stat(f"/proc/{parent}").st_uid == uid:
        chain.append(parent)
        pid = parent
    servers = [pid for pid in chain if is_user_server(pid)]
    chosen = servers[-1] if servers else chain[-1]
    return f"{chosen}:{proc_stat(chosen)[19]}"


def is_user_server(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return any(item.startswith(b"JUPYTERHUB_SERVICE_PREFIX=") for item in environ.read().split(b"\0"))
    except OSError:
        return False


def alive(line: str) -> bool:
    pid, start = line.split(":")
    try:
        fields = proc_stat(int(pid))
    except OSError:
        return False
    return fields[0] != "Z" and fields[19] == start  # the same process, not a new one on its pid


def peer(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, from the kernel."""
    return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))


# --- the server ------------------------------------------------------------------------


def checked_in_child(
    connection: socket.socket, listening: socket.socket, dags: str, args: list[str], env: dict[str, str]
) -> tuple[int, bytes]:
    """dag_check.main in a forked child with `env` as its environment; (its exit status, what it
    printed). Once it is done, whatever it started in its session is ended; a client that hangs
    up ends the check at once."""
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - reports through the pipe
        status = 2
        try:
            os.setsid()
            listening.close()  # the DAG code takes no request, and holds no connection open
            connection.close()
            os.close(readable)
            os.dup2(writable, 1)  # what dag_check.py prints as its result
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 2)  # Airflow's log, the DAG code's output: dropped, as by the script's caller
            os.environ.clear()
            os.environ.update(env)
            os.chdir(dags)
            from mlops_ide.portable import dag_check

            status = dag_check.main([dags, *args])
        except BaseException:  # said by the status, as the script's traceback went nowhere
            status = 2
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
            os._exit(status)
    os.close(writable)
    output, status, watched = b"", None, [readable, connection]
    try:
        while status is None or readable in watched:
            ready, _, _ = select.select(watched, [], [], 0.05)
            if connection in ready:
                watched.remove(connection)
                if not connection.recv(1, socket.MSG_PEEK):  # the client is gone: so is the check
                    return -signal.SIGKILL, b""
            if readable in ready:
                chunk = os.read(readable, 65536)
                output += chunk
                if not chunk:
                    watched.remove(readable)
                elif len(output) > MAX_ANSWER_BYTES:
                    return 2, b"the check printed too much\n"
            if status is None:
                pid, wait_status = os.waitpid(child, os.WNOHANG)
                if pid:
                    status = os.waitstatus_to_exitcode(wait_status)
            elif readable not in ready:
                break  # it has exited and said all it had; a process it left may hold the pipe
        return status, output
    finally:
        os.close(readable)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child, signal.SIGKILL)  # what it started in its session
        if status is None:
            os.waitpid(child, 0)


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.server.last_request = time.monotonic()  # type: ignore[attr-defined]
        _pid, uid, _gid = peer(self.connection)
        if uid != os.getuid():
            return  # only its own user's checks
        line = self.rfile.readline(MAX_REQUEST_BYTES)
        try:
            asked = json.loads(line)
            dags, args = str(asked["dags"]), [str(arg) for arg in asked["args"]]
            env = {str(name): str(value) for name, value in asked["env"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        status, output = checked_in_child(self.connection, self.server.socket, dags, args, env)
        with contextlib.suppress(OSError):
            self.connection.sendall(output + b"\0%d\n" % status)


def serve(path: Path, idle: float, life: str | None = None) -> None:
    from mlops_ide.portable import dag_check

    dag_check.block_database()  # before Airflow reads its configuration, as the script does
    import airflow.sdk  # noqa: F401 - the cost every check shares
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401
    from airflow.utils.file import list_py_file_paths  # noqa: F401

    os.chdir(path.parent)  # bound by its name: the folder's path may be too long for an address
    path = Path(path.name)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old_mask = os.umask(0o077)
    try:
        server = socketserver.UnixStreamServer(str(path), Handler)
    finally:
        os.umask(old_mask)
    bound = path.stat().st_ino
    server.timeout = min(idle, LIFELINE_POLL_SECONDS)
    server.last_request = time.monotonic()  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while time.monotonic() - server.last_request < idle and (life is None or alive(life)):  # type: ignore[attr-defined]
            server.handle_request()
    finally:
        # the socket goes first: a client that finds none starts a new server, whose socket
        # this one must not remove
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_ino == bound:
                path.unlink()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("socket", type=Path)
    parser.add_argument(
        "--idle", type=float, default=IDLE_SECONDS, help="seconds without a check before it ends"
    )
    parser.add_argument("--lifeline", help="PID:START of the process it ends with (lifeline())")
    args = parser.parse_args(argv)
    serve(args.socket, args.idle, args.lifeline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
