"""The DAG check from a warm process, for `mlops-ide dag check` and the clone's pre-push hook.

dag_check.py imports Airflow (~1 s of CPU) before it loads a single DAG file; a pre-push hook
that pays it at every push to a remote outside the platform (GitHub: no check of ours runs
there) makes each push slow. The first check starts this server, which imports Airflow once and
answers every later check from a forked child: the child runs dag_check.py's `main` on the
files asked for, as `python dag_check.py` would (the same sys.path and argv, the request's
environment), and its answer is what the script would have printed.

One per user: its socket is `~/.cache/mlops-ide/dag-check/<key>.sock`, in a folder only its
user may open, checked through the descriptor every address goes through
(/proc/self/fd/N/NAME). The client binds it there, under a lock on the folder (two checks at
once start one server), and hands it over; the server listens on it. `key` hashes what the
server reads as it starts (the Python, the checker's code, the PYTHON*, AIRFLOW*, locale and
HOME variables, the only ones it is started with): a change of any starts a new server in
place of the old. It answers its own uid only (the peer's, from the kernel), one request at a
time (a request not sent within 5 s is dropped); every process a check leaves is ended after
it (the server is their subreaper: a double fork does not escape). It ends after --idle
seconds without a request (600) or with its lifeline, the user's single-user server (or the
pod's first process), removing its socket. Memory: ~130 MiB while it lives. The server never
runs DAG code and never reads a request's environment: only the child does.

    (started by run(); by hand:) python -c <launcher> --socket-fd N --folder-fd M --name NAME \
        --inode INODE [--idle SECONDS] [--lifeline PID:START]

Request: one JSON line {"dags": FOLDER, "args": [dag_check.py flags], "env": {...}}; answer:
what the check printed, then a NUL byte and its exit status. MLOPS_IDE_WARM_CHECK=0 turns it
off (each check then imports Airflow afresh, as before).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

SWITCH = "MLOPS_IDE_WARM_CHECK"
IDLE_SECONDS = 600.0
POLL_SECONDS = 0.5  # how often an idle server looks at its lifeline
REQUEST_SECONDS = 5.0  # a connection must say what it wants within this
CONNECT_SECONDS = 5.0
REFUSED_SECONDS = 0.5  # a socket nothing listens on yet, before it is taken for a dead server's
LOCK_SECONDS = 45.0  # another check starting the server holds the lock that long at most
START_SECONDS = 30.0
ANSWER_SECONDS = 600.0  # a whole check; Airflow's own import timeout holds each file below it
MAX_REQUEST_BYTES = 4 * 2**20
MAX_ANSWER_BYTES = 16 * 2**20
THIS = Path(__file__).resolve()
PORTABLE = THIS.parents[1] / "portable"
CHECKER = PORTABLE / "dag_check.py"
STARTUP_VARIABLES = ("PYTHON", "AIRFLOW", "_AIRFLOW", "LC_")  # PYTHONPATH, AIRFLOW__CORE__..., the locale
STARTUP_NAMES = ("HOME", "LANG", "TZ", "TMPDIR")
PR_SET_CHILD_SUBREAPER = 36
# The server's start, as `python dag_check.py` has its sys.path: the checker's folder first, no
# platform package (a DAG file sees what it would see there).
LAUNCHER = (
    "import importlib.util, sys; "
    f"sys.path.insert(0, {str(PORTABLE)!r}); "
    f"spec = importlib.util.spec_from_file_location('warm_dag_check', {str(THIS)!r}); "
    "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
    "sys.exit(module.main())"
)


class Unavailable(Exception):
    """No warm check for this one: the caller checks without it; the message says why."""


def enabled(environ: dict[str, str]) -> bool:
    return environ.get(SWITCH, "1") != "0"


def server_environment(env: dict[str, str]) -> dict[str, str]:
    """What the server is started with: what Python and Airflow read as they start, nothing else."""
    return {
        name: value
        for name, value in env.items()
        if name.startswith(STARTUP_VARIABLES) or name in STARTUP_NAMES
    }


def key(env: dict[str, str], python: str = sys.executable) -> str:
    """What a server's state depends on: the Python, its code and server_environment(env)."""
    digest = hashlib.sha256(json.dumps(sorted(server_environment(env).items())).encode())
    digest.update(python.encode())
    for code in (CHECKER, THIS, Path(sysconfig.get_paths()["purelib"])):  # the last: an upgrade
        info = code.stat()
        digest.update(f"{code}:{info.st_mtime_ns}:{info.st_size}".encode())
    return digest.hexdigest()[:20]


