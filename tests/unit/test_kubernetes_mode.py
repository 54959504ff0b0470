"""Kubernetes mode without a cluster: the settings, the hub config from jupyterhub_config.py,
and the pods and Secrets KubeSpawner would create, validated against Kubernetes' own
OpenAPI schemas (strict) for 1.29, 1.33 and 1.37."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_ide.hub import kubernetes_spawner
from mlops_ide.hub.modes import load
from mlops_ide.hub_services import mlflow_gate, push_webhook
from mlops_ide.settings import SettingsError, read
from tests.support.kubernetes_hub_tools import (
    IMAGE,
    KUBERNETES_VERSIONS,
    as_dict,
    hub_config,
    kubernetes_env,
    make_spawner,
    point_kube_client_at,
    use_environment,
    validate,
)
from tests.support.local_platform import ROOT
from tests.support.standins import KubernetesApiStandIn

TOKEN = "gho_" + "t0k3n" * 7
AUTH_STATE = {
    "access_token": TOKEN,
    "github_user": {"login": "alice", "id": 4242, "name": "Alice Example", "email": None},
    "scope": ["read:org", "repo"],
}


# -- settings ---------------------------------------------------------------------------------


def test_kubernetes_settings_load(tmp_path: Path) -> None:
    settings = load(kubernetes_env(tmp_path, MLOPS_IDE_GITHUB_ALLOWED_USERS="Bob,carol"))

    kube = settings
    assert settings.mode == "kubernetes" and settings.ip == "0.0.0.0"
    assert settings.admin_users == ("alice",)
    assert kube.singleuser_image == IMAGE
    assert kube.allowed_organizations == ("mlops-team",) and kube.allowed_users == ("bob", "carol")
    assert kube.hub_connect_url == "http://hub:8081" and kube.proxy_api_url == "http://proxy-api:8001"
    assert kube.db_url == f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    assert (kube.storage_size, kube.idle_timeout, kube.github_url) == ("10Gi", 3600, "https://github.com")


def test_callback_url_follows_the_hub_host(tmp_path: Path) -> None:
    settings = load(
        kubernetes_env(tmp_path, MLOPS_IDE_GITHUB_CALLBACK_URL=None, MLOPS_IDE_HUB_HOST="hub.team.org")
    )

    assert settings.github_callback_url == "https://hub.team.org/hub/oauth_callback"


def test_kubernetes_mode_has_no_default_admin(tmp_path: Path) -> None:
    settings = load(kubernetes_env(tmp_path, MLOPS_IDE_ADMIN_USERS=None))

    assert settings.admin_users == ()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"MLOPS_IDE_SINGLEUSER_IMAGE": None}, "MLOPS_IDE_SINGLEUSER_IMAGE is not set"),
        ({"MLOPS_IDE_SINGLEUSER_IMAGE": "ghcr.io/x/singleuser:latest"}, "never :latest"),
        ({"MLOPS_IDE_SINGLEUSER_IMAGE": "ghcr.io/x/singleuser"}, "has no fixed tag"),
        ({"MLOPS_IDE_REPO_URL": None}, "MLOPS_IDE_REPO_URL is not set"),
        ({"MLOPS_IDE_GITHUB_CLIENT_SECRET": None}, "MLOPS_IDE_GITHUB_CLIENT_SECRET is not set"),
        ({"MLOPS_IDE_GITHUB_CALLBACK_URL": "https://hub.example.org/"}, "is not the hub's callback"),
        ({"MLOPS_IDE_GITHUB_CALLBACK_URL": None}, "MLOPS_IDE_HUB_HOST is not set"),
        ({"MLOPS_IDE_HUB_HOST": "https://hub.example.org"}, "is not a host name"),
        ({"MLOPS_IDE_GITHUB_ALLOWED_ORGS": None}, "Nobody may log in"),
        ({"MLOPS_IDE_GITHUB_ALLOWED_ORGS": "team/ml"}, "not 'org' or 'org:team'"),
        ({"JUPYTERHUB_CRYPT_KEY": None}, "openssl rand -hex 32"),
        ({"JUPYTERHUB_CRYPT_KEY": "short"}, "JUPYTERHUB_CRYPT_KEY is not a 32-byte key"),
        ({"CONFIGPROXY_AUTH_TOKEN": None}, "CONFIGPROXY_AUTH_TOKEN is not set"),
        ({"MLOPS_IDE_STORAGE_SIZE": "10GB"}, "MLOPS_IDE_STORAGE_SIZE='10GB' is not a size"),
        ({"MLOPS_IDE_IDLE_TIMEOUT": "59"}, "60 or more"),
        ({"MLOPS_IDE_PROXY_API_URL": "proxy-api:8001"}, "MLOPS_IDE_PROXY_API_URL='proxy-api:8001'"),
        ({"MLOPS_IDE_HUB_PORT": "80a"}, "MLOPS_IDE_HUB_PORT='80a' is not a port"),
        ({"MLOPS_IDE_GITHUB_WEBHOOK_SECRET": "short"}, "shorter than 16 characters"),
        (
            {"MLOPS_IDE_GITHUB_WEBHOOK_SECRET": "a-long-enough-webhook-secret"},
            "MLOPS_IDE_AIRFLOW_PASSWORD is not",
        ),
        ({"MLOPS_IDE_WEBHOOK_PORT": "x"}, "MLOPS_IDE_WEBHOOK_PORT='x' is not a port"),
        (
            {"MLOPS_IDE_USER_DOMAIN": "users.example.org", "MLOPS_IDE_HUB_HOST": "hub.example.org"},
            "the hub is served at hub.example.org: JupyterHub serves the users' hosts as subdomains",
        ),
        ({"MLOPS_IDE_USER_DOMAIN": "*.example.org"}, "is not a host name"),
        ({"MLOPS_IDE_GITHUB_REPO_SCOPE": "admin:org"}, "is not a repository scope"),
        # a preview's MLflow identity: needed for previews, never the pipeline's
        ({"MLOPS_IDE_PREVIEWS_OUTSIDE": "1"}, "MLOPS_IDE_MLFLOW_PREVIEW_TOKEN is not set"),
        ({"MLOPS_IDE_MLFLOW_PREVIEW_TOKEN": "short"}, "MLOPS_IDE_MLFLOW_PREVIEW_TOKEN is shorter than 32"),
        (
            {"MLOPS_IDE_MLFLOW_PREVIEW_TOKEN": "pipeline-token-" + "0" * 32},
            "MLOPS_IDE_MLFLOW_PREVIEW_TOKEN is the pipeline's token",
        ),
        # contradictions with the per-user GitHub login
        ({"MLOPS_IDE_PASSWORD": "a-long-password"}, "MLOPS_IDE_PASSWORD is set, but kubernetes mode"),
        ({"MLOPS_IDE_GIT_TOKEN": "ghp_shared"}, "MLOPS_IDE_GIT_TOKEN is set, but in kubernetes mode"),
    ],
)
def test_wrong_kubernetes_settings_are_named(tmp_path: Path, changes: dict, expected: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load(kubernetes_env(tmp_path, **changes))

    assert expected in str(raised.value)


def test_accepted_images_and_keys(tmp_path: Path) -> None:
    digest = "ghcr.io/x/singleuser@sha256:" + "0" * 64
    for image in ("registry.local:5000/team/singleuser:v1.2.0", digest):
        base64_key = "q" * 43 + "="
        settings = load(
            kubernetes_env(tmp_path, MLOPS_IDE_SINGLEUSER_IMAGE=image, JUPYTERHUB_CRYPT_KEY=base64_key)
        )
        assert settings.singleuser_image == image


def test_hub_stops_naming_every_missing_setting(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MLOPS_IDE_MODE": "kubernetes"}
    result = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(ROOT / "jupyterhub_config.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    for name in (
        "MLOPS_IDE_SINGLEUSER_IMAGE",
        "MLOPS_IDE_REPO_URL",
        "MLOPS_IDE_GITHUB_CLIENT_ID",
        "MLOPS_IDE_GITHUB_CLIENT_SECRET",
        "MLOPS_IDE_HUB_HOST",
        "MLOPS_IDE_GITHUB_ALLOWED_ORGS",
        "JUPYTERHUB_CRYPT_KEY",
        "CONFIGPROXY_AUTH_TOKEN",
    ):
        assert name in result.stderr
    assert "Traceback" not in result.stderr


# -- the hub config -----------------------------------------------------------------------------


def test_hub_config_in_kubernetes_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = hub_config(monkeypatch, kubernetes_env(tmp_path, MLOPS_IDE_IDLE_TIMEOUT="1800"))

    assert c.JupyterHub.spawner_class == "mlops_ide.hub.kubernetes_spawner.GitHubKubeSpawner"
    assert c.JupyterHub.authenticator_class == "github"
    assert c.GitHubOAuthenticator.enable_auth_state is True
    assert c.GitHubOAuthenticator.allowed_organizations == {"mlops-team"}
    assert c.GitHubOAuthenticator.admin_users == {"alice"}
    assert "read:org" in c.GitHubOAuthenticator.scope
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.JupyterHub.cleanup_servers is False
    assert c.KubeSpawner.image == IMAGE
    culler, gate, pipeline = c.JupyterHub.services
    assert culler["command"][1:] == ["-m", "jupyterhub_idle_culler", "--timeout=1800", "--cull-every=300"]
    assert {"delete:servers", "read:users:activity"} <= set(c.JupyterHub.load_roles[0]["scopes"])
    # MLflow's gate in the hub's pod, in front of the MLflow Service; the pipeline's identity
    assert gate["name"] == "mlflow" and gate["url"] == "http://hub:8091" and gate["oauth_no_confirm"]
    assert gate["command"][gate["command"].index("--mlflow-url") + 1] == "http://mlflow:5000"
    assert pipeline == {"name": "pipeline", "api_token": "pipeline-token-" + "0" * 32}
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert roles["user"]["scopes"] == ["self", "access:services!service=mlflow"]
    assert roles["pipeline"] == {
        "name": "pipeline",
        "scopes": ["access:services!service=mlflow"],
        "services": ["pipeline"],
    }


PREVIEW_TOKEN = "preview-token-" + "1" * 32


def test_previews_use_mlflow_as_the_pipeline_preview_service_with_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered with the token of hub-secrets' `mlflow-preview-token` (deploy/hub.yaml), with
    MLflow's gate alone to reach; the gate knows it by name and never lets it move `champion`."""
    previews = {"MLOPS_IDE_PREVIEWS_OUTSIDE": "1", "MLOPS_IDE_MLFLOW_PREVIEW_TOKEN": PREVIEW_TOKEN}
    env = kubernetes_env(tmp_path, **previews)

    c = hub_config(monkeypatch, env)

    services = {service["name"]: service for service in c.JupyterHub.services}
    assert services["pipeline-preview"] == {"name": "pipeline-preview", "api_token": PREVIEW_TOKEN}
    assert services["pipeline"]["api_token"] != PREVIEW_TOKEN
    roles = [role for role in c.JupyterHub.load_roles if "pipeline-preview" in role.get("services", ())]
    assert roles == [
        {
            "name": "pipeline-preview",
            "scopes": ["access:services!service=mlflow"],
            "services": ["pipeline-preview"],
        }
    ]
    assert mlflow_gate.PREVIEW_CALLER == "service:pipeline-preview"  # the name the gate refuses `champion`


