"""MLflow's tracking server and model registry: one worker, job execution off (~450 MiB
instead of ~2.2 GiB), SQLite and artifacts in `mlflow/`; as root, under an OS account of
its own (mlops-ide-mlflow) that alone reads that folder: the pipeline (Airflow's tasks,
serving) is a client like any other, artifacts travel over HTTP (`--artifacts-destination`,
served by MLflow), so a DAG can neither signal MLflow nor read or change its files.

MLflow has no login of its own, so it listens on a Unix socket that only root opens, never
on a port: made by the supervisor in a folder of root's (`mlflow-socket/`) and handed to
MLflow as its stdin (uvicorn's `--fd 0`; `mlflow server` closes every other descriptor when
it starts uvicorn), so neither MLflow's account nor a DAG can put another socket in its
place, also while MLflow restarts. Everyone reaches it through its gate
(mlops_ide.hub_services.mlflow_gate), a hub service under /services/mlflow/ on MLOPS_IDE_MLFLOW_PORT:
browsers with their hub login, programs with a hub token in MLFLOW_TRACKING_TOKEN (a user's
server gets one for this service at each start; Airflow's tasks and serving the token of
the hub service `pipeline`, the only identity that may change the model registry; a
preview's tasks that of `pipeline-preview`, which may too but never move `champion`).

MLflow's usage telemetry (to its makers' servers, from the server, the UI and every
client) is off unless MLOPS_IDE_MLFLOW_TELEMETRY=1: the server, Airflow and its tasks,
serving and the users' servers all get MLFLOW_DISABLE_TELEMETRY. The UI's one-time notice
about usage data is fixed in MLflow's JavaScript and still shows; it sends nothing."""

from __future__ import annotations

import os
import secrets
import socket
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_ide import names
from mlops_ide.machine.components import hub
from mlops_ide.machine.components.base import Component, Inputs, Port, port_setting, process
from mlops_ide.machine.state.credentials import ensure_secret
from mlops_ide.machine.state.layout import ensure_folder, mlflow_folder
from mlops_ide.settings import Setting, Settings, parsers

if TYPE_CHECKING:  # the hub reads these declarations; only `make up` runs processes
    from mlops_ide.supervisor.runner import Process

PROCESS = "MLflow"  # the process's name, for those that start after it
PORT = port_setting("MLOPS_IDE_MLFLOW_PORT", "mlflow_port", "MLflow (its login gate)", 5000)
TELEMETRY = Setting(
    "MLOPS_IDE_MLFLOW_TELEMETRY",
    "mlflow_telemetry",
    "`1`: MLflow's server, UI and clients (users' servers, the pipeline) send MLflow's makers "
    "usage data, as MLflow does by default",
    default="0",
    parse=parsers.flag,
    modes=("local",),
)
# MLflow's UI opens in its GenAI mode unless the page asks for the classic one: no server
# flag or variable sets the default (it is fixed in its JavaScript), but the `workflowType`
# of the page's query overrides it. So the home page and the banner link the experiments so.
CLASSIC_PAGE = "#/experiments?workflowType=machine_learning"


def telemetry_env(allowed: bool) -> dict[str, str]:
    """What stops MLflow's telemetry in a process of MLflow's (server or client): MLflow reads
    it at import (mlflow/telemetry/utils.py), and its server then tells the UI to send
    nothing (GET ajax-api/3.0/mlflow/ui-telemetry)."""
    return {} if allowed else {"MLFLOW_DISABLE_TELEMETRY": "true"}


def url(settings: Settings) -> str:
    """The tracking URI: the gate, on loopback (the clients are on this machine)."""
    return f"http://127.0.0.1:{settings.mlflow_port}{names.MLFLOW_PREFIX.rstrip('/')}"


def socket_path(settings: Settings) -> Path:
    """Where MLflow listens: in a folder of root's alone (the gate and the supervisor's health
    check, both root, connect)."""
    return settings.home / "mlflow-socket" / "sock"


def listener(settings: Settings) -> socket.socket:
    """MLflow's socket, bound here (root), kept by the supervisor across restarts. Not yet
    listening: uvicorn listens when it takes it; until then a connection is refused at once
    rather than left waiting for a server that is not there yet."""
    path = socket_path(settings)
    ensure_folder(path.parent, 0o700)
    if path.exists() or path.is_symlink():
        path.unlink()  # left by an earlier run
    made = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    made.bind(str(path))
    path.chmod(0o600)
    return made


def pipeline_token_file(settings: Settings) -> Path:
    """The `pipeline` service's hub token: root's, read by the pipeline's group."""
    return settings.home / "airflow-auth" / "mlflow_token"


def preview_token_file(settings: Settings) -> Path:
    """The `pipeline-preview` service's hub token (a preview's tasks): as the pipeline's."""
    return settings.home / "airflow-auth" / "mlflow_preview_token"


def ensure_pipeline_token(inputs: Inputs, path: Path | None = None) -> str:
    """The hub token in `path` (the pipeline's by default), made once: root's, read by the
    pipeline's group."""
    path = path or pipeline_token_file(inputs.settings)
    folder = ensure_folder(path.parent, 0o750)
    account = inputs.account(names.PIPELINE_ACCOUNT)
    if account is not None:
        os.chown(folder, 0, account.pw_gid)
    token, _ = ensure_secret(path, lambda: secrets.token_hex(32), account and account.pw_gid)
    return token


