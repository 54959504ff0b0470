"""Kubernetes mode: KubeSpawner user pods from the single-user image, logged in with GitHub.

The user's GitHub token (from the encrypted auth state) reaches the pod as a file from a
Kubernetes Secret made for that pod and owned by it (deleted with it), never as a plain
value in the pod spec; the startup hook's credential helper reads the file when git asks.

Everything here builds plain data (traits for the config, manifests) so that tests can
build the exact pod KubeSpawner would create and validate it against Kubernetes' schema.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.utils import exponential_backoff
from kubernetes_asyncio.client import V1ObjectMeta, V1Secret
from kubespawner import KubeSpawner
from kubespawner.objects import make_owner_reference
from traitlets import default

from mlops_ide import names
from mlops_ide.hub import service_tokens
from mlops_ide.hub.idle_culling import activity_interval
from mlops_ide.hub_services.push_webhook import settings_rows as push_webhook_settings
from mlops_ide.machine.components import mlflow
from mlops_ide.settings import Settings

HOME = "/home/jovyan"  # the docker-stacks user's home: the user's volume is mounted here
UID, GID = 1000, 100  # jovyan:users in the docker-stacks images
GIT_TOKEN_DIR = "/var/run/secrets/mlops-ide/git"
GIT_TOKEN_KEY = "token"
GPU_RESOURCE = "nvidia.com/gpu"

# (slug, name, description, guarantees, limits, GPUs); requests = guarantees.
PROFILES = (
    ("small", "Small (CPU)", "2 CPU, 4 GB: editing, git, small experiments", (0.5, "1G"), (2, "4G"), 0),
    ("large", "Large (CPU)", "8 CPU, 32 GB: training on CPU", (4, "16G"), (8, "32G"), 0),
    ("gpu", "GPU", "1 NVIDIA GPU, 8 CPU, 48 GB: training on GPU", (4, "24G"), (8, "48G"), 1),
)


def profile_list() -> list[dict[str, Any]]:
    """KubeSpawner's profile_list: the first profile is the default."""
    profiles = []
    for index, (slug, name, description, (cpu_req, mem_req), (cpu_lim, mem_lim), gpus) in enumerate(PROFILES):
        override: dict[str, Any] = {
            "cpu_guarantee": cpu_req,
            "mem_guarantee": mem_req,
            "cpu_limit": cpu_lim,
            "mem_limit": mem_lim,
        }
        if gpus:
            override["extra_resource_guarantees"] = {GPU_RESOURCE: str(gpus)}
            override["extra_resource_limits"] = {GPU_RESOURCE: str(gpus)}
            # GPU nodes are usually tainted so that only pods asking for GPUs land there.
            override["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
        profiles.append(
            {
                "slug": slug,
                "display_name": name,
                "description": description,
                "default": index == 0,
                "kubespawner_override": override,
            }
        )
    return profiles


def spawner_traits(settings: Settings) -> dict[str, Any]:
    """Traits for GitHubKubeSpawner (applied as c.KubeSpawner.<name> in jupyterhub_config.py)."""
    traits: dict[str, Any] = {
        "image": settings.singleuser_image,
        "image_pull_policy": "IfNotPresent",
        "default_url": "/vscode/",
        "profile_list": profile_list(),
        # docker-stacks' start script runs our start hook, then jupyterhub-singleuser
        "cmd": ["start-notebook.py"],
        "uid": UID,
        "gid": GID,
        "fs_gid": GID,
        "allow_privilege_escalation": False,
        "container_security_context": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": GID,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # user code gets no Kubernetes credentials
        "automount_service_account_token": False,
        "storage_pvc_ensure": True,
        "pvc_name_template": "claim-{user_server}",
        "storage_capacity": settings.storage_size,
        "storage_access_modes": ["ReadWriteOnce"],
        "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}],
        "volume_mounts": [{"name": "home", "mountPath": HOME}],
        "environment": {
            "MLFLOW_TRACKING_URI": mlflow_gate_url(settings),  # MLflow through its gate, as the user
            **mlflow.telemetry_env(allowed=False),  # no usage data to MLflow's makers
            "MLOPS_IDE_REPO_URL": settings.effective_repo_url,
            "MLOPS_IDE_REPO_BRANCH": settings.repo_branch,
            "MLOPS_IDE_DAGS_FOLDER": settings.dags_folder,
            "MLOPS_IDE_SYNC_TIMEOUT": str(settings.sync_timeout),
            "MLOPS_IDE_VSCODE_GALLERY": settings.vscode_gallery,
            "JUPYTERHUB_ACTIVITY_INTERVAL": str(activity_interval(settings)),  # for the idle culler
        },
        "start_timeout": 600,  # the first pull of the image on a new node takes minutes
        "http_timeout": 120,
    }
    if settings.storage_class:
        traits["storage_class"] = settings.storage_class
    return traits


def authenticator_traits(settings: Settings) -> dict[str, Any]:
    """Traits for GitHubOAuthenticator (c.GitHubOAuthenticator.<name>)."""
    return {
        "client_id": settings.github_client_id,
        "client_secret": settings.github_client_secret,
        "oauth_callback_url": settings.github_callback_url,
        "github_url": settings.github_url,
        "allowed_organizations": set(settings.allowed_organizations),
        "allowed_users": set(settings.allowed_users),
        "admin_users": set(settings.admin_users),
        "scope": github_scopes(settings.github_repo_scope),
        "enable_auth_state": True,  # the token, encrypted with JUPYTERHUB_CRYPT_KEY
        "refresh_pre_spawn": False,
    }


def github_scopes(repo_scope: str) -> list[str]:
    """The OAuth scopes to ask for. An OAuth app's are per kind, not per repository: read:org
    so that private memberships count, `repo` to clone and push a private repository (and so
    every repository the user can), `public_repo` for a public one. A GitHub App asks for
    none: its permissions and the repositories it is installed on decide."""
    if repo_scope == "none":
        return []
    return ["read:org", repo_scope]


def mlflow_gate_url(settings: Settings) -> str:
    """Where pods reach MLflow: its gate, on the hub's pod (the hub's Service)."""
    host = urlsplit(settings.hub_connect_url).hostname
    return f"http://{host}:{settings.mlflow_gate_port}{names.MLFLOW_PREFIX.rstrip('/')}"


def mlflow_gate(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """MLflow's gate as a hub service in the hub's pod (its login for browsers, hub tokens for
    programs), the `pipeline` service whose token Airflow and serving use, the
    `pipeline-preview` service whose token a preview's pod steps use (when it has one), and
    their roles: MLflow's gate alone."""
    host = urlsplit(settings.hub_connect_url).hostname
    gate = {
        "name": names.MLFLOW,
        "url": f"http://{host}:{settings.mlflow_gate_port}",
        "command": [
            *(
                sys.executable,
                "-m",
                "mlops_ide.hub_services.mlflow_gate",
                "--mlflow-url",
                settings.mlflow_url,
            ),
            *("--ip", "0.0.0.0", "--port", str(settings.mlflow_gate_port)),  # the pod's address
        ],
        "environment": {"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        "oauth_no_confirm": True,
        "display": False,
    }
    pipeline = {"name": names.PIPELINE, "api_token": settings.mlflow_pipeline_token}
    roles = [
        {"name": "user", "description": "Standard user privileges", "scopes": ["self", names.MLFLOW_SCOPE]},
        {"name": "pipeline", "scopes": [names.MLFLOW_SCOPE], "services": [names.PIPELINE]},
    ]
    services = [gate, pipeline]
    if settings.mlflow_preview_token:  # never `champion`: the gate knows it by name (mlflow_gate.py)
        services.append({"name": names.PIPELINE_PREVIEW, "api_token": settings.mlflow_preview_token})
        roles.append(
            {"name": "pipeline-preview", "scopes": [names.MLFLOW_SCOPE], "services": [names.PIPELINE_PREVIEW]}
        )
    return services, roles


def airflow_ui(settings: Settings) -> tuple[list[dict[str, Any]], list[str]]:
    """Airflow's UI through the hub at /services/airflow/, the hub as its login (the Airflow
    image's auth manager is the OAuth client), and the scope users need ([] when
    MLOPS_IDE_AIRFLOW_OAUTH_SECRET is unset)."""
    if settings.airflow_oauth_secret is None:
        return [], []
    public = settings.github_callback_url.split("/hub/", 1)[0]  # https://<host>
    service = {
        "name": names.AIRFLOW,
        "url": settings.airflow_url,  # the chart's API server Service; the proxy keeps the path
        "api_token": settings.airflow_oauth_secret,
        "oauth_client_id": names.AIRFLOW_OAUTH_CLIENT_ID,
        "oauth_redirect_uri": f"{public}{names.AIRFLOW_PREFIX}auth/hub/callback",
        "oauth_no_confirm": True,
        "display": False,
        "timeout": 5,  # the hub does not wait long for Airflow at its start (its route is added anyway)
    }
    return [service], [names.AIRFLOW_SCOPE]


def push_webhook(settings: Settings) -> list[dict[str, Any]]:
    """The GitHub push webhook as a hub service at /services/push-webhook/ ([] when no
    secret is set: Airflow then picks pushes up at its bundle refresh)."""
    if settings.webhook_secret is None:
        return []
    host = urlsplit(settings.hub_connect_url).hostname  # the proxy reaches it where it reaches the hub
    return [
        {
            "name": names.PUSH_WEBHOOK,
            "url": f"http://{host}:{settings.webhook_port}",
            "command": [sys.executable, "-m", "mlops_ide.hub_services.push_webhook"],
            "environment": {
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),  # src/, for mlops_ide
                **{row.name: as_setting(getattr(settings, row.attr)) for row in push_webhook_settings()},
                # where the previews' ConfigMap is written (preview_configmap.py): the pod's
                # API server, which a service's environment does not keep otherwise
                **{
                    name: value
                    for name, value in os.environ.items()
                    if name.startswith("KUBERNETES_SERVICE_")
                },
            },
        }
    ]


def as_setting(value: Any) -> str:
    """A parsed setting as its text again, for a service that reads it through the table:
    0 stays 0 (not unset, which would be its default), a list is comma-separated."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple | list | set | frozenset):
        return ",".join(sorted(value) if isinstance(value, set | frozenset) else value)
    return str(value)


def git_token_secret(
    name: str, token: str, labels: dict[str, str], owner_reference: Any | None = None
) -> V1Secret:
    """The Secret that carries one user's GitHub token into their pod (as a file)."""
    return V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=V1ObjectMeta(
            name=name,
            labels=labels,
            owner_references=[owner_reference] if owner_reference is not None else None,
        ),
        type="Opaque",
        string_data={GIT_TOKEN_KEY: token},
    )


class GitHubKubeSpawner(KubeSpawner):
    """KubeSpawner that hands the user's GitHub token to the pod through a Secret."""

    git_token: str | None = None
    github_user: dict[str, Any] | None = None

    @property
    def git_secret_name(self) -> str:
        return f"{self.pod_name}-git"

    async def run_auth_state_hook(self, auth_state: dict[str, Any] | None) -> None:
        await super().run_auth_state_hook(auth_state)
        auth_state = auth_state or {}
        self.git_token = auth_state.get("access_token") or None
        self.github_user = auth_state.get("github_user") or None

    def get_env(self) -> dict[str, Any]:
        env = super().get_env()
        user = self.github_user or {}
        if user.get("login"):
            env["MLOPS_IDE_GIT_USERNAME"] = user["login"]
        name = user.get("name") or user.get("login")
        email = user.get("email") or (
            f"{user['id']}+{user['login']}@users.noreply.github.com" if user.get("id") else None
        )
        if name and email:
            env.update(
                GIT_AUTHOR_NAME=name,
                GIT_COMMITTER_NAME=name,
                GIT_AUTHOR_EMAIL=email,
                GIT_COMMITTER_EMAIL=email,
            )
        if self.git_token:
            env["MLOPS_IDE_GIT_TOKEN_FILE"] = f"{GIT_TOKEN_DIR}/{GIT_TOKEN_KEY}"
        # MLflow's client sends it as a bearer token; for MLflow's gate alone, renewed each start
        env["MLFLOW_TRACKING_TOKEN"] = service_tokens.renew(
            self.user, self.db, names.MLFLOW_TOKEN_NOTE, names.MLFLOW_SCOPE
        )
        return env

    async def get_pod_manifest(self):
        pod = await super().get_pod_manifest()
        if self.git_token:
            # The kubelet holds the container until the Secret (made right after the pod) exists.
            pod.spec.volumes.append(
                {
                    "name": "git-token",
                    "secret": {"secretName": self.git_secret_name, "defaultMode": 0o440, "optional": False},
                }
            )
            pod.spec.containers[0].volume_mounts.append(
                {"name": "git-token", "mountPath": GIT_TOKEN_DIR, "readOnly": True}
            )
        return pod

    def git_token_secret_manifest(self, owner_reference: Any | None) -> V1Secret:
        labels = self._build_common_labels(self._expand_all(self.extra_labels))
        return git_token_secret(self.git_secret_name, self.git_token or "", labels, owner_reference)

    async def create_git_token_secret(self, pod: dict[str, Any]) -> None:
        """after_pod_created_hook: the pod owns the Secret, so Kubernetes deletes it with the pod."""
        if not self.git_token:
            return
        owner = make_owner_reference(self.pod_name, pod["metadata"]["uid"])
        secret = self.git_token_secret_manifest(owner)
        await exponential_backoff(
            lambda: self._ensure_not_exists("secret", self.git_secret_name),
            f"Could not remove the old secret {self.git_secret_name}",
        )
        await exponential_backoff(
            lambda: self._make_create_resource_request("secret", secret),
            f"Could not create the secret {self.git_secret_name}",
        )

    @default("after_pod_created_hook")
    def _create_git_token_secret_after_the_pod(self):
        return GitHubKubeSpawner.create_git_token_secret
