"""The preloaded single-user server: a process that imports the single-user server once
(JupyterHub's, Jupyter Server, JupyterLab and the extensions, the start wrapper) and forks
each user's server from it. A fresh server spends ~0.6 of its ~0.65 CPU-s of start on
those imports (bench/many_users.py --by-process); a forked one starts from them.

    python -m startup.preloaded_server FD PADDING      (started by the hub: mlops_ide.hub.preloaded_servers)

FD is a Unix stream socket only the hub holds (no path: nobody else reaches it). On it:
  hub -> here   one byte with one descriptor: the new server's own channel
  here -> hub   "ready" once imported; "exited PID CODE" when a server it forked ends
On the server's own channel this process sends "pid PID" with a pidfd of the child, opened
before it can reap the child (the hub holds the server by it); then the child reads its
request: command, environment (with the user's tokens), the part of it that is the same for
every server, account, niceness, folder.

Only the forked child reads a request: this process never holds a user's data, so no
server forked later finds another user's token in the memory it inherits. The child
becomes the server as Popen with JupyterHub's preexec would have made it (a new session,
the niceness, the user's account and groups, the home folder), then runs the start
wrapper and the server in place of `exec`. Where it could not be what a fresh interpreter
would be (the environment every server shares differs from the one this process started
with, or another jupyterhub-singleuser is on PATH) it execs the command as Popen would
have.

All forked servers share this interpreter's hash seed and memory layout (as Android's
apps share their zygote's): docs/security.md says what that gives away.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import select
import shutil
import signal
import site
import socket
import sys
import tempfile
import threading
from pathlib import Path

READY = b"ready\n"
REQUEST_LIMIT = 1 << 20  # a server's request: its command and environment
REQUEST_TIMEOUT = 10.0
SINGLEUSER = "jupyterhub-singleuser"

# What the single-user server imports at start (a module missing here is skipped).
PRELOAD = (
    "jupyterhub.singleuser",
    "jupyterhub.singleuser.extension",
    "jupyter_server.serverapp",
    "jupyterlab.labapp",
    "jupyterlab.commands",
    "jupyter_lsp.serverextension",
    "jupyter_server_terminals.app",
    "jupyter_server_proxy",
    "jupyter_vscode_proxy",
    "notebook_shim.shim",
    "startup.start",
    "startup.server_activity",
)
PR_SET_DUMPABLE = 4
LIBC = ctypes.CDLL(None, use_errno=True)
ROOM = "PRELOADED_SERVER_ROOM"  # the hub's room for show_as in our environment


def launch_environment() -> dict[str, str]:
    """The environment we were started with (os.environ may have more: Python's locale
    coercion adds LC_CTYPE), without the room."""
    raw = Path("/proc/self/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="surrogateescape").split("=", 1) for item in raw if b"=" in item)
    return {name: value for name, value in pairs if name != ROOM}


def preload() -> list[str]:
    """Import what the server imports; the sys.path a fresh `jupyterhub-singleuser` has
    (ours without our own first entry and PYTHONPATH's: it drops PYTHONPATH)."""
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    ours = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    return [entry for entry in sys.path[1:] if entry not in ours]


def serve(control: socket.socket, base_path: list[str], started_with: dict[str, str]) -> int | None:
    """Fork a server for each channel the hub sends, report each one's end; return in a
    forked child (its exit code) or when the hub has gone (None)."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the pipe
    control.sendall(READY)
    while True:
        readable, _, _ = select.select([control, wake_read], [], [], 5.0)
        if wake_read in readable:
            os.read(wake_read, 4096)
        report_ended(control)
        if control not in readable:
            continue
        message, fds, _, _ = socket.recv_fds(control, 1, 1)
        if not message:  # the hub has gone: the servers live on, in their own sessions
            return None
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (wake_read, wake_write, control.detach()):
                os.close(fd)
            return become_server(fds[0], base_path, started_with)
        with socket.socket(fileno=fds[0]) as channel:
            pidfd = os.pidfd_open(pid)  # not reaped before report_ended: still this child
            try:
                socket.send_fds(channel, [f"pid {pid}\n".encode()], [pidfd])
            except OSError:  # the hub gave the spawn up: the child finds its channel closed
                pass
            finally:
                os.close(pidfd)


def report_ended(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        control.sendall(f"exited {pid} {os.waitstatus_to_exitcode(status)}\n".encode())


def become_server(channel_fd: int, base_path: list[str], started_with: dict[str, str]) -> int:
    """In the forked child: take the request, become the user's server; its exit code."""
    channel = socket.socket(fileno=channel_fd)
    try:
        os.setsid()
        request = read_request(channel)
        command, env = request["command"], request["env"]
        take_on(request)
        become_environment([SINGLEUSER, *command[3:]], env)  # found by its JUPYTERHUB_USER while it syncs
        singleuser = shutil.which(SINGLEUSER, path=env.get("PATH"))
        fresh = differs_from_a_fresh_interpreter(request["shared"], started_with, singleuser)
        channel.sendall(b"ok\n")
    except BaseException as error:  # the hub says why the server did not start
        with contextlib.suppress(OSError):
            channel.sendall(json.dumps({"error": f"{type(error).__name__}: {error}"}).encode() + b"\n")
        os._exit(1)
    channel.close()
    if fresh:
        print(f"mlops-ide: {fresh}: this server starts afresh", file=sys.stderr, flush=True)
        os.execvpe(command[0], command, env)
    return run_server(command, env, singleuser, base_path)


def read_request(channel: socket.socket) -> dict:
    channel.settimeout(REQUEST_TIMEOUT)
    data = b""
    while not data.endswith(b"\n"):
        chunk = channel.recv(65536)
        if not chunk:
            raise ValueError("the hub closed the channel before its request ended")
        data += chunk
        if len(data) > REQUEST_LIMIT:
            raise ValueError(f"a request over {REQUEST_LIMIT} bytes")
    return json.loads(data)


def take_on(request: dict) -> None:
    """What Popen, the spawner's preexec and JupyterHub's set_user_setuid do: stdin from
    /dev/null, the niceness (also the session's autogroup), the account, its folder."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    with contextlib.suppress(OSError):  # a platform already at a higher nice keeps its own
        os.setpriority(os.PRIO_PROCESS, 0, int(request["nice"]))
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(int(request["nice"])))
    account = request.get("account")
    if account:
        become_account(account)
    folder = request["cwd"]
    with contextlib.suppress(OSError):
        if not account:  # SimpleLocalProcessSpawner's preexec makes it
            os.makedirs(folder, 0o755, exist_ok=True)
    for candidate in (folder, tempfile.gettempdir(), "/"):  # as JupyterHub's _try_setcwd
        with contextlib.suppress(OSError):
            os.chdir(candidate)
            return


def become_account(name: str) -> None:
    import pwd

    user = pwd.getpwnam(name)
    os.setgid(user.pw_gid)
    os.setgroups(os.getgrouplist(name, user.pw_gid))
    os.setuid(user.pw_uid)
    if os.getresuid() != (user.pw_uid,) * 3 or os.getresgid() != (user.pw_gid,) * 3:
        raise PermissionError(f"still not only {name} after setuid")
    with contextlib.suppress(PermissionError):
        os.setuid(0)
        raise PermissionError("root regained after setuid")
    # A changed uid makes the kernel hide this process from its own account (not
    # dumpable), which exec would have undone: the user's own tools read it again (its
    # memory holds none but the user's: see the module's docstring).
    LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)


def differs_from_a_fresh_interpreter(
    shared: dict[str, str], started_with: dict[str, str], singleuser: str | None
) -> str:
    """Why this server must be exec'd rather than run from here ('' when it need not):
    what every server's environment shares (read at start or at import: the locale,
    PYTHON*, LD_*, SSL_CERT_*, JUPYTERHUB_SINGLEUSER_*, ...) is not what we started with."""
    for name in sorted(set(shared) | set(started_with)):
        if shared.get(name) != started_with.get(name):
            return f"{name} differs from the preloaded server's"
    if singleuser is None or Path(singleuser).parent != Path(sys.executable).parent:
        return f"the {SINGLEUSER} on its PATH is not the preloaded one's ({singleuser})"
    return ""


def run_server(command: list[str], env: dict[str, str], singleuser: str, base_path: list[str]) -> int:
    """The start wrapper (`python -m startup.start ARGS`), then the server, in this process."""
    from startup import start

    args = command[3:]
    os.environ.clear()
    os.environ.update(env)
    forget_the_preloaded_account()
    server_env = start.server_environment()
    os.environ.clear()
    os.environ.update(server_env)
    sys.argv = [singleuser, *args]
    sys.path[:] = [str(Path(singleuser).parent), *base_path]
    show_as(sys.argv, server_env)
    from jupyterhub.singleuser import main

    code = main()
    return code if isinstance(code, int) else 0


def forget_the_preloaded_account() -> None:
    """What modules computed at import from our account and environment (root's home),
    computed again from the server's: where Python's user site would be, the temporary
    folder, and send2trash's trash (a file deleted in Jupyter goes to the user's)."""
    site.USER_BASE = site.USER_SITE = None
    tempfile.tempdir = None
    if "send2trash.plat_other" in sys.modules:
        importlib.reload(sys.modules["send2trash.plat_other"])


def become_environment(argv: list[str], env: dict[str, str]) -> None:
    """Our environment becomes `env`, for Python and for libc (the children started
    without one of their own, getenv), and /proc/PID/cmdline and environ show `argv` and
    `env`. libc's environ points into the memory show_as writes over: it is emptied
    first."""
    os.environ.clear()
    LIBC.clearenv()
    show_as(argv, env)
    os.environ.update(env)


def show_as(argv: list[str], env: dict[str, str]) -> None:
    """Write the server's command line and environment over ours in the process's memory,
    where /proc/PID/cmdline and /proc/PID/environ read them (ps, and whoever looks for a
    user's server by its JUPYTERHUB_USER): the hub started us with room for both. What
    does not fit is cut (the process's real environment is os.environ)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    arg_start, arg_end, env_start, env_end = (int(fields[i]) for i in range(45, 49))
    for start, end, items in (
        (arg_start, arg_end, argv),
        (env_start, env_end, [f"{name}={value}" for name, value in env.items()]),
    ):
        room = end - start
        block = b"".join(item.encode() + b"\0" for item in items)
        if len(block) > room:
            block = block[: room - 1] + b"\0"
        ctypes.memmove(start, block.ljust(room, b"\0"), room)


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[0]))
    started_with = launch_environment()
    base_path = preload()
    if threading.active_count() != 1:  # a fork would copy a thread's locks, not the thread
        print("mlops-ide: the preloaded server started threads; it will not fork", file=sys.stderr)
        return 1
    os.environ.pop(ROOM, None)  # no server's
    # What was imported lives as long as every server: out of the collector's reach, a
    # server's collections do not write to (and so copy) the pages it shares with us (about
    # half of a forked server's page faults and 0.1 CPU-s of its start).
    gc.freeze()
    code = serve(control, base_path, started_with)
    return 0 if code is None else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
