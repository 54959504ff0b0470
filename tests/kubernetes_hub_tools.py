"""Helpers for the kubernetes-mode tests: a complete settings environment, the hub config
loaded from jupyterhub_config.py, and the spawner KubeSpawner would run, built without a
cluster (only its kube config loading is replaced, pointing it at a stand-in)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration
from traitlets.config import Config, PyFileConfigLoader

from tests.local_platform import ROOT

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


def make_spawner(config: Config, user: str = "alice", namespace: str = "mlops-ide"):
    """The spawner the hub would make for `user` (call inside a running event loop)."""
    from mlops_ide.kubernetes_hub import GitHubKubeSpawner

    spawner = GitHubKubeSpawner(
        config=config,
        _mock=True,
        user=SimpleNamespace(name=user, id=7, url=f"/user/{user}/"),
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