def sockets_folder(home: Path) -> Path:
    return home / ".cache" / "mlops-ide" / "dag-check"


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


def connected(where: str, refused_for: float = 0.0) -> socket.socket:
    """A connection to the server at `where`; refused for up to `refused_for` seconds (a
    server whose starter was killed: it listens within a moment of its start)."""
    deadline = time.monotonic() + refused_for
    while True:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.settimeout(CONNECT_SECONDS)
            client.connect(where)
            return client
        except ConnectionRefusedError:
            client.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
        except BaseException:
            client.close()
            raise


def request(client: socket.socket, dags: Path, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Ask the server at the other end of `client`; (exit status, output) as dag_check.py
    would give them."""
    with client:
        client.settimeout(ANSWER_SECONDS)
        try:
            client.sendall(json.dumps({"dags": str(dags), "args": args, "env": env}).encode() + b"\n")
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        except OSError as problem:  # a timeout included
            raise Unavailable(f"the warm check did not answer ({problem})") from problem
    output, nul, status = answer.rpartition(b"\0")
    if not nul or not status.strip().lstrip(b"-").isdigit():
        raise Unavailable("the warm check ended without an answer")
    return int(status), output.decode(errors="replace")


def start(
    folder_fd: int, name: str, env: dict[str, str], idle: float = IDLE_SECONDS, life: str | None = None
) -> socket.socket:
    """A server for `env` on `name` in the folder (bound here, in the folder checked, and handed
    over; it listens itself, so that the kernel names it to whoever connects); returns a
    connection to it. It ends after `idle` seconds without a request or with `life`
    (PID:START; by default this process's lifeline())."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder_fd)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        old_mask = os.umask(0o077)
        try:
            bound.bind(address(folder_fd, name))
        finally:
            os.umask(old_mask)
        inode = os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_ino
        life = life or lifeline()
        # the server's own open of the folder: the lock this client holds stays this client's
        servers_folder = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder_fd)
        try:
            argv = [
                *("--socket-fd", str(bound.fileno()), "--folder-fd", str(servers_folder), "--name", name),
                *("--inode", str(inode), "--idle", str(idle), "--lifeline", life),
            ]
            server = subprocess.Popen(
                [sys.executable, "-P", "-c", LAUNCHER, *argv],
                env=server_environment(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(bound.fileno(), servers_folder),
                process_group=0,  # not the push's job: Ctrl-C in the terminal ends the check, not it
            )
        finally:
            os.close(servers_folder)
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            return connected(address(folder_fd, name))
        except ConnectionRefusedError:  # not listening yet
            if server.poll() is not None:
                raise Unavailable(
                    f"the warm check exited at its start (status {server.returncode})"
                ) from None
            if time.monotonic() > deadline:
                server.kill()
                raise Unavailable(f"the warm check did not start within {START_SECONDS:.0f} s") from None
            time.sleep(0.02)


def run(dags: Path, args: list[str], env: dict[str, str], home: Path) -> tuple[int, str]:
    """dag_check.py `args` on `dags`, from this user's warm server for `env` (started if
    there is none). Raises Unavailable when it cannot answer."""
    name = f"{key(env)}.sock"
    with private_folder(sockets_folder(home)) as fd, locked(fd):  # one starts it, the others find it
        try:
            client = connected(address(fd, name), refused_for=REFUSED_SECONDS)
        except (FileNotFoundError, ConnectionRefusedError):
            stop_servers(fd)  # one server per user: one for another configuration goes
            client = start(fd, name, env)
    return request(client, dags, args, env)


def live_servers(folder_fd: int) -> dict[str, int]:
    """This user's servers in the folder: socket name -> pid (the kernel's: who listens);
    sockets nothing listens on go. The caller holds the folder's lock."""
    found = {}
    for name in os.listdir(folder_fd):
        if not name.endswith(".sock"):
            continue
        try:
            with connected(address(folder_fd, name)) as client:
                pid, uid, _gid = peer(client)
        except ConnectionRefusedError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=folder_fd)
            continue
        except OSError:
            continue
        if uid == os.getuid() and pid > 0 and pid != os.getpid():  # 0: another PID namespace's
            found[name] = pid
    return found


def stop_servers(folder_fd: int) -> None:
    for pid in live_servers(folder_fd).values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def servers(folder: Path) -> dict[str, int]:
    """live_servers of `folder` (none when it is missing or not the user's alone)."""
    with contextlib.suppress(FileNotFoundError, Unavailable), private_folder(folder) as fd, locked(fd):
        return live_servers(fd)
    return {}


def stop_all(folder: Path) -> None:
    """End this user's servers in `folder` (each removes its socket as it ends)."""
    with contextlib.suppress(FileNotFoundError, Unavailable), private_folder(folder) as fd, locked(fd):
        stop_servers(fd)


@contextlib.contextmanager
def locked(folder_fd: int) -> Iterator[None]:
    """The folder's lock: whoever holds it may start, stop and clear servers. Its holder is a
    client (a server holds its own open of the folder); waited for LOCK_SECONDS at most."""
    deadline = time.monotonic() + LOCK_SECONDS
    while True:
        try:
            fcntl.flock(folder_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"another check held the warm check's folder for {LOCK_SECONDS:.0f} s"
                ) from None
            time.sleep(0.05)
    try:
        yield
    finally:
        fcntl.flock(folder_fd, fcntl.LOCK_UN)


def proc_stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command's name: state, parent, ..., start time [19]."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def lifeline() -> str:
    """`PID:START` of the process the warm check ends with: among this process and its
    ancestors that run as this user, the outermost single-user server (JupyterHub gives it
    JUPYTERHUB_SERVICE_PREFIX; with accounts of their own, its parent is the hub's), else the
    outermost of them (in a pod, the process below its first; run as the user by root, this
    process itself: the server ends with this check, as a fresh import would)."""
    pid, uid = os.getpid(), os.getuid()
    chain = [pid]
    while (parent := int(proc_stat(pid)[1])) > 1 and os.stat(f"/proc/{parent}").st_uid == uid:
        chain.append(parent)
        pid = parent
    user_servers = [pid for pid in chain if is_user_server(pid)]
    chosen = user_servers[-1] if user_servers else chain[-1]
    return f"{chosen}:{proc_stat(chosen)[19]}"


def is_user_server(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return any(item.startswith(b"JUPYTERHUB_SERVICE_PREFIX=") for item in environ.read().split(b"\0"))
    except OSError:
        return False


def alive(line: str) -> bool:
    pid, start_time = line.split(":")
    try:
        fields = proc_stat(int(pid))
    except OSError:
        return False
    return fields[0] != "Z" and fields[19] == start_time  # the same process, not a new one on its pid


def peer(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, from the kernel."""
    return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))


# --- the server ------------------------------------------------------------------------


def run_in_child(request_line: bytes, close: tuple[socket.socket, ...]) -> None:  # pragma: no cover - a child
    """The forked child: the request's environment, argv and folder, then dag_check.main;
    what it prints goes to fd 1 (the parent's pipe); exits with its status."""
    status = 2
    try:
        os.setpgid(0, 0)  # a group of its own, in the same session (and scheduling group)
        for sock in close:  # the DAG code holds no connection open and takes no request
            sock.close()
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 2)  # Airflow's log, the DAG code's output: dropped, as by the script's caller
        asked = json.loads(request_line)
        dags, args = str(asked["dags"]), [str(arg) for arg in asked["args"]]
        os.environ.clear()
        os.environ.update({str(name): str(value) for name, value in asked["env"].items()})
        sys.argv = [str(CHECKER), dags, *args]
        os.chdir(dags)
        import dag_check  # from the checker's folder, first on sys.path as for the script

        status = dag_check.main([dags, *args])
    except BaseException:  # said by the status, as the script's traceback went nowhere
        status = 2
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
        os._exit(status)


def checked_in_child(
    connection: socket.socket, listener: socket.socket, request_line: bytes, life: str | None
) -> tuple[int, bytes]:
    """run_in_child in a forked child; (its exit status, what it printed). Once it is done,
    every process it left is ended; a client that hangs up, or the lifeline's end, ends it at once."""
    readable, writable = os.pipe()
    sys.stdout.flush()  # nothing of the server's own output may reach the child's answer
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # pragma: no cover - reports through the pipe
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.close(readable)
        os.dup2(writable, 1)
        run_in_child(request_line, (connection, listener))
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
            if life is not None and not alive(life):
                raise SystemExit(
                    0
                )  # the user's server is gone: no answer (the client checks afresh), no server
        return status, output
    finally:
        os.close(readable)
        end_descendants()


def end_descendants() -> None:
    """SIGKILL every process below this one (a check's child and all it left: orphans come
    back to this subreaper), then reap them."""
    me = os.getpid()
    for _ in range(100):  # a process that cannot die (uninterruptible I/O) is left at last
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    parents[int(entry)] = int(proc_stat(int(entry))[1])
        below = [pid for pid in parents if is_below(pid, me, parents)]
        if not below:
            break
        for pid in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # the latter: a setuid program's
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
        reap()
    reap()


def is_below(pid: int, ancestor: int, parents: dict[int, int]) -> bool:
    seen = 0
    while pid in parents and seen < 4096:
        pid, seen = parents[pid], seen + 1
        if pid == ancestor:
            return True
    return False


def reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def read_request(connection: socket.socket) -> bytes | None:
    """The request line, if its own user sends it within REQUEST_SECONDS."""
    _pid, uid, _gid = peer(connection)
    if uid != os.getuid():
        return None  # only its own user's checks
    connection.settimeout(REQUEST_SECONDS)
    line = b""
    with contextlib.suppress(OSError):
        while not line.endswith(b"\n") and len(line) < MAX_REQUEST_BYTES:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            line += chunk
    connection.settimeout(None)
    return line if line.endswith(b"\n") else None


def serve(
    listener: socket.socket, folder_fd: int, name: str, inode: int, idle: float, life: str | None
) -> None:
    listener.listen(16)  # at once, and here: the kernel gives clients this process as the peer
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.chdir("/")  # it holds no folder of the caller's (each check goes into its own)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # what a check double-forks still comes back here
    import dag_check  # from the checker's folder, as the script is

    dag_check.block_database()  # before Airflow reads its configuration, as the script does
    import airflow.sdk  # noqa: F401 - the cost every check shares
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401
    from airflow.utils.file import list_py_file_paths  # noqa: F401

    last_request = time.monotonic()
    try:
        while time.monotonic() - last_request < idle and (life is None or alive(life)):
            ready, _, _ = select.select([listener], [], [], min(idle, POLL_SECONDS))
            if not ready:
                continue
            connection, _ = listener.accept()
            with connection:
                last_request = time.monotonic()
                line = read_request(connection)
                if line is None:
                    continue
                status, output = checked_in_child(connection, listener, line, life)
                # a client that stopped reading does not hold the server
                connection.settimeout(REQUEST_SECONDS)
                with contextlib.suppress(OSError):
                    connection.sendall(output + b"\0%d\n" % status)
    finally:
        # the socket goes first: a client that finds none starts a new server, whose socket
        # (another inode) this one must not remove
        with contextlib.suppress(OSError):
            if os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_ino == inode:
                os.unlink(name, dir_fd=folder_fd)
        listener.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket-fd", type=int, required=True, help="the bound socket it listens on")
    parser.add_argument("--folder-fd", type=int, required=True, help="the folder it is bound in")
    parser.add_argument("--name", required=True, help="its name there")
    parser.add_argument("--inode", type=int, required=True, help="its inode: removed at the end if still it")
    parser.add_argument(
        "--idle", type=float, default=IDLE_SECONDS, help="seconds without a request before it ends"
    )
    parser.add_argument("--lifeline", help="PID:START of the process it ends with (lifeline())")
    args = parser.parse_args(argv)
    listener = socket.socket(fileno=args.socket_fd)
    serve(listener, args.folder_fd, args.name, args.inode, args.idle, args.lifeline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