def test_without_a_preview_token_there_is_no_preview_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Previews off (the default on Kubernetes): nobody holds a `pipeline-preview` token, and
    a preview's pod step would not start (its Secret is missing) rather than run as the pipeline."""
    c = hub_config(monkeypatch, kubernetes_env(tmp_path))

    assert "pipeline-preview" not in [service["name"] for service in c.JupyterHub.services]
    assert "pipeline-preview" not in [role["name"] for role in c.JupyterHub.load_roles]


def test_the_preview_token_is_never_in_a_settings_message(tmp_path: Path) -> None:
    token = "pipeline-token-" + "0" * 32  # the pipeline's, given again: refused without echoing it
    with pytest.raises(SettingsError) as raised:
        load(kubernetes_env(tmp_path, MLOPS_IDE_MLFLOW_PREVIEW_TOKEN=token))
    assert token not in str(raised.value)


def test_user_servers_get_hosts_of_their_own_with_a_user_domain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = {"MLOPS_IDE_HUB_HOST": "hub.example.org"}
    without = hub_config(monkeypatch, kubernetes_env(tmp_path / "a", **host))

    with_domain = hub_config(
        monkeypatch, kubernetes_env(tmp_path / "b", **host, MLOPS_IDE_USER_DOMAIN="hub.example.org")
    )

    assert "subdomain_host" not in without.JupyterHub  # /user/<name>/ on the hub's own origin
    assert with_domain.JupyterHub.subdomain_host == "https://hub.example.org"
    assert with_domain.JupyterHub.cookie_host_prefix_enabled is True  # no cookie tossing from a user's host


