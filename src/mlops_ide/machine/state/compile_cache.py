"""code-server's compiled JavaScript, made once by `make up` and read by every user's
code-server: Node's module compile cache (NODE_COMPILE_CACHE, Node 22.1 and newer).

Without it each code-server start compiles code-server's and VS Code's server JavaScript
again, in both of its Node processes (bench/code_server_start.py measures what it saves).

Node keeps one sub-folder per Node version, V8 flags and user id in the cache folder
(`v24.21.0-x64-964aae3f-0`) and makes and fills it itself. A cache entry is code V8 runs,
so the folder is the platform's (beside code-server, 0755, files 0644), never a user's:
`fill` makes the platform's own sub-folder once, and `share_with` links a user's
sub-folder name to it before the user's server starts. A code-server that finds no
sub-folder of its own, or cannot write to it, compiles what it needs as it did without
the cache: Node treats the cache as optional and says nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from mlops_ide.processes import end_processes, session_members

VARIABLE = "NODE_COMPILE_CACHE"


class NotFilled(RuntimeError):
    """The cache could not be filled: code-server or Node did not run as expected."""


def cache_folder(code_server_entry: Path) -> Path | None:
    """Beside the npm installation of code-server that `code_server_entry` (its
    node_modules/code-server/out/node/entry.js) belongs to: another code-server version
    gets its own. None for a code-server installed otherwise (no cache)."""
    for folder in code_server_entry.parents:
        if folder.name == "node_modules":
            return folder.parent / "compile-cache"
    return None


def own_subfolders(cache: Path, uid: int | None = None) -> list[Path]:
    """The sub-folders Node made for `uid` (this process's by default), links excluded."""
    suffix = f"-{os.getuid() if uid is None else uid}"
    if not cache.is_dir():
        return []
    return sorted(p for p in cache.iterdir() if p.name.endswith(suffix) and p.is_dir() and not p.is_symlink())


def fill(node: Path, entry: Path, cache: Path, timeout: float = 60.0) -> bool:
    """Start code-server once with the cache on, until it has served VS Code's workbench
    page, and stop it: what its two processes compiled on the way is then in the cache.
    Nothing to do (False) when the cache has entries for this Node already."""
    cache.mkdir(exist_ok=True)
    cache.chmod(0o755)  # whatever the umask: every user's code-server reads it
    held = os.open(cache, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # two `make up` at once fill it once
        version = node_tag(node)
        filled = any(node_version(f) == version and any(f.iterdir()) for f in own_subfolders(cache))
        if not filled:
            with tempfile.TemporaryDirectory(prefix="mlops-ide-compile-cache-") as tmp:
                serve_workbench_once(node, entry, cache, Path(tmp), timeout)
        readable_by_all(cache)  # each time: a code-server run as root may have added 0600 entries
    finally:
        os.close(held)
    return not filled


def fill_or_say_why(node: Path, entry: Path) -> str:
    """`fill` for `make up`: what to tell the operator; never an error (the cache only
    saves time: servers start without it)."""
    cache = cache_folder(entry)
    if cache is None:
        return f"code-server at {entry} is not an npm installation: no compile cache"
    try:
        return f"code-server's compiled JavaScript cached in {cache}" if fill(node, entry, cache) else ""
    except (OSError, NotFilled) as why:
        return f"code-server's compile cache not filled ({why}); servers start without it"


def code_server_command(node: Path, entry: Path, sock: Path, folder: Path) -> list[str]:
    """code-server without a password on a Unix socket, opening `folder`."""
    flags = ["--auth", "none", "--disable-telemetry", "--socket", str(sock)]
    return [str(node), str(entry), *flags, str(folder)]


def node_tag(node: Path) -> str:
    """The Node version as Node names its sub-folders (`v24.21.0`)."""
    try:
        ran = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=True, timeout=30)
    except subprocess.SubprocessError as error:
        raise NotFilled(f"{node} --version: {error}") from None
    return ran.stdout.strip()


def node_version(subfolder: Path) -> str:
    return subfolder.name.split("-", 1)[0]


def serve_workbench_once(node: Path, entry: Path, cache: Path, tmp: Path, timeout: float) -> None:
    home, sock, config, log = tmp / "home", tmp / "code-server.sock", tmp / "config.yaml", tmp / "log"
    home.mkdir()
    config.write_text("disable-update-check: true\ndisable-workspace-trust: true\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODE_SERVER_CONFIG": str(config),
        "EXTENSIONS_GALLERY": "{}",
        VARIABLE: str(cache),
    }
    argv = code_server_command(node, entry, sock, home)
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=output, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not workbench_served(sock, home):
            if process.poll() is not None:
                said = log.read_text(errors="replace")[-2000:]
                raise NotFilled(
                    f"code-server ended ({process.returncode}) before serving its workbench: {said}"
                )
            if time.monotonic() > deadline:
                raise NotFilled(f"code-server did not serve its workbench within {timeout:.0f} s")
            time.sleep(0.05)
    finally:
        process.terminate()  # its parent stops its child; Node writes the cache as each exits
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        end_processes(session_members(process.pid), grace=3.0)  # VS Code's agent processes


def workbench_served(sock: Path, folder: Path) -> bool:
    connection = http.client.HTTPConnection("localhost", timeout=5)
    try:
        connection.sock = socket.socket(socket.AF_UNIX)
        connection.sock.settimeout(5)
        connection.sock.connect(str(sock))
        connection.request("GET", f"/?folder={folder}")
        response = connection.getresponse()
        return response.status == 200 and b"workbench" in response.read()
    except OSError:
        return False
    finally:
        connection.close()


def readable_by_all(cache: Path) -> None:
    """Node writes its entries 0600: every user's code-server reads them; nobody but the
    cache's owner writes."""
    for folder in own_subfolders(cache):
        folder.chmod(0o755)
        for entry in folder.iterdir():
            if entry.is_file() and not entry.is_symlink():
                entry.chmod(0o644)


def share_with(cache: Path, uid: int) -> None:
    """Give the account `uid` this process's entries: its sub-folder names become links to
    ours (in a folder only we write). Run as root before a user's server starts."""
    ours = f"-{os.getuid()}"
    for folder in own_subfolders(cache):
        link = folder.with_name(folder.name[: -len(ours)] + f"-{uid}")
        if uid != os.getuid() and not os.path.lexists(link):
            with contextlib.suppress(FileExistsError):  # another spawn made it just now
                link.symlink_to(folder.name)
