"""JupyterHub for mlops-ide: `jupyterhub -f jupyterhub_config.py`.

Reads like a table of settings, one block per concern; the settings come from the
environment (MLOPS_IDE_*, see README and docs/kubernetes.md) through mlops_ide.settings,
and the logic lives in small tested modules under src/mlops_ide/.

MLOPS_IDE_MODE=local (default): everything on this machine, one shared password.
MLOPS_IDE_MODE=kubernetes: KubeSpawner user pods, GitHub login, idle culling.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from mlops_ide.settings import SettingsError, load  # noqa: E402

c = get_config()  # noqa: F821 - provided by JupyterHub when it reads this file

try:
    settings = load()
except SettingsError as problem:
    sys.exit(f"mlops-ide: cannot start the hub:\n{problem}")


def configure_local() -> None:
    """Everything on this machine: local processes, one shared password, the tools beside the hub."""
    from mlops_ide import airflow_local, local_state
    from mlops_ide.local_hub import PlatformHealthHandler

    try:
        tools = local_state.Tools.load()
    except local_state.StateError as problem:
        sys.exit(f"mlops-ide: cannot start the hub:\n{problem}")
    state = local_state.ensure_folder(settings.home)
    password, _ = local_state.ensure_password(settings)
    if settings.repo_url is None:
        local_state.ensure_local_remote(settings)
    bin_dir = local_state.write_code_server_shim(settings, tools)

    # -- where the hub listens, and its state ---------------------------------------------------
    c.JupyterHub.ip = settings.ip
    c.JupyterHub.port = settings.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = settings.hub_port
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")

    # -- proxy: configurable-http-proxy from npm, started and stopped by the hub ------------------
    c.ConfigurableHTTPProxy.command = [str(tools.chp)]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")

    # -- login: one shared password (any username); admins use it too ------------------------------
    c.JupyterHub.authenticator_class = "mlops_ide.local_hub.LocalPasswordAuthenticator"
    c.SharedPasswordAuthenticator.user_password = password
    c.Authenticator.allow_all = True
    c.Authenticator.admin_users = set(settings.admin_users)

    # -- user servers: local processes, homes in the state folder, VS Code first --------------------
    c.JupyterHub.spawner_class = "mlops_ide.local_hub.LocalVSCodeSpawner"
    c.SimpleLocalProcessSpawner.home_dir_template = str(settings.homes / "{username}")
    c.Spawner.cmd = [str(tools.python), "-m", "startup.start"]  # sync the repo, then jupyterhub-singleuser
    c.Spawner.default_url = "/vscode/"
    # Every local user server runs as the hub's own OS user; Jupyter refuses root unless told.
    c.Spawner.args = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 90
    c.Spawner.environment = {
        "PATH": f"{bin_dir}:{tools.python.parent}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),  # for startup.start only; it drops this before the server starts
        "MLOPS_IDE_REPO_URL": settings.effective_repo_url,
        "MLOPS_IDE_REPO_BRANCH": settings.repo_branch,
        **settings.git_credentials,  # a token for a private MLOPS_IDE_REPO_URL
    }
    if "mlflow" in settings.services:
        c.Spawner.environment["MLFLOW_TRACKING_URI"] = airflow_local.mlflow_url(settings)

    # -- the hub's home page: links to the tools, with their health ---------------------------------
    links = airflow_local.service_links(settings)  # name -> (address, health check)
    c.JupyterHub.template_paths = [str(ROOT / "src" / "mlops_ide" / "templates")]
    c.JupyterHub.template_vars = {"platform_services": {name: url for name, (url, _) in links.items()}}
    c.JupyterHub.extra_handlers = [
        (
            r"/platform/health",
            PlatformHealthHandler,
            {"checks": {name: health for name, (_, health) in links.items()}},
        ),
    ]


def configure_kubernetes() -> None:
    """User pods from the single-user image (KubeSpawner), GitHub login, idle culling."""
    from mlops_ide import kubernetes_hub

    kube = settings.kubernetes
    settings.home.mkdir(parents=True, exist_ok=True)  # the hub's volume: database, cookie secret

    # -- the hub's API, reached by the proxy and the user pods through the hub's Service ----------
    c.JupyterHub.hub_ip = settings.ip
    c.JupyterHub.hub_port = kube.hub_port
    c.JupyterHub.hub_connect_url = kube.hub_connect_url
    c.JupyterHub.db_url = kube.db_url
    c.JupyterHub.cookie_secret_file = str(settings.home / "jupyterhub_cookie_secret")
    c.JupyterHub.cleanup_servers = False  # user pods outlive a hub restart or upgrade

    # -- proxy: configurable-http-proxy in its own Deployment (CONFIGPROXY_AUTH_TOKEN shared) -----
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = kube.proxy_api_url

    # -- login: GitHub; the token is kept encrypted (JUPYTERHUB_CRYPT_KEY) and given to the pod -----
    c.JupyterHub.authenticator_class = "github"
    for name, value in kubernetes_hub.authenticator_traits(settings).items():
        setattr(c.GitHubOAuthenticator, name, value)

    # -- user servers: pods from our single-user image, a volume per user, three sizes ------------
    c.JupyterHub.spawner_class = "mlops_ide.kubernetes_hub.GitHubKubeSpawner"
    for name, value in kubernetes_hub.spawner_traits(settings).items():
        setattr(c.KubeSpawner, name, value)

    # -- idle culling: stop servers nobody used for MLOPS_IDE_IDLE_TIMEOUT seconds ----------------
    services, roles = kubernetes_hub.idle_culler(settings)
    c.JupyterHub.load_roles = roles

    # -- GitHub push webhook: a push makes Airflow re-parse now (with MLOPS_IDE_GITHUB_WEBHOOK_SECRET)
    c.JupyterHub.services = services + kubernetes_hub.push_webhook(settings)


if settings.mode == "kubernetes":
    configure_kubernetes()
else:
    configure_local()
