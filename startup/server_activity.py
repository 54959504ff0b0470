"""What counts as activity in a user's server, for the hub's idle culler: a jupyter server
extension (loaded by jupyter_config/jupyter_server_config.py).

JupyterLab's own activity (API calls, kernels, terminals) counts as Jupyter counts it. VS
Code's traffic does not: an open tab keeps its websocket busy whether anyone works or not
(jupyter-server-proxy's `update_last_activity` is off for it, and the hub ignores the
proxy's activity). Instead, every TICK seconds, two things VS Code's own side knows:

- the mtime of ACTIVITY_FILE, which the built-in extension `vscode_activity/` touches while
  the user types or clicks, edits, runs a terminal command or debugs;
- a command running in one of VS Code's terminals (a child of a shell of code-server's
  pty host), also where the extension cannot tell (no shell integration): `sleep 600`
  keeps the server, a shell at its prompt does not.

Both go into the server's `last_activity_times`, which jupyterhub-singleuser reports to the
hub every JUPYTERHUB_ACTIVITY_INTERVAL seconds.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import psutil
from tornado.ioloop import PeriodicCallback

TICK = 15.0
PTY_HOST = "--type=ptyHost"


def activity_file(home: Path | None = None) -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str((home or Path.home()) / ".local" / "share")
    return Path(data) / "code-server" / "mlops-ide-activity"


def touched_at(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def terminal_command_running(server: psutil.Process) -> bool:
    """A process below a shell of code-server's pty host (its terminals), under `server`."""
    try:
        for process in server.children(recursive=True):
            if PTY_HOST in " ".join(process.cmdline()):
                return any(shell.children() for shell in process.children())
    except psutil.Error:
        return False
    return False


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "startup.server_activity"}]


def _load_jupyter_server_extension(serverapp) -> None:
    times = serverapp.web_app.settings.setdefault("last_activity_times", {})
    path = activity_file()
    server = psutil.Process()

    def tick() -> None:
        touched = touched_at(path)
        if touched is not None:
            times["vscode"] = touched
        if terminal_command_running(server):
            times["vscode-terminal"] = datetime.now(UTC)

    tick()
    PeriodicCallback(tick, TICK * 1000).start()
    serverapp.log.info("mlops-ide: VS Code's activity counts from %s and its terminals", path)