@pytest.mark.parametrize(
    ("repo_scope", "scopes"),
    [(None, ["read:org", "repo"]), ("public_repo", ["read:org", "public_repo"]), ("none", [])],
)
def test_the_github_token_asks_for_the_narrowest_scope_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_scope: str | None, scopes: list[str]
) -> None:
    env = kubernetes_env(tmp_path, MLOPS_IDE_GITHUB_REPO_SCOPE=repo_scope)

    assert hub_config(monkeypatch, env).GitHubOAuthenticator.scope == scopes


def test_airflows_ui_is_behind_the_hub_with_its_oauth_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without = hub_config(monkeypatch, kubernetes_env(tmp_path / "a"))
    secret = "s" * 40

    c = hub_config(monkeypatch, kubernetes_env(tmp_path / "b", MLOPS_IDE_AIRFLOW_OAUTH_SECRET=secret))

    assert "airflow" not in [service["name"] for service in without.JupyterHub.services]
    airflow = next(service for service in c.JupyterHub.services if service["name"] == "airflow")
    assert airflow["url"] == "http://airflow-api-server.mlops-ide-pipeline.svc:8080"
    assert airflow["api_token"] == secret and airflow["oauth_client_id"] == "service-airflow"
    assert airflow["oauth_redirect_uri"] == "https://hub.example.org/services/airflow/auth/hub/callback"
    user = next(role for role in c.JupyterHub.load_roles if role["name"] == "user")
    assert "access:services!service=airflow" in user["scopes"]
    values = yaml.safe_load((ROOT / "deploy" / "airflow" / "values.yaml").read_text())
    assert values["config"]["core"]["auth_manager"] == "mlops_ide.in_airflow.auth_manager.HubAuthManager"
    assert values["config"]["mlops_ide"]["client_id"] == airflow["oauth_client_id"]
    # its password login (the webhook's, ADMIN) is refused through the proxy, by the hub
    assert c.Proxy.extra_routes == {
        "/services/airflow/auth/token/": f"{c.JupyterHub.hub_connect_url}/hub/platform/refused"
    }
    ((path, handler, _),) = c.JupyterHub.extra_handlers
    assert path == "/platform/refused/.*" and handler.__name__ == "RefusedHandler"
    assert "extra_routes" not in without.Proxy and "extra_handlers" not in without.JupyterHub


