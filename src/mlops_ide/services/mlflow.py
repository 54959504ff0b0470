"""MLflow's tracking server and model registry: one worker, job execution off (~450 MiB
instead of ~2.2 GiB), SQLite and local artifacts in the state folder; as the pipeline's
account when the platform runs as root."""

from __future__ import annotations

import os
from pathlib import Path

from mlops_ide import os_accounts
from mlops_ide.local_state import ensure_folder
from mlops_ide.services import Platform, PlatformService, Port, port_setting, process
from mlops_ide.settings import Settings
from mlops_ide.supervisor import Service

PORT = port_setting("MLOPS_IDE_MLFLOW_PORT", "mlflow_port", "MLflow", 5000)


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.mlflow_port}"


def server_process(
    mlflow: Path, port: int, home: Path, environ: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of `mlflow server` as the platform runs it, with its
    database and artifacts in `home`. The tests and benchmarks start their MLflow with it too."""
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


def processes(platform: Platform) -> list[Service]:
    settings = platform.settings
    home = ensure_folder(settings.home / "mlflow")
    argv, env = server_process(platform.tools.airflow_python.parent / "mlflow", settings.mlflow_port, home)
    ready = f"{url(settings)}/health"
    return [process(platform, "MLflow", argv, ready, env=env, cwd=home, account=os_accounts.PIPELINE)]


SERVICE = PlatformService(
    name="mlflow",
    title="MLflow",
    order=10,
    settings=(PORT,),
    processes=processes,
    ports=lambda settings: [Port("127.0.0.1", settings.mlflow_port, PORT.name, "MLflow")],
    url=url,
    health="/health",
    client_env=lambda settings: {"MLFLOW_TRACKING_URI": url(settings)},
)
