"""Airflow 3 and MLflow as services of the local platform.

Airflow reads its DAGs from the same git remote the users push to (a GitDagBundle, the
connection given by environment), keeps its state in SQLite in the state folder, and lets
`admin` and the hub's admins in with the hub's password. MLflow runs one worker with job
execution off (~450 MiB instead of ~2.2 GiB). Everything here builds configuration; the
supervisor runs it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from pathlib import Path

from mlops_ide.local_state import Tools, ensure_folder, ensure_secret
from mlops_ide.settings import CHECKOUT, Settings
from mlops_ide.supervisor import Service

BUNDLE_NAME = "pipelines"
GIT_CONN_ID = "mlops_ide_pipelines"
ANCHOR_DAG = "platform_smoke_test"  # always valid; the push hook names it (see dags/)
AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def airflow_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.airflow_port}"


def mlflow_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.mlflow_port}"


def serving_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.serving_port}"


def airflow_users(settings: Settings) -> list[str]:
    return sorted({"admin", *settings.admin_users})


def write_airflow_passwords(settings: Settings, password: str) -> Path:
    """The simple auth manager's users file: every Airflow user has the hub's password."""
    path = ensure_folder(settings.home / "airflow") / "passwords.json"
    partial = path.with_name(".passwords.json.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(dict.fromkeys(airflow_users(settings), password), out)
    os.replace(partial, path)
    return path


def airflow_env(settings: Settings, tools: Tools, password: str) -> dict[str, str]:
    home = ensure_folder(settings.home / "airflow")
    jwt_secret, _ = ensure_secret(home / "jwt_secret", lambda: secrets.token_urlsafe(64))
    api_secret, _ = ensure_secret(home / "api_secret_key", lambda: secrets.token_urlsafe(32))
    bundle = {
        "name": BUNDLE_NAME,
        "classpath": "airflow.providers.git.bundles.git.GitDagBundle",
        "kwargs": {
            "git_conn_id": GIT_CONN_ID,
            "tracking_ref": settings.repo_branch,
            "subdir": "dags",
            "refresh_interval": 60,
        },  # a safety net; pushes refresh at once
    }
    venv_bin = tools.airflow_python.parent
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "PYTHONPATH"))}
    env.update(
        {
            "PATH": f"{venv_bin}:{env.get('PATH', '/usr/bin:/bin')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",  # the default 32 starts 32 idle workers on 2 cores
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # pushed means meant to run
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{u}:admin" for u in airflow_users(settings)
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                write_airflow_passwords(settings, password)
            ),
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
            "AIRFLOW__API__SECRET_KEY": api_secret,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(settings.airflow_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": airflow_url(settings) + "/",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": airflow_url(settings) + "/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_port + 1),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_port + 2),
            # An edited DAG is parsed within a second of its push, but by default its new
            # serialization is written at most every 30 s: a push would look ignored that long.
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle]),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "dag_bundles"),
            f"AIRFLOW_CONN_{GIT_CONN_ID.upper()}": json.dumps(
                {"conn_type": "git", "host": settings.effective_repo_url}
            ),
        }
    )
    if "mlflow" in settings.services:
        env["MLFLOW_TRACKING_URI"] = mlflow_url(settings)
    env.update(
        {  # read by the skin-lesion DAGs at parse time (environment only, no I/O)
            "MLOPS_IDE_PIPELINE_RUNNER": "local",
            "MLOPS_IDE_PIPELINE_PYTHON": str(tools.pipeline_python),
            "MLOPS_IDE_DATA_ROOT": str(settings.dataset),
            "MLOPS_IDE_WORK_ROOT": str(settings.home / "pipeline-runs"),
            "MLOPS_IDE_SERVING_URL": serving_url(settings),
        }
    )
    return env


def migrate_airflow_db(env: dict[str, str], tools: Tools, log: Path) -> None:
    """Create or upgrade Airflow's database (one-shot, before its services start)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.run(
            [str(tools.airflow_python.parent / "airflow"), "db", "migrate"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )


def airflow_services(settings: Settings, tools: Tools, env: dict[str, str]) -> list[Service]:
    airflow = str(tools.airflow_python.parent / "airflow")
    logs = settings.home / "logs"
    cwd = settings.home / "airflow"

    def service(name: str, command: str, **extra: object) -> Service:
        return Service(
            name=f"Airflow {name}",
            argv=[airflow, command],
            env=env,
            cwd=cwd,
            log=logs / f"airflow-{command}.log",
            **extra,
        )

    return [
        service("API server", "api-server", ready_url=f"{airflow_url(settings)}/api/v2/monitor/health"),
        # SIGINT: the scheduler stops its LocalExecutor workers too (SIGTERM leaves them).
        service("scheduler", "scheduler", stop_signal=signal.SIGINT),
        service("DAG processor", "dag-processor", stop_signal=signal.SIGINT),
        service("triggerer", "triggerer", stop_signal=signal.SIGINT),
    ]


