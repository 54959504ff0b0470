"""Helpers for the kubernetes-mode tests: a complete settings environment, the hub config
loaded from jupyterhub_config.py, and the spawner KubeSpawner would run, built without a
cluster (only its kube config loading is replaced, pointing it at a stand-in)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
import requests
from kubernetes_asyncio.client import ApiClient, Configuration
from traitlets.config import Config, PyFileConfigLoader

from tests.support.local_platform import ROOT
from tests.support.platform_tools import free_port, start_logged, stop, tools_file_value, wait_until_healthy
from tests.support.standins import GitHubStandIn, KubernetesApiStandIn

KUBERNETES_VERSIONS = ("1.29", "1.33", "1.37")
IMAGE = "ghcr.io/mlops-ide/singleuser:sha-0123456789ab"
CRYPT_KEY = "a" * 64


def kubernetes_env(home: Path, **changes: str) -> dict[str, str]:
    env = {
        "MLOPS_IDE_MODE": "kubernetes",
        "MLOPS_IDE_HOME": str(home),
        "MLOPS_IDE_SINGLEUSER_IMAGE": IMAGE,
        "MLOPS_IDE_REPO_URL": "https://github.com/mlops-team/pipelines.git",
        "MLOPS_IDE_GITHUB_CLIENT_ID": "client-id-123",
        "MLOPS_IDE_GITHUB_CLIENT_SECRET": "client-secret-456",
        "MLOPS_IDE_GITHUB_CALLBACK_URL": "https://hub.example.org/hub/oauth_callback",
        "MLOPS_IDE_GITHUB_ALLOWED_ORGS": "mlops-team",
        "MLOPS_IDE_ADMIN_USERS": "alice",
        "JUPYTERHUB_CRYPT_KEY": CRYPT_KEY,
        "CONFIGPROXY_AUTH_TOKEN": "proxy-token-789",
        "MLOPS_IDE_MLFLOW_PIPELINE_TOKEN": "pipeline-token-" + "0" * 32,
    }
    env.update(changes)
    return {name: value for name, value in env.items() if value is not None}


def use_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith("MLOPS_IDE_") or name in ("JUPYTERHUB_CRYPT_KEY", "CONFIGPROXY_AUTH_TOKEN"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def hub_config(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Config:
    """jupyterhub_config.py as JupyterHub reads it, under `env`."""
    use_environment(monkeypatch, env)
    return PyFileConfigLoader("jupyterhub_config.py", path=str(ROOT)).load_config()


def point_kube_client_at(monkeypatch: pytest.MonkeyPatch, api_url: str) -> None:
    """Replace KubeSpawner's kube config loading (in-cluster or ~/.kube) by a fixed host."""
    import kubespawner.spawner

    def load_config(host=None, ssl_ca_cert=None, verify_ssl=None) -> None:
        Configuration.set_default(Configuration(host=api_url))

    monkeypatch.setattr(kubespawner.spawner, "load_config", load_config)


class StandInUser(SimpleNamespace):
    """The hub's user as a spawner sees it: a name, and the tokens the hub makes for it."""

    def __init__(self, name: str):
        super().__init__(name=name, id=7, url=f"/user/{name}/", api_tokens=[])

    def new_api_token(self, note: str, scopes: list[str]) -> str:
        token = f"hub-token-{len(self.api_tokens)}-of-{self.name}"
        self.api_tokens.append(SimpleNamespace(note=note, scopes=scopes, token=token))
        return token


class StandInDB:
    def delete(self, token: SimpleNamespace) -> None:
        token.deleted = True

    def commit(self) -> None:
        pass


def make_spawner(config: Config, user: str = "alice", namespace: str = "mlops-ide"):
    """The spawner the hub would make for `user` (call inside a running event loop)."""
    from mlops_ide.hub.kubernetes_spawner import GitHubKubeSpawner

    spawner = GitHubKubeSpawner(
        config=config,
        _mock=True,
        user=StandInUser(user),
        db=StandInDB(),
        namespace=namespace,
    )
    spawner.api_token = "hub-api-token-of-the-server"
    return spawner


async def as_dict(obj: Any) -> dict[str, Any]:
    async with ApiClient() as client:
        return client.sanitize_for_serialization(obj)


def validate(manifest: dict[str, Any], version: str) -> None:
    """Kubernetes' OpenAPI schema, strict: unknown fields are errors too."""
    kubernetes_validate.validate(manifest, version, strict=True)