def test_push_webhook_runs_as_a_hub_service_when_it_has_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = kubernetes_env(
        tmp_path,
        MLOPS_IDE_GITHUB_WEBHOOK_SECRET="a-long-enough-webhook-secret",
        MLOPS_IDE_AIRFLOW_PASSWORD="airflow-password",
    )
    c = hub_config(monkeypatch, env)

    webhook = next(service for service in c.JupyterHub.services if service["name"] == "push-webhook")
    assert webhook["url"] == "http://hub:8090"  # where the proxy reaches the hub's pod
    assert webhook["command"][1:] == ["-m", "mlops_ide.hub_services.push_webhook"]
    assert webhook["environment"]["MLOPS_IDE_GITHUB_WEBHOOK_SECRET"] == "a-long-enough-webhook-secret"
    assert (
        webhook["environment"]["MLOPS_IDE_AIRFLOW_URL"]
        == "http://airflow-api-server.mlops-ide-pipeline.svc:8080"
    )
    assert "a-long-enough-webhook-secret" not in " ".join(webhook["command"])  # not in process arguments


def test_the_webhook_reads_back_the_settings_the_hub_hands_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0 slots stay 0 (not unset, which would be 6) and the admins a list; the API server's
    address, which a hub service's environment would not keep, reaches it for the previews."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    env = kubernetes_env(
        tmp_path,
        MLOPS_IDE_GITHUB_WEBHOOK_SECRET="a-long-enough-webhook-secret",
        MLOPS_IDE_AIRFLOW_PASSWORD="airflow-password",
        MLOPS_IDE_ADMIN_USERS="Alice,bob",
        MLOPS_IDE_PREVIEWS_OUTSIDE="1",
        MLOPS_IDE_PREVIEW_SLOTS="0",
        MLOPS_IDE_MLFLOW_PREVIEW_TOKEN=PREVIEW_TOKEN,
    )
    c = hub_config(monkeypatch, env)

    webhook = next(service for service in c.JupyterHub.services if service["name"] == "push-webhook")
    handed = read(push_webhook.settings_rows(), "kubernetes", environ=webhook["environment"])
    assert (handed.admin_users, handed.previews_outside, handed.preview_slots) == (("alice", "bob"), True, 0)
    assert handed.previews_per_person == 3
    assert webhook["environment"]["KUBERNETES_SERVICE_HOST"] == "10.0.0.1"