def mlflow_server_process(
    mlflow: Path, port: int, home: Path, environ: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of `mlflow server` as the platform runs it: one worker,
    job execution off (~450 MiB instead of ~2.2 GiB), SQLite and local artifacts in `home`.
    The tests and benchmarks start their MLflow with it too."""
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


def mlflow_service(settings: Settings, tools: Tools) -> Service:
    home = ensure_folder(settings.home / "mlflow")
    argv, env = mlflow_server_process(tools.airflow_python.parent / "mlflow", settings.mlflow_port, home)
    return Service(
        name="MLflow",
        argv=argv,
        env=env,
        cwd=home,
        log=settings.home / "logs" / "mlflow.log",
        ready_url=f"{mlflow_url(settings)}/health",
    )


def seed_dataset(settings: Settings, tools: Tools) -> str:
    """A small synthetic dataset for the demo, once; a real one put there is kept."""
    if (settings.dataset / "train").exists():
        return "kept"
    subprocess.run(
        [str(tools.pipeline_python), "-m", "skin_cancer.synthetic", "--out", str(settings.dataset)],
        env={**os.environ, "PYTHONPATH": str(CHECKOUT / "src")},
        check=True,
        capture_output=True,
    )
    return "seeded with synthetic images"


def serving_service(settings: Settings, tools: Tools) -> Service:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "KERAS_BACKEND")}
    env.update(
        {
            "PYTHONPATH": str(CHECKOUT / "src"),
            "MLFLOW_TRACKING_URI": mlflow_url(settings),
            "PATH": f"{tools.pipeline_python.parent}:{env.get('PATH', '/usr/bin:/bin')}",
        }
    )
    return Service(
        name="Serving",
        argv=[str(tools.pipeline_python), "-m", "skin_cancer.serving", "--port", str(settings.serving_port)],
        env=env,
        cwd=settings.home,
        log=settings.home / "logs" / "serving.log",
        # Ready once it answers at all: /health says 503 until a champion exists.
        ready_url=f"{serving_url(settings)}/openapi.json",
    )


def app_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.app_port}"


def app_service(settings: Settings, tools: Tools) -> Service:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["SKIN_CANCER_API_URL"] = serving_url(settings)
    return Service(
        name="App",
        argv=[
            str(tools.app_python),
            "-m",
            "streamlit",
            "run",
            str(CHECKOUT / "src" / "skin_cancer" / "app.py"),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(settings.app_port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        env=env,
        cwd=settings.home,
        log=settings.home / "logs" / "app.log",
        ready_url=f"{app_url(settings)}/_stcore/health",
    )


def service_links(settings: Settings) -> dict[str, tuple[str, str]]:
    """For the hub's home page: each running service's address and health check."""
    links = {
        "airflow": ("Airflow", airflow_url(settings) + "/", airflow_url(settings) + "/api/v2/monitor/health"),
        "mlflow": ("MLflow", mlflow_url(settings) + "/", mlflow_url(settings) + "/health"),
        "serving": ("Serving", serving_url(settings) + "/docs", serving_url(settings) + "/health"),
        "app": ("App", app_url(settings) + "/", app_url(settings) + "/_stcore/health"),
    }
    return {name: (url, health) for key, (name, url, health) in links.items() if key in settings.services}


def install_push_hook(settings: Settings, tools: Tools) -> Path:
    """The local remote's post-receive hook: after a push to the tracked branch, ask
    Airflow to re-parse the bundle, in the background so the push is not slowed.
    Rewritten at every start: the file is ours."""
    hook = settings.local_remote / "hooks" / "post-receive"
    log = settings.home / "logs" / "post-receive.log"
    refresh = CHECKOUT / "src" / "mlops_ide" / "dag_refresh.py"
    hook.write_text(
        "#!/bin/sh\n"
        "# Written by mlops-ide at every start: tell Airflow about the push now rather than\n"
        "# at its next bundle refresh. In the background: the push is not slowed.\n"
        "while read -r old new ref; do\n"
        f'  [ "$ref" = "refs/heads/{settings.repo_branch}" ] || continue\n'
        f'  nohup "{tools.python}" "{refresh}" --airflow-url "{airflow_url(settings)}" '
        f'--passwords-file "{settings.home / "airflow" / "passwords.json"}" --dag "{ANCHOR_DAG}" '
        f'>> "{log}" 2>&1 < /dev/null &\n'
        "done\n"
    )
    hook.chmod(0o755)
    return hook
