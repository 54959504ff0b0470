"""What every user server's start costs, paid by the whole team when it arrives at once
(bench/many_users.py): the server's Jupyter configuration keeps Node out of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "startup" / "jupyter_config"

LOAD_SERVER = """
import sys
from jupyter_server.serverapp import ServerApp
app = ServerApp()
app.initialize(["--ServerApp.port=0", "--ServerApp.open_browser=False", "--ServerApp.token=t",
                f"--ServerApp.root_dir={sys.argv[1]}"])
# what the extensions schedule for the server's first turns (jupyter-lsp's search)
from tornado.ioloop import IOLoop
from jupyter_lsp.serverextension import initialize
IOLoop.current().run_sync(lambda: initialize(app, "/tmp"))
"""


def node_calls_at_start(tmp_path: Path, config_path: Path | None) -> list[str]:
    """Initialize a Jupyter server with its extensions (JupyterLab, jupyter-lsp, ...) as the
    user server does, with `node` and `npm` on PATH that only record their arguments."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir(exist_ok=True)
    calls.write_text("")
    for name in ("node", "npm"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\necho "{{}}"\n')
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter"),  # none of this machine's own config
    }
    env.pop("JUPYTER_CONFIG_PATH", None)
    if config_path:
        env["JUPYTER_CONFIG_PATH"] = str(config_path)
    subprocess.run(
        [sys.executable, "-c", LOAD_SERVER, str(tmp_path)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return calls.read_text().splitlines()


def test_the_users_server_starts_without_running_node(tmp_path: Path) -> None:
    assert node_calls_at_start(tmp_path, CONFIG) == []


def test_without_our_configuration_jupyterlab_and_jupyter_lsp_run_node(tmp_path: Path) -> None:
    """The check above can fail: the same start without our configuration runs both."""
    calls = node_calls_at_start(tmp_path, None)
    assert any("yarn.js config" in call for call in calls), calls
    assert any(call.startswith("npm prefix") for call in calls), calls