def test_without_a_webhook_secret_there_is_no_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = hub_config(monkeypatch, kubernetes_env(tmp_path))

    assert [service["name"] for service in c.JupyterHub.services] == ["idle-culler", "mlflow", "pipeline"]


def test_idle_timeout_zero_turns_culling_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = hub_config(monkeypatch, kubernetes_env(tmp_path, MLOPS_IDE_IDLE_TIMEOUT="0"))

    assert [service["name"] for service in c.JupyterHub.services] == ["mlflow", "pipeline"]
    assert "idle-culler" not in {role["name"] for role in c.JupyterHub.load_roles}


# -- the pods KubeSpawner would create ----------------------------------------------------------


def build_pod(monkeypatch: pytest.MonkeyPatch, config, profile: str, auth_state) -> dict:
    point_kube_client_at(monkeypatch, "http://127.0.0.1:9")  # never called while building

    async def build() -> dict:
        spawner = make_spawner(config)
        spawner.user_options = {"profile": profile}
        await spawner.load_user_options()
        await spawner.run_auth_state_hook(auth_state)
        return await as_dict(await spawner.get_pod_manifest())

    return asyncio.run(build())


@pytest.fixture()
def kube_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    return hub_config(monkeypatch, kubernetes_env(tmp_path, MLOPS_IDE_STORAGE_CLASS="fast-ssd"))


