"""Local mode: everything on this machine. The hub starts user servers as local processes
(homes in the state folder, VS Code first) behind its own configurable-http-proxy, logs
people in with an account and a password each, and links the components `make up` runs
beside it.

`configure()` only sets configuration: `make up` (mlops_ide.supervisor.up) prepares the state folder
(password, git remote, code-server shim) before it starts the hub.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from mlops_ide import names
from mlops_ide.machine import components, os_accounts
from mlops_ide.machine.components import airflow, git, mlflow
from mlops_ide.machine.state import compile_cache
from mlops_ide.machine.state.credentials import read_password, read_secret
from mlops_ide.machine.state.layout import (
    accounts_token_file,
    code_lib,
    code_server_bin,
    hub_db_url,
    kernels_folder,
    push_status_file,
)
from mlops_ide.machine.state.tools import Tools
from mlops_ide.settings import CHECKOUT, Settings, Values, parsers, read, table

NAME = "local"


def room_for_the_internal_ports(values: Values, env: Mapping[str, str]) -> Iterable[str]:
    if isinstance(values.get("port"), int) and values["port"] > 65533:
        yield (
            f"MLOPS_IDE_PORT={values['port']} leaves no room for the hub's two internal ports "
            "(port+1, port+2): set 65533 or lower."
        )


def off_loopback_only_safely(values: Values, env: Mapping[str, str]) -> Iterable[str]:
    """Beyond this machine, passwords travel only over HTTPS, unless plain HTTP is asked for."""
    cert, key = values.get("ssl_cert"), values.get("ssl_key")
    if bool(cert) != bool(key):
        yield "MLOPS_IDE_SSL_CERT and MLOPS_IDE_SSL_KEY go together: set both (the certificate and its key)."
    ip = values.get("ip")
    if not isinstance(ip, str) or parsers.is_loopback(ip) or (cert and key) or values.get("allow_http"):
        return
    yield (
        f"MLOPS_IDE_IP={ip} serves the login page beyond this machine over plain HTTP: set "
        "MLOPS_IDE_SSL_CERT and MLOPS_IDE_SSL_KEY (the hub serves HTTPS), or MLOPS_IDE_ALLOW_HTTP=1 "
        "to accept passwords in clear text."
    )


def admins_are_local_usernames(values: Values, env: Mapping[str, str]) -> Iterable[str]:
    admins = values.get("admin_users")
    bad = [name for name in admins if not names.USERNAME.fullmatch(name)] if isinstance(admins, tuple) else []
    if bad:
        yield (
            f"MLOPS_IDE_ADMIN_USERS has names longer than 23 characters ({', '.join(bad)}): shorten them "
            "(local usernames become OS account names)."
        )


def shared_password_on_loopback_only(values: Values, env: Mapping[str, str]) -> Iterable[str]:
    ip = values.get("ip")
    if values.get("auth") == "shared" and isinstance(ip, str) and not parsers.is_loopback(ip):
        yield (
            f"MLOPS_IDE_AUTH=shared lets anyone with the one password in under any name, and "
            f"MLOPS_IDE_IP={ip} is beyond this machine: use MLOPS_IDE_AUTH=native (the default), "
            "or serve on 127.0.0.1."
        )


RULES = (
    room_for_the_internal_ports,
    off_loopback_only_safely,
    admins_are_local_usernames,
    shared_password_on_loopback_only,
)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    return read(table.rows(), NAME, RULES, environ)


def configure(c: Any, settings: Settings) -> None:
    """The hub's configuration for local mode, one block per concern."""
    from mlops_ide.hub import idle_culling, proxy_refusals
    from mlops_ide.hub.database import commit_without_waiting_for_the_disk
    from mlops_ide.hub.health import PlatformHealthHandler

    tools = Tools.load()
    password = read_password(settings)
    state = settings.home

    # -- where the hub listens, and its state ---------------------------------------------------
    c.JupyterHub.ip = settings.ip
    c.JupyterHub.port = settings.port
    if settings.ssl_cert:
        c.JupyterHub.ssl_cert = settings.ssl_cert
        c.JupyterHub.ssl_key = settings.ssl_key
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = settings.hub_port
    c.JupyterHub.db_url = hub_db_url(settings)
    commit_without_waiting_for_the_disk()
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")

    # -- proxy: configurable-http-proxy from npm, started and stopped by the hub ------------------
    c.JupyterHub.proxy_class = idle_culling.ProxyWithoutActivity  # its activity: every frame
    c.ConfigurableHTTPProxy.command = [str(tools.chp)]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")

    # -- login: an account and a password per person; admins approve signups at /hub/authorize --
    c.Authenticator.admin_users = set(settings.admin_users)
    if settings.auth == "native":
        c.JupyterHub.authenticator_class = "mlops_ide.hub.authenticators.LocalNativeAuthenticator"
        c.LocalNativeAuthenticator.enable_signup = True
        c.LocalNativeAuthenticator.open_signup = False  # an admin approves each signup
        c.LocalNativeAuthenticator.minimum_password_length = 8
        c.LocalNativeAuthenticator.check_common_password = True
        c.LocalNativeAuthenticator.allowed_failed_logins = 5
        c.LocalNativeAuthenticator.seconds_before_next_try = 300
        c.Authenticator.username_pattern = rf"{names.USERNAME.pattern}\Z"  # the hub matches the start only
        c.Authenticator.allow_all = True  # everyone it lets in is authorized by an admin (or the CLI)
    else:  # MLOPS_IDE_AUTH=shared, on loopback only: any name, one password
        c.JupyterHub.authenticator_class = "mlops_ide.hub.authenticators.LocalPasswordAuthenticator"
        c.SharedPasswordAuthenticator.user_password = password
        c.Authenticator.allow_all = True

    # -- user servers: local processes, homes in the state folder, VS Code first --------------------
    c.JupyterHub.spawner_class = "mlops_ide.hub.local_spawner.LocalVSCodeSpawner"
    c.SimpleLocalProcessSpawner.home_dir_template = str(settings.homes / "{username}")
    c.Spawner.cmd = [str(tools.python), "-m", "startup.start"]  # sync the repo, then jupyterhub-singleuser
    c.Spawner.default_url = "/vscode/"
    # As root, each server runs as its user's own OS account; otherwise all run as the hub's
    # (which Jupyter refuses for root unless told).
    c.LocalVSCodeSpawner.os_accounts = os_accounts.enabled()
    c.LocalVSCodeSpawner.preloaded = settings.preloaded_servers
    c.LocalVSCodeSpawner.code_server_cache = str(compile_cache.cache_folder(tools.code_server) or "")
    c.Spawner.args = (
        ["--ServerApp.allow_root=True"] if os.geteuid() == 0 and not os_accounts.enabled() else []
    )
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 90
    # No MLOPS_IDE_GIT_TOKEN: the operator's token is the platform's (Airflow's bundle);
    # people clone a team's repository with their own credentials.
    c.Spawner.environment = {
        # code-server and the user's commands (mlops_ide.workspace.user_tools: `python` is the pipeline's),
        # then the server's own
        "PATH": f"{code_server_bin(settings)}:{tools.python.parent}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(code_lib(settings)),  # for startup.start only; it drops it
        "MLOPS_IDE_REPO_URL": settings.repo_url or git.repo_url(settings),
        "MLOPS_IDE_REPO_BRANCH": settings.repo_branch,
        "MLOPS_IDE_DAGS_FOLDER": settings.dags_folder,
        # Airflow's verdict on the last push (`mlops-ide dag status`), written by the push check
        "MLOPS_IDE_PUSH_STATUS_FILE": str(push_status_file(settings)),
        "MLOPS_IDE_SYNC_TIMEOUT": str(settings.sync_timeout),
        "MLOPS_IDE_VSCODE_GALLERY": settings.vscode_gallery,
        # the pipeline's Python: `python` on PATH (its bin above), VS Code's, the kernel's
        "MLOPS_IDE_USER_PYTHON": str(tools.pipeline_python),
        "JUPYTER_PATH": str(kernels_folder(settings)),
        # what counts as activity (startup/server_activity.py), reported every minute
        "JUPYTER_CONFIG_PATH": str(code_lib(settings) / "startup" / "jupyter_config"),
        "JUPYTERHUB_ACTIVITY_INTERVAL": str(idle_culling.activity_interval(settings)),
        **components.client_env(settings),  # MLFLOW_TRACKING_URI, when MLflow runs
    }

    # -- services behind the hub's login, and what users may reach -----------------------------------
    # -- idle culling: stop servers nobody used for MLOPS_IDE_IDLE_TIMEOUT seconds (homes stay) -----
    hub_services, roles = idle_culling.idle_culler(settings)
    user_scopes = ["self"]
    if settings.repo_url is None:  # the platform's own remote: users push with their hub token
        hub_services.append(
            {"name": names.GIT, "url": f"http://127.0.0.1:{settings.git_port}", "display": False}
        )
        user_scopes.append(names.GIT_SCOPE)
        c.LocalVSCodeSpawner.git_token = True
    if names.MLFLOW in settings.services:  # MLflow through its gate, as yourself or as the pipeline
        hub_services.append(mlflow.gate_service(settings, tools.python, code_lib(settings)))
        token = read_secret(mlflow.pipeline_token_file(settings))
        hub_services.append({"name": names.PIPELINE, "api_token": token, "display": False})
        roles.append({"name": "pipeline", "scopes": [names.MLFLOW_SCOPE], "services": [names.PIPELINE]})
        # a preview's tasks: the gate lets them do what the pipeline does but move `champion`
        token = read_secret(mlflow.preview_token_file(settings))
        hub_services.append({"name": names.PIPELINE_PREVIEW, "api_token": token, "display": False})
        roles.append(
            {"name": "pipeline-preview", "scopes": [names.MLFLOW_SCOPE], "services": [names.PIPELINE_PREVIEW]}
        )
        user_scopes.append(names.MLFLOW_SCOPE)
        c.LocalVSCodeSpawner.mlflow_token = True
    refused_routes, refusal = proxy_refusals.airflow_password_login(f"http://127.0.0.1:{settings.hub_port}")
    if names.AIRFLOW in settings.services:  # Airflow's UI through the hub, logged in as yourself
        hub_services.append(airflow.hub_service(settings))
        user_scopes.append(names.AIRFLOW_SCOPE)
        # its password login (the platform's account, ADMIN) on 127.0.0.1 only, never through the proxy
        c.Proxy.extra_routes = refused_routes
    if settings.auth == "native":  # `make users ARGS='remove NAME'` through the running hub
        token = read_secret(accounts_token_file(settings))
        hub_services.append({"name": names.ACCOUNTS, "api_token": token, "display": False})
        roles.append({"name": names.ACCOUNTS, "scopes": ["delete:users"], "services": [names.ACCOUNTS]})
    c.JupyterHub.services = hub_services
    c.JupyterHub.load_roles = [
        {"name": "user", "description": "Standard user privileges", "scopes": user_scopes},
        *roles,
    ]

    # -- the hub's home page: links to the tools, with their health ---------------------------------
    c.JupyterHub.template_paths = [str(CHECKOUT / "src" / "mlops_ide" / "hub" / "templates")]
    c.JupyterHub.template_vars = {
        "platform_services": {title: page for title, (page, _) in components.links(settings).items()},
        "platform_waiting": components.waiting_steps(settings),  # title -> (where to act, link text)
        "dags_folder": settings.dags_folder,  # the first steps name it
    }
    c.JupyterHub.extra_handlers = [
        (r"/platform/health", PlatformHealthHandler, {"checks": components.health_checks(settings)}),
        *([refusal] if names.AIRFLOW in settings.services else []),
    ]