def write_kubeconfig(path: Path, server: str, namespace: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: standin\n"
        f"clusters:\n- name: standin\n  cluster:\n    server: {server}\n"
        "users:\n- name: hub\n  user:\n    token: standin-token\n"
        "contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: hub\n"
        f"    namespace: {namespace}\n"
    )
    return path


class RunningHub:
    """The hub in kubernetes mode (jupyterhub_config.py) behind its own proxy process."""

    def __init__(self, url: str, github: GitHubStandIn, env: dict[str, str], log: Path) -> None:
        self.url, self.github, self.env, self.log = url, github, env, log

    def log_in(self, login: str) -> tuple[requests.Session, requests.Response]:
        """The browser's path: hub -> GitHub (signed in as `login`) -> hub callback -> hub."""
        self.github.signed_in = login
        session = requests.Session()
        response = session.get(f"{self.url}/hub/oauth_login", timeout=30)
        return session, response

    def api(
        self, session: requests.Session, path: str, method: str = "GET", **kwargs: Any
    ) -> requests.Response:
        xsrf = session.cookies.get("_xsrf", path="/hub/")
        headers = {"X-XSRFToken": xsrf or ""}
        return session.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kwargs)


@contextlib.contextmanager
def running_hub(
    tmp: Path,
    github: GitHubStandIn,
    kube_api: KubernetesApiStandIn,
    client_secret: str,
    settings: dict[str, str],
    hub_args: tuple[str, ...] = (),
) -> Iterator[RunningHub]:
    """Start configurable-http-proxy and the hub (as deploy/ runs them, on loopback);
    GitHub and the Kubernetes API are the stand-ins. `settings`: extra MLOPS_IDE_* values."""
    proxy_port, proxy_api_port, hub_port = free_port(), free_port(), free_port()
    public = f"http://127.0.0.1:{proxy_port}"
    proxy_token = secrets.token_hex(32)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp),
        **kubernetes_env(
            tmp / "hub",
            MLOPS_IDE_IP="127.0.0.1",
            MLOPS_IDE_HUB_PORT=str(hub_port),
            MLOPS_IDE_HUB_CONNECT_URL=f"http://127.0.0.1:{hub_port}",
            MLOPS_IDE_PROXY_API_URL=f"http://127.0.0.1:{proxy_api_port}",
            MLOPS_IDE_GITHUB_URL=github.url,
            MLOPS_IDE_GITHUB_CLIENT_ID=github.client_id,
            MLOPS_IDE_GITHUB_CLIENT_SECRET=client_secret,
            MLOPS_IDE_GITHUB_CALLBACK_URL=f"{public}/hub/oauth_callback",
            JUPYTERHUB_CRYPT_KEY=secrets.token_hex(32),
            CONFIGPROXY_AUTH_TOKEN=proxy_token,
            **settings,
        ),
        # KubeSpawner loads a kube config when the hub makes a user's spawner (at login):
        # outside a cluster that is $KUBECONFIG, here pointing at the API stand-in.
        "KUBECONFIG": str(write_kubeconfig(tmp / "kubeconfig", kube_api.url, "team")),
    }
    proxy_log, hub_log = tmp / "proxy.log", tmp / "hub.log"
    proxy = start_logged(
        [
            tools_file_value("MLOPS_IDE_CHP"),
            *("--ip", "127.0.0.1", "--port", str(proxy_port)),
            *("--api-ip", "127.0.0.1", "--api-port", str(proxy_api_port)),
            *("--default-target", f"http://127.0.0.1:{hub_port}"),
            *("--error-target", f"http://127.0.0.1:{hub_port}/hub/error"),
        ],
        {**env, "CONFIGPROXY_AUTH_TOKEN": proxy_token},
        proxy_log,
    )
    process = start_logged(
        [sys.executable, "-m", "jupyterhub", "-f", str(ROOT / "jupyterhub_config.py"), *hub_args],
        env,
        hub_log,
        cwd=tmp,
    )
    try:
        wait_until_healthy(f"{public}/hub/api", process, hub_log, timeout=60)
        yield RunningHub(public, github, env, hub_log)
    finally:
        # SIGTERM to the hub alone, as Kubernetes does: it stops its services (culler, webhook)
        # itself. Its shutdown sometimes waits up to 60 s on them under load; Kubernetes would
        # SIGKILL after the grace period, and so do we here.
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left
        process.wait(15)
        stop(proxy)
