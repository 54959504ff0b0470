"""Kubernetes mode: user pods from the single-user image (KubeSpawner), GitHub login with
the token kept encrypted for the pod, idle culling, and the GitHub push webhook. The proxy,
MLflow, serving and Airflow run as their own Deployments (deploy/, Airflow's Helm chart).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlops_ide.settings import Settings, Values, read, table

NAME = "kubernetes"


def callback_needs_a_host(values: Values, env: Mapping[str, str]) -> Iterable[str]:
    if not values.get("github_callback_url") and not env.get("MLOPS_IDE_HUB_HOST", "").strip():
        yield (
            "MLOPS_IDE_HUB_HOST is not set: set it to the hub's public host name, e.g. hub.example.org "
            "(or set MLOPS_IDE_GITHUB_CALLBACK_URL to https://<host>/hub/oauth_callback)."
        )


def somebody_may_log_in(values: Values, env: Mapping[str, str]) -> Iterable[str]:
    if not values.get("allowed_organizations") and not values.get("allowed_users"):
        yield (
            "Nobody may log in: set MLOPS_IDE_GITHUB_ALLOWED_ORGS (organizations or org:team) "
            "and/or MLOPS_IDE_GITHUB_ALLOWED_USERS (GitHub logins)."
        )


def webhook_can_reach_airflow(values: Values, env: Mapping[str, str]) -> Iterable[str]:
    if values.get("webhook_secret") and not values.get("airflow_password"):
        yield (
            "MLOPS_IDE_GITHUB_WEBHOOK_SECRET is set but MLOPS_IDE_AIRFLOW_PASSWORD is not: the webhook "
            "logs in to Airflow's API to ask for a re-parse; set the password of MLOPS_IDE_AIRFLOW_USERNAME "
            "(default mlops-ide-webhook), or unset the secret to rely on the bundle's refresh."
        )


def user_domain_is_the_hubs(values: Values, env: Mapping[str, str]) -> Iterable[str]:
    domain, host = values.get("user_domain"), values.get("hub_host")
    if domain and domain != host:
        yield (
            f"MLOPS_IDE_USER_DOMAIN is {domain} but the hub is served at {host}: JupyterHub serves the "
            "users' hosts as subdomains of the hub's own, so set MLOPS_IDE_USER_DOMAIN to MLOPS_IDE_HUB_HOST "
            "(users at https://<name>.<host>/) or unset it."
        )


def previews_have_an_identity_of_their_own(values: Values, env: Mapping[str, str]) -> Iterable[str]:
    """A preview's tasks use MLflow as `pipeline-preview`, never as the pipeline: its own token."""
    token = values.get("mlflow_preview_token")
    if values.get("previews_outside") and not token:
        yield (
            "MLOPS_IDE_PREVIEWS_OUTSIDE=1 but MLOPS_IDE_MLFLOW_PREVIEW_TOKEN is not set: a preview's "
            "tasks use MLflow with a token of their own (never `champion`); make one with "
            "`openssl rand -hex 32` and put it in both Secrets (docs/kubernetes.md, step 3), or set "
            "MLOPS_IDE_PREVIEWS_OUTSIDE=0."
        )
    if token and token == values.get("mlflow_pipeline_token"):
        yield (
            "MLOPS_IDE_MLFLOW_PREVIEW_TOKEN is the pipeline's token (MLOPS_IDE_MLFLOW_PIPELINE_TOKEN): "
            "a preview would use MLflow as the pipeline and could move `champion`; make another with "
            "`openssl rand -hex 32` (docs/kubernetes.md, step 3)."
        )


RULES = (
    callback_needs_a_host,
    somebody_may_log_in,
    webhook_can_reach_airflow,
    user_domain_is_the_hubs,
    previews_have_an_identity_of_their_own,
)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    return read(table.rows(), NAME, RULES, environ)


def configure(c: Any, settings: Settings) -> None:
    """The hub's configuration for Kubernetes, one block per concern."""
    # here, not at the top: `make up` and the local hub load this module (its settings) too,
    # and KubeSpawner with the Kubernetes client costs ~0.8 s of each start
    from mlops_ide.hub import idle_culling, kubernetes_spawner, proxy_refusals

    settings.home.mkdir(parents=True, exist_ok=True)  # the hub's volume: database, cookie secret

    # -- the hub's API, reached by the proxy and the user pods through the hub's Service ----------
    c.JupyterHub.hub_ip = settings.ip
    c.JupyterHub.hub_port = settings.hub_port
    c.JupyterHub.hub_connect_url = settings.hub_connect_url
    c.JupyterHub.db_url = settings.db_url
    c.JupyterHub.cookie_secret_file = str(settings.home / "jupyterhub_cookie_secret")
    c.JupyterHub.cleanup_servers = False  # user pods outlive a hub restart or upgrade
    if settings.user_domain:  # each server its own origin: https://<name>.<domain>/
        c.JupyterHub.subdomain_host = f"https://{settings.user_domain}"
        # __Host- cookies: a user's page cannot set the hub's cookies for the parent domain
        c.JupyterHub.cookie_host_prefix_enabled = True

    # -- proxy: configurable-http-proxy in its own Deployment (CONFIGPROXY_AUTH_TOKEN shared) -----
    c.JupyterHub.proxy_class = idle_culling.ProxyWithoutActivity  # its activity: every frame
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = settings.proxy_api_url

    # -- login: GitHub; the token is kept encrypted (JUPYTERHUB_CRYPT_KEY) and given to the pod -----
    c.JupyterHub.authenticator_class = "github"
    for name, value in kubernetes_spawner.authenticator_traits(settings).items():
        setattr(c.GitHubOAuthenticator, name, value)

    # -- user servers: pods from our single-user image, a volume per user, three sizes ------------
    c.JupyterHub.spawner_class = "mlops_ide.hub.kubernetes_spawner.GitHubKubeSpawner"
    for name, value in kubernetes_spawner.spawner_traits(settings).items():
        setattr(c.KubeSpawner, name, value)

    # -- idle culling: stop servers nobody used for MLOPS_IDE_IDLE_TIMEOUT seconds ----------------
    # (what counts: the server's report, startup/server_activity.py; VS Code's traffic does not)
    services, roles = idle_culling.idle_culler(settings)

    # -- MLflow behind the hub: its gate in this pod, the pipeline's identity, who may use it -----
    gate_services, gate_roles = kubernetes_spawner.mlflow_gate(settings)
    services += gate_services

    # -- Airflow's UI through the hub, logged in as yourself (with MLOPS_IDE_AIRFLOW_OAUTH_SECRET) -
    airflow_services, airflow_scopes = kubernetes_spawner.airflow_ui(settings)
    services += airflow_services
    if airflow_services:  # its password login (the webhook's): inside the cluster, never through the proxy
        c.Proxy.extra_routes, refusal = proxy_refusals.airflow_password_login(settings.hub_connect_url)
        c.JupyterHub.extra_handlers = [refusal]
    for role in gate_roles:
        if role["name"] == "user":
            role["scopes"] += airflow_scopes
    c.JupyterHub.load_roles = roles + gate_roles

    # -- GitHub push webhook: a push makes Airflow re-parse now (with MLOPS_IDE_GITHUB_WEBHOOK_SECRET)
    c.JupyterHub.services = services + kubernetes_spawner.push_webhook(settings)