@pytest.mark.parametrize("profile", [slug for slug, *_ in kubernetes_spawner.PROFILES])
def test_pod_for_each_profile(kube_config, monkeypatch: pytest.MonkeyPatch, profile: str) -> None:
    pod = build_pod(monkeypatch, kube_config, profile, AUTH_STATE)

    for version in KUBERNETES_VERSIONS:
        validate(pod, version)
    spec = pod["spec"]
    (container,) = spec["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert container["image"] == IMAGE
    # MLflow through its gate in the hub's pod, with a token for it alone (never the pipeline's)
    assert env["MLFLOW_TRACKING_URI"] == "http://hub:8091/services/mlflow"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"  # MLflow's client sends no usage data
    assert (
        env["MLFLOW_TRACKING_TOKEN"].startswith("hub-token-")
        and "pipeline" not in env["MLFLOW_TRACKING_TOKEN"]
    )
    assert env["MLOPS_IDE_REPO_URL"] == "https://github.com/mlops-team/pipelines.git"
    assert env["MLOPS_IDE_REPO_BRANCH"] == "main"
    assert env["MLOPS_IDE_GIT_TOKEN_FILE"] == "/var/run/secrets/mlops-ide/git/token"
    assert env["MLOPS_IDE_GIT_USERNAME"] == "alice"
    assert env["GIT_AUTHOR_EMAIL"] == "4242+alice@users.noreply.github.com"
    # the token is in no part of the pod, only a reference to the pod's own Secret
    assert TOKEN not in json.dumps(pod)
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == "claim-alice"
    assert volumes["git-token"]["secret"] == {
        "secretName": "jupyter-alice-git",
        "defaultMode": 0o440,
        "optional": False,
    }
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["home"]["mountPath"] == "/home/jovyan"
    assert mounts["git-token"] == {
        "name": "git-token",
        "mountPath": "/var/run/secrets/mlops-ide/git",
        "readOnly": True,
    }
    # non-root, no privilege escalation, no Kubernetes credentials for user code
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 1000
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert spec["securityContext"]["fsGroup"] == 100
    assert spec["automountServiceAccountToken"] is False
    # resources from the profile
    _, _, _, (cpu_request, memory_request), (cpu_limit, memory_limit), gpus = next(
        p for p in kubernetes_spawner.PROFILES if p[0] == profile
    )
    resources = container["resources"]
    gibibytes = {"memory": lambda size: int(size.rstrip("G")) * 1024**3}["memory"]  # KubeSpawner: 1G = 2**30
    assert resources["requests"]["memory"] == gibibytes(memory_request)
    assert resources["limits"]["memory"] == gibibytes(memory_limit)
    assert (
        float(resources["requests"]["cpu"]) == cpu_request and float(resources["limits"]["cpu"]) == cpu_limit
    )
    if gpus:
        assert resources["limits"]["nvidia.com/gpu"] == "1" == resources["requests"]["nvidia.com/gpu"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    else:
        assert "nvidia.com/gpu" not in resources["limits"]
        assert not any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations") or [])


def test_pod_without_a_github_token_mounts_no_secret(kube_config, monkeypatch: pytest.MonkeyPatch) -> None:
    pod = build_pod(monkeypatch, kube_config, "small", None)

    validate(pod, "1.37")
    assert "git-token" not in {volume["name"] for volume in pod["spec"]["volumes"]}
    assert "MLOPS_IDE_GIT_TOKEN_FILE" not in {item["name"] for item in pod["spec"]["containers"][0]["env"]}


def test_user_volume_claim(kube_config, monkeypatch: pytest.MonkeyPatch) -> None:
    point_kube_client_at(monkeypatch, "http://127.0.0.1:9")

    async def build() -> dict:
        return await as_dict(make_spawner(kube_config).get_pvc_manifest())

    pvc = asyncio.run(build())

    validate(pvc, "1.37")
    assert pvc["metadata"]["name"] == "claim-alice"
    assert pvc["spec"]["storageClassName"] == "fast-ssd"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"


# -- the user's GitHub token as a Secret owned by the pod ----------------------------------------


def test_git_token_secret_is_made_for_the_pod(kube_config, monkeypatch: pytest.MonkeyPatch) -> None:
    with KubernetesApiStandIn() as kube_api:
        point_kube_client_at(monkeypatch, kube_api.url)

        async def spawn_twice() -> None:
            spawner = make_spawner(kube_config)
            await spawner.run_auth_state_hook(AUTH_STATE)
            pod = {"metadata": {"name": spawner.pod_name, "uid": "uid-of-the-first-pod"}}
            await spawner.after_pod_created_hook(spawner, pod)
            # a second start (new pod, same name) replaces the old Secret, with a fresh token
            await spawner.run_auth_state_hook({**AUTH_STATE, "access_token": TOKEN + "2"})
            pod["metadata"]["uid"] = "uid-of-the-second-pod"
            await spawner.after_pod_created_hook(spawner, pod)

        asyncio.run(spawn_twice())

    secret = kube_api.objects[("secrets", "mlops-ide", "jupyter-alice-git")]
    for version in KUBERNETES_VERSIONS:
        validate(secret, version)
    assert secret["stringData"] == {"token": TOKEN + "2"}
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", "jupyter-alice", "uid-of-the-second-pod")
    assert kube_api.requests.count("DELETE /api/v1/namespaces/mlops-ide/secrets/jupyter-alice-git") == 2


def test_no_secret_without_a_token(kube_config, monkeypatch: pytest.MonkeyPatch) -> None:
    with KubernetesApiStandIn() as kube_api:
        point_kube_client_at(monkeypatch, kube_api.url)

        async def spawn() -> None:
            spawner = make_spawner(kube_config)
            await spawner.run_auth_state_hook(None)
            await spawner.after_pod_created_hook(spawner, {"metadata": {"uid": "u"}})

        asyncio.run(spawn())

    assert kube_api.objects == {} and kube_api.requests == []


def test_local_mode_is_unchanged_by_kubernetes_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_environment(monkeypatch, {"MLOPS_IDE_HOME": str(tmp_path)})

    with pytest.raises(AttributeError, match="'singleuser_image' is not a setting of local mode"):
        load().singleuser_image  # noqa: B018