def ensure_preview_token(inputs: Inputs) -> str:
    return ensure_pipeline_token(inputs, preview_token_file(inputs.settings))


# Airflow reads a Variable `mlflow_preview_token` from this variable of its processes' environment;
# the previews' cluster policy gives a preview's tasks a template naming it (never the value, which
# the DAG would carry into Airflow's database). Its name holds `token`: Airflow's secrets masker
# hides it in rendered fields and logs.
PREVIEW_TOKEN_VARIABLE = "AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN"


def ready_for_clients(settings: Settings) -> tuple[str, ...]:
    """What a process that uses MLflow as it starts waits for, when MLflow runs: MLflow and
    the hub, which runs its gate."""
    return (hub.PROCESS, PROCESS) if names.MLFLOW in settings.services else ()


def pipeline_env(inputs: Inputs) -> dict[str, str]:
    """What a process of the pipeline (Airflow, serving) needs to use MLflow as the pipeline."""
    return {
        "MLFLOW_TRACKING_URI": url(inputs.settings),
        "MLFLOW_TRACKING_TOKEN": ensure_pipeline_token(inputs),
        **telemetry_env(inputs.settings.mlflow_telemetry),
    }


def preview_env(inputs: Inputs) -> dict[str, str]:
    """What Airflow's processes need to give a preview's tasks the preview identity."""
    return {PREVIEW_TOKEN_VARIABLE: ensure_preview_token(inputs)}


def server_process(
    mlflow: Path, port: int, home: Path, environ: dict[str, str] | None = None, telemetry: bool = False
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of `mlflow server` as the platform runs it, with its
    database and artifacts in `home`, its telemetry off unless `telemetry`. The tests and
    benchmarks start their MLflow with it too."""
    env = {
        key: value
        for key, value in (os.environ if environ is None else environ).items()
        if key != "PYTHONPATH"
    }
    # `mlflow server` runs gunicorn/uvicorn from PATH.
    env.update(
        {
            "PATH": f"{mlflow.parent}:{env.get('PATH', '/usr/bin:/bin')}",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # Its assistant (an agent with a shell on this machine) answers requests from a
            # loopback address only, whatever the environment says; the platform's MLflow
            # hears only its gate, over a Unix socket: no such address, so none.
            "MLFLOW_ENABLE_REMOTE_ASSISTANT": "false",
            **telemetry_env(telemetry),
        }
    )
    argv = [
        str(mlflow),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "artifacts"),
    ]
    return argv, env


def processes(inputs: Inputs) -> list[Process]:
    settings = inputs.settings
    home = mlflow_folder(settings)
    if inputs.account(names.MLFLOW_ACCOUNT) is None:  # as root, component_accounts made it MLflow's
        ensure_folder(home)
    sock = listener(settings)
    mlflow = inputs.tools.airflow_python.parent / "mlflow"
    argv, env = server_process(mlflow, settings.mlflow_port, home, telemetry=settings.mlflow_telemetry)
    port_at = argv.index("--port")
    del argv[port_at : port_at + 2]  # a socket, not a port: nobody reaches MLflow but through its gate
    argv += ["--static-prefix", names.MLFLOW_PREFIX.rstrip("/"), "--uvicorn-opts", "--fd 0"]
    at = urllib.parse.quote(str(socket_path(settings)), safe="")
    ready = f"http+unix://{at}{names.MLFLOW_PREFIX}health"
    return [
        process(inputs, PROCESS, argv, ready, env=env, cwd=home, account=names.MLFLOW_ACCOUNT, stdin=sock)
    ]


def gate_service(settings: Settings, python: Path, code: Path) -> dict:
    """The gate as a hub-managed hub service: the hub gives it its OAuth client; it runs as the
    hub's account (root), which a DAG, running as the pipeline's, cannot reach into."""
    return {
        "name": names.MLFLOW,
        "url": f"http://127.0.0.1:{settings.mlflow_port}",
        "command": [
            *(str(python), "-m", "mlops_ide.hub_services.mlflow_gate"),
            *("--socket", str(socket_path(settings)), "--port", str(settings.mlflow_port)),
        ],
        "environment": {"PYTHONPATH": str(code)},
        "oauth_no_confirm": True,  # one login: the hub's
        "display": False,  # the home page links it with its health
    }


def prepare(inputs: Inputs) -> list[str]:
    ensure_pipeline_token(inputs)  # before the hub, which registers them
    ensure_preview_token(inputs)
    return []


COMPONENT = Component(
    name="mlflow",
    title="MLflow",
    order=10,
    settings=(PORT, TELEMETRY),
    processes=processes,
    ports=lambda settings: [Port("127.0.0.1", settings.mlflow_port, PORT.name, "MLflow's login gate")],
    url=url,
    page=lambda settings: names.MLFLOW_PREFIX + CLASSIC_PAGE,
    health="/health",
    banner="(your hub login)",
    prepare=prepare,
    client_env=lambda settings: {
        "MLFLOW_TRACKING_URI": url(settings),
        **telemetry_env(settings.mlflow_telemetry),
    },
)
