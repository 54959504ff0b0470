"""`make up`: prepare the local state, start the platform in the foreground, stop it all
on Ctrl-C or SIGTERM.

    python -m mlops_ide.up
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from pathlib import Path

from mlops_ide import airflow_local, local_state
from mlops_ide.settings import CHECKOUT, Settings, SettingsError, load
from mlops_ide.supervisor import Service, Supervisor


def say(line: str) -> None:
    print(line, flush=True)


def check_ports_free(settings: Settings) -> list[str]:
    """One message per port that something else already listens on."""
    wanted = [  # (host, port, the setting that moves it, what it is for)
        (settings.ip, settings.port, "MLOPS_IDE_PORT", "the hub's address"),
        ("127.0.0.1", settings.hub_port, "MLOPS_IDE_PORT", "MLOPS_IDE_PORT+1, the hub's internal API"),
        ("127.0.0.1", settings.proxy_api_port, "MLOPS_IDE_PORT", "MLOPS_IDE_PORT+2, the proxy's API"),
    ]
    if "airflow" in settings.services:
        port = settings.airflow_port
        wanted += [
            ("127.0.0.1", port, "MLOPS_IDE_AIRFLOW_PORT", "Airflow's API and UI"),
            ("0.0.0.0", port + 1, "MLOPS_IDE_AIRFLOW_PORT", "MLOPS_IDE_AIRFLOW_PORT+1, Airflow's task logs"),
            (
                "0.0.0.0",
                port + 2,
                "MLOPS_IDE_AIRFLOW_PORT",
                "MLOPS_IDE_AIRFLOW_PORT+2, Airflow's trigger logs",
            ),
        ]
    if "mlflow" in settings.services:
        wanted.append(("127.0.0.1", settings.mlflow_port, "MLOPS_IDE_MLFLOW_PORT", "MLflow"))
    if "serving" in settings.services:
        wanted.append(("127.0.0.1", settings.serving_port, "MLOPS_IDE_SERVING_PORT", "the model-serving API"))
    if "app" in settings.services:
        wanted.append(("127.0.0.1", settings.app_port, "MLOPS_IDE_APP_PORT", "the Streamlit app"))
    problems = []
    for host, port, setting, what in wanted:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the hub and the proxy bind: connections of a previous run that linger in
            # TIME_WAIT do not stop them, so they must not stop us either.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                reason = "in use" if error.errno == errno.EADDRINUSE else error.strerror
                label = what if what.startswith(setting) else f"{setting}, {what}"
                problems.append(
                    f"port {port} on {host} ({label}) is {reason}: stop what uses it "
                    f"(`ss -ltnp | grep :{port}`) or set {setting} to another port."
                )
    return problems


def hub_service(settings: Settings, tools: local_state.Tools) -> Service:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = f"{tools.python.parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return Service(
        name="JupyterHub",
        argv=[str(tools.python), "-m", "jupyterhub", "-f", str(CHECKOUT / "jupyterhub_config.py")],
        env=env,
        cwd=settings.home,
        log=settings.home / "logs" / "jupyterhub.log",
        # Through the proxy: it answers 404 until the hub has added its own route.
        ready_url=f"{settings.public_url.replace('0.0.0.0', '127.0.0.1')}hub/api",
    )


def main() -> int:
    try:
        settings = load()
        tools = local_state.Tools.load()
    except (SettingsError, local_state.StateError) as problem:
        say(f"mlops-ide: cannot start:\n{problem}")
        return 2
    problems = check_ports_free(settings)
    if problems:
        say("mlops-ide: cannot start:\n" + "\n".join(problems))
        return 2

    say(f"==> Preparing the state folder {settings.home}")
    local_state.ensure_folder(settings.home)
    password, made = local_state.ensure_password(settings)
    if settings.repo_url is None:
        remote, how = local_state.ensure_local_remote(settings)
        say(f"   local git remote {remote} ({how})")
    else:
        say(f"   pipeline repository {settings.repo_url} (MLOPS_IDE_REPO_URL)")

    services = [hub_service(settings, tools)]
    if "mlflow" in settings.services:
        services.append(airflow_local.mlflow_service(settings, tools))
    if "serving" in settings.services:
        services.append(airflow_local.serving_service(settings, tools))
    if "app" in settings.services:
        services.append(airflow_local.app_service(settings, tools))
    if {"airflow", "serving"} & set(settings.services):
        say(f"   skin-lesion dataset {settings.dataset} ({airflow_local.seed_dataset(settings, tools)})")
    if "airflow" in settings.services:
        env = airflow_local.airflow_env(settings, tools, password)
        say("   Airflow database (first start: about 20 s)")
        airflow_local.migrate_airflow_db(env, tools, settings.home / "logs" / "airflow-db-migrate.log")
        services += airflow_local.airflow_services(settings, tools, env)
        if settings.repo_url is None:
            airflow_local.install_push_hook(settings, tools)

    say("==> Starting the platform")
    started = time.monotonic()
    supervisor = Supervisor(services, say=say)
    supervisor.handle_signals()
    try:
        if not supervisor.start():
            return 1
        where = (
            f"generated{' now' if made else ''}, kept in {settings.home / 'password'}"
            if settings.password is None
            else "from MLOPS_IDE_PASSWORD"
        )
        say("")
        say(f"mlops-ide is up in {time.monotonic() - started:.1f} s: {settings.public_url}")
        say(f"   log in with any username and the password: {password}")
        say(f"   ({where}; admins: {', '.join(settings.admin_users)})")
        if "airflow" in settings.services:
            say(f"   Airflow: {airflow_local.airflow_url(settings)}/  (user admin, the same password)")
        if "mlflow" in settings.services:
            say(f"   MLflow:  {airflow_local.mlflow_url(settings)}/")
        if "serving" in settings.services:
            say(f"   Serving: {airflow_local.serving_url(settings)}/docs  (the champion model's API)")
        if "app" in settings.services:
            say(f"   App:     {airflow_local.app_url(settings)}/  (upload an image, see the prediction)")
        say(f"   logs: {settings.home / 'logs'}    stop: Ctrl-C")
        supervisor.watch()
    finally:
        say("==> Stopping the platform")
        supervisor.stop()
        say("   stopped")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
