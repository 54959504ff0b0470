"""The git service: the local remote over HTTP for the users' servers (mlops_ide.hub_services.git_http),
as the account `mlops-ide-git` when the platform runs as root. Users push through it with
their hub token; nobody but it writes the remote. Runs whenever the platform keeps its own
remote (no MLOPS_IDE_REPO_URL)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlops_ide import names
from mlops_ide.machine.components.base import Component, Inputs, Port, port_setting, process
from mlops_ide.machine.state.layout import code_lib, ensure_folder
from mlops_ide.settings import Settings

if TYPE_CHECKING:  # the hub reads these declarations; only `make up` runs processes
    from mlops_ide.supervisor.runner import Process

PORT = port_setting("MLOPS_IDE_GIT_PORT", "git_port", "the git service (the local remote over HTTP)", 8070)


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.git_port}{names.GIT_PREFIX}"


def repo_url(settings: Settings) -> str:
    """What users clone and push to (their servers are on this machine: loopback, no TLS)."""
    return url(settings) + settings.local_remote.name


def trust_file(settings: Settings) -> Path:
    """A git config that names the remote as safe, for the pipeline's account, which clones
    it (Airflow's bundle) but does not own its folder (root does). A global config file: a
    local clone drops safe.directory given by the environment (GIT_CONFIG_COUNT)."""
    return code_lib(settings) / "remote-trust.gitconfig"


def write_trust_file(settings: Settings) -> Path:
    path = ensure_folder(code_lib(settings), 0o755) / trust_file(settings).name
    text = f"[safe]\n\tdirectory = {settings.local_remote}\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    path.chmod(0o644)
    return path


def processes(inputs: Inputs) -> list[Process]:
    settings = inputs.settings
    if settings.repo_url is not None:
        return []
    argv = [
        str(inputs.tools.python),
        "-m",
        "mlops_ide.hub_services.git_http",
        "--repo",
        str(settings.local_remote),
    ]
    argv += ["--port", str(settings.git_port), "--hub-api", f"http://127.0.0.1:{settings.hub_port}/hub/api"]
    argv += ["--admins", ",".join(settings.admin_users)]  # named to who may not skip the DAG check
    env = {"PYTHONPATH": str(code_lib(settings))}
    return [
        process(inputs, "Git service", argv, url(settings) + "health", env=env, account=names.GIT_ACCOUNT)
    ]


def ports(settings: Settings) -> list[Port]:
    if settings.repo_url is not None:
        return []
    return [Port("127.0.0.1", settings.git_port, PORT.name, "the git service")]


COMPONENT = Component(
    name=names.GIT,
    title="Git",
    order=-10,  # listed first: the hub waits up to 30 s at start for the hub services it routes to
    optional=False,  # runs with the platform's own remote, whatever MLOPS_IDE_SERVICES says
    settings=(PORT,),
    processes=processes,
    ports=ports,
)
