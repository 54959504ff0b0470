"""VS Code (code-server) as the landing page: quiet, the repository trusted, the
pipeline's Python preselected; its extension gallery Open VSX, or off
(MLOPS_IDE_VSCODE_GALLERY=off) on offline machines.

jupyter-vscode-proxy always starts `code-server --auth none --disable-telemetry` with the
folder from CODE_WORKINGDIR; everything else goes through the config file named by
CODE_SERVER_CONFIG (ours, rewritten each start), the machine settings (ours, rewritten each
start) and the user's settings.json (written once, only when the user has none: after that
it is theirs). A team's repository without tasks of its own gets the DAG tasks (check the
changed DAG files, check them all, test the open DAG file) as user tasks, for the DAG folder
the platform set (MLOPS_IDE_DAGS_FOLDER).
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
    write_dag_tasks(data / "User" / "tasks.json", workspace)

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


TASKS_MARK = "Written by mlops-ide"
# `mlops-ide dag check`'s lines, `<path in the repository>.py:<line>: <error>`, as VS Code problems
PROBLEM_MATCHER = {
    "owner": "mlops-ide",
    "source": "dag check",
    "fileLocation": ["relative", "${workspaceFolder}"],
    "pattern": {"regexp": r"^([^\s:][^:]*\.py):(\d+): (.*)$", "file": 1, "line": 2, "message": 3},
}


def write_dag_tasks(path: Path, workspace: Path) -> None:
    """The DAG tasks as user tasks (ours, rewritten each start) when the repository has no
    .vscode/tasks.json (the pipeline repository the platform seeds has them); a user
    tasks.json of the user's own is left as it is."""
    if (workspace / ".vscode" / "tasks.json").exists():
        return
    if path.exists() and TASKS_MARK not in path.read_text(errors="replace"):
        return
    folder = os.environ.get("MLOPS_IDE_DAGS_FOLDER") or "dags"
    tasks = [
        (
            "Check DAGs",
            "mlops-ide dag check",
            "the DAG files you changed load in Airflow (also run before each push)",
        ),
        ("Check all DAGs", f"mlops-ide dag check {json.dumps(folder)}", f"every DAG file of {folder}"),
        (
            "Test this DAG",
            'mlops-ide dag test "${file}"',
            "run the open DAG file's DAG once, from your working copy",
        ),
    ]
    document = {
        "version": "2.0.0",
        "tasks": [
            {
                "label": label,
                "detail": detail,
                "type": "shell",
                "command": command,
                "group": "test",
                "problemMatcher": PROBLEM_MATCHER if command.startswith("mlops-ide dag check") else [],
            }
            for label, command, detail in tasks
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"// {TASKS_MARK} at every server start; write your own tasks.json to keep yours\n")
    with path.open("a") as out:
        out.write(json.dumps(document, indent=2) + "\n")
