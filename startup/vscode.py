"""VS Code (code-server) as the landing page: quiet, the repository trusted, the
pipeline's Python preselected; its extension gallery Open VSX, or off
(MLOPS_IDE_VSCODE_GALLERY=off) on offline machines.

jupyter-vscode-proxy always starts `code-server --auth none --disable-telemetry` with the
folder from CODE_WORKINGDIR; everything else goes through the config file named by
CODE_SERVER_CONFIG (ours, rewritten each start), the machine settings (ours, rewritten each
start) and the user's settings.json (written once, only when the user has none: after that
it is theirs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CODE_SERVER_CONFIG = """\
# Written by mlops-ide at every server start; edits here are replaced.
disable-telemetry: true
disable-update-check: true
disable-workspace-trust: true
disable-getting-started-override: true
"""

DEFAULT_USER_SETTINGS = {
    "workbench.startupEditor": "none",
    "workbench.welcomePage.walkthroughs.openOnInstall": False,
    "workbench.tips.enabled": False,
    "security.workspace.trust.enabled": False,
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "chat.disableAIFeatures": True,
    "chat.commandCenter.enabled": False,
    "chat.agent.enabled": False,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "git.openRepositoryInParentFolders": "never",
    "git.confirmSync": False,
    "json.schemaDownload.enable": False,
    "npm.fetchOnlinePackageInfo": False,
}


def prepare(home: Path, workspace: Path) -> dict[str, str]:
    """Write code-server's config (and default settings, once); return the environment
    the single-user server needs for jupyter-vscode-proxy to start code-server right."""
    config = home / ".config" / "mlops-ide" / "code-server.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CODE_SERVER_CONFIG)

    gallery = os.environ.get("MLOPS_IDE_VSCODE_GALLERY") or "open-vsx"
    data = home / ".local" / "share" / "code-server"
    settings = data / "User" / "settings.json"
    if not settings.exists():
        settings.parent.mkdir(parents=True, exist_ok=True)
        defaults = {**DEFAULT_USER_SETTINGS, "extensions.ignoreRecommendations": gallery == "off"}
        settings.write_text(json.dumps(defaults, indent=2) + "\n")
    write_machine_settings(data / "Machine" / "settings.json")

    env = {
        "CODE_SERVER_CONFIG": str(config),
        "CODE_WORKINGDIR": str(workspace),
        "JUPYTER_VSCODE_PROXY_USE_SOCKET": "1",  # a 0600 Unix socket, no TCP port
        "VSCODE_PROXY_URI": os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/") + "proxy/{{port}}/",
    }
    if gallery == "off":
        env["EXTENSIONS_GALLERY"] = "{}"  # no calls to an extension gallery (else Open VSX)
    return env


def write_machine_settings(path: Path) -> None:
    """The settings that follow the machine, not the user (ours, rewritten each start; the
    workspace's settings win over them): the pipeline's Python as the interpreter."""
    machine = {}
    if os.environ.get("MLOPS_IDE_USER_PYTHON"):
        machine["python.defaultInterpreterPath"] = os.environ["MLOPS_IDE_USER_PYTHON"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(machine, indent=2) + "\n")
