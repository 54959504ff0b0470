"""code-server started with the user's server, not at the first request for /vscode/.

jupyter-server-proxy starts code-server when the browser first asks for VS Code, which
comes after the server is up and the hub's login round trips are done: the login then
waits for code-server's own start (~0.4 s idle, seconds under a crowd) on top. Started
as the server's configuration loads, code-server boots while the server imports its
extensions and the browser does the round trips.

jupyter-server-proxy still guards the way in: its entry for VS Code runs a waiter that
lives as long as this code-server (`tail --pid`), on the same Unix socket, and checks it
answers before it proxies, as it does for the processes it starts itself. Only a server
started by the start wrapper does this (it sets MLOPS_IDE_VSCODE_EARLY, which is taken out
of the environment here so that nothing the server starts, a terminal's `jupyter`
included, starts a second code-server).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
import threading
from collections.abc import MutableMapping
from typing import Any

EARLY = "MLOPS_IDE_VSCODE_EARLY"


def proxy_entry(entry: dict[str, Any], environ: MutableMapping[str, str] = os.environ) -> dict[str, Any]:
    """jupyter-server-proxy's entry for VS Code (`entry`, from jupyter-vscode-proxy): as it
    is, or, when the start wrapper asked for it, with code-server already started."""
    if environ.pop(EARLY, "") != "1":
        return entry
    socket_dir = tempfile.mkdtemp(prefix="mlops-ide-vscode-")  # 0700, the user's
    socket = os.path.join(socket_dir, "socket")
    try:
        template = entry["command"](port=0, unix_socket=socket)  # jupyter-vscode-proxy's argv
        argv = [part.format(unix_socket=socket, port=0) for part in template]
        process = subprocess.Popen(argv, env=dict(environ))  # inherits the server's stdout/stderr
    except OSError:  # no code-server on PATH: the proxy says so at the first request, as before
        os.rmdir(socket_dir)
        return entry
    # reaped here, so that the waiter below sees it end (a zombie would keep it waiting)
    threading.Thread(target=process.wait, name="code-server", daemon=True).start()
    atexit.register(process.terminate)
    return {**entry, "command": ["tail", f"--pid={process.pid}", "-f", "/dev/null"], "unix_socket": socket}
