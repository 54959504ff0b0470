"""deploy/ without a cluster: every manifest and the kustomize build validate against
Kubernetes' OpenAPI schemas (strict, 1.29/1.33/1.37); the settings file is one the hub
accepts; the NetworkPolicies select the pods that really exist (including the user pod
KubeSpawner builds); the Airflow chart values agree with local mode."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_ide.modes import load
from mlops_ide.services import airflow
from tests.kubernetes_hub_tools import (
    KUBERNETES_VERSIONS,
    as_dict,
    hub_config,
    make_spawner,
    point_kube_client_at,
    validate,
)
from tests.local_platform import ROOT

DEPLOY = ROOT / "deploy"
MANIFESTS = sorted(path for path in DEPLOY.glob("*.yaml") if not path.name.startswith("kustomiz"))
SECRETS = {"hub-secrets", "mlflow-secrets"}  # made by `kubectl create secret` (docs/kubernetes.md)


def settings_file() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "settings.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


@pytest.fixture(scope="module")
def built() -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: run scripts/install.sh test"
    result = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict], kind: str, name: str) -> dict:
    return next(doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name)


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_file_validates(manifest: Path) -> None:
    docs = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]

    assert docs
    for doc in docs:
        for version in KUBERNETES_VERSIONS:
            validate(doc, version)


def test_the_kustomization_builds_valid_objects_from_the_settings_file(built: list[dict]) -> None:
    settings = settings_file()
    text = json.dumps(built)

    for doc in built:
        for version in KUBERNETES_VERSIONS:
            validate(doc, version)
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "mlops-ide"
    assert "$(" not in text.replace("$(MLFLOW_BACKEND_STORE_URI)", "").replace(
        "$(MLOPS_IDE_MLFLOW_ARTIFACTS)", ""
    )
    ingress = find(built, "Ingress", "hub")
    assert ingress["spec"]["rules"][0]["host"] == settings["MLOPS_IDE_HUB_HOST"]
    assert ingress["spec"]["tls"][0]["hosts"] == [settings["MLOPS_IDE_HUB_HOST"]]
    hub = find(built, "Deployment", "hub")["spec"]["template"]["spec"]["containers"][0]
    assert hub["image"] == f"{settings['MLOPS_IDE_IMAGE_PREFIX']}-hub:{settings['MLOPS_IDE_IMAGE_TAG']}"
    assert find(built, "ConfigMap", "mlops-ide-settings")["data"] == settings
    # secrets only by reference, and only the ones the docs tell you to create
    referenced = set(re.findall(r'"secretKeyRef": \{"key": "[^"]+", "name": "([^"]+)"', text))
    referenced |= set(re.findall(r'"secretKeyRef": \{"name": "([^"]+)"', text))
    assert referenced == SECRETS
    assert not [doc for doc in built if doc["kind"] == "Secret"]
    docs_text = (ROOT / "docs" / "kubernetes.md").read_text()
    assert all(f"kubectl -n mlops-ide create secret generic {name}" in docs_text for name in SECRETS)


def test_the_settings_file_is_one_the_hub_accepts(tmp_path: Path) -> None:
    settings = settings_file()
    secrets = {  # what hub-secrets adds in the pod
        "MLOPS_IDE_GITHUB_CLIENT_SECRET": "from-the-secret",
        "JUPYTERHUB_CRYPT_KEY": "ab" * 32,
        "CONFIGPROXY_AUTH_TOKEN": "from-the-secret",
    }

    loaded = load({**settings, **secrets, "MLOPS_IDE_MODE": "kubernetes", "MLOPS_IDE_HOME": str(tmp_path)})

    assert loaded.github_callback_url == f"https://{settings['MLOPS_IDE_HUB_HOST']}/hub/oauth_callback"
    prefix, tag = settings["MLOPS_IDE_IMAGE_PREFIX"], settings["MLOPS_IDE_IMAGE_TAG"]
    assert loaded.singleuser_image == f"{prefix}-singleuser:{tag}"


def test_hub_role_lets_kubespawner_do_its_work_and_no_more(built: list[dict]) -> None:
    rules = find(built, "Role", "hub")["rules"]
    allowed = {(resource, verb) for rule in rules for resource in rule["resources"] for verb in rule["verbs"]}

    for resource in ("pods", "persistentvolumeclaims", "secrets", "services"):
        assert {(resource, "create"), (resource, "delete"), (resource, "watch")} <= allowed
    assert ("events", "watch") in allowed and ("events", "create") not in allowed
    assert all(rule["apiGroups"] == [""] for rule in rules)
    assert not [doc for doc in built if doc["kind"] in ("ClusterRole", "ClusterRoleBinding")]


@pytest.fixture(scope="module")
def user_pod_labels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The labels of the pod KubeSpawner makes for a user (from jupyterhub_config.py)."""
    from tests.kubernetes_hub_tools import kubernetes_env

    monkeypatch = pytest.MonkeyPatch()
    try:
        config = hub_config(monkeypatch, kubernetes_env(tmp_path_factory.mktemp("hub")))
        point_kube_client_at(monkeypatch, "http://127.0.0.1:9")

        async def build() -> dict:
            spawner = make_spawner(config)
            await spawner.load_user_options()
            return await as_dict(await spawner.get_pod_manifest())

        return asyncio.run(build())["metadata"]["labels"]
    finally:
        monkeypatch.undo()


def template_labels(built: list[dict], name: str) -> dict[str, str]:
    return find(built, "Deployment", name)["spec"]["template"]["metadata"]["labels"]


def test_network_policies_select_the_pods_that_exist(built: list[dict], user_pod_labels: dict) -> None:
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in built if doc["kind"] == "NetworkPolicy"}

    assert selects(policies["singleuser"]["podSelector"], user_pod_labels)
    assert selects(policies["hub"]["podSelector"], template_labels(built, "hub"))
    assert selects(policies["proxy"]["podSelector"], template_labels(built, "proxy"))
    # the hub accepts the user servers and the proxy on its API port
    hub_rule, webhook_rule = policies["hub"]["ingress"]
    assert hub_rule["ports"] == [{"port": 8081}]
    assert any(selects(peer["podSelector"], user_pod_labels) for peer in hub_rule["from"])
    assert any(selects(peer["podSelector"], template_labels(built, "proxy")) for peer in hub_rule["from"])
    # the push webhook (port 8090) only from the proxy, not from user pods
    assert webhook_rule["ports"] == [{"port": 8090}]
    assert all(not selects(peer["podSelector"], user_pod_labels) for peer in webhook_rule["from"])


def test_user_pods_cannot_reach_the_proxy_api_or_cloud_metadata(
    built: list[dict], user_pod_labels: dict
) -> None:
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in built if doc["kind"] == "NetworkPolicy"}
    egress = policies["singleuser"]["egress"]
    proxy_labels = template_labels(built, "proxy")

    # no egress rule names the proxy's pods, and the proxy takes its API port from the hub only
    assert not any(
        selects(peer.get("podSelector", {"matchLabels": {"-": "-"}}), proxy_labels)
        for rule in egress
        for peer in rule["to"]
        if "podSelector" in peer
    )
    api_rules = [rule for rule in policies["proxy"]["ingress"] if {"port": 8001} in rule.get("ports", [])]
    assert api_rules and all(
        not selects(peer["podSelector"], user_pod_labels)
        and selects(peer["podSelector"], template_labels(built, "hub"))
        for rule in api_rules
        for peer in rule["from"]
    )
    # the only address ranges open to user pods leave out metadata and cluster-internal addresses
    for rule in egress:
        for peer in rule["to"]:
            if "ipBlock" in peer:
                network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                excepted = [ipaddress.ip_network(cidr) for cidr in peer["ipBlock"].get("except", [])]
                for address in ("169.254.169.254", "10.0.0.1", "172.20.0.1", "192.168.1.1"):
                    ip = ipaddress.ip_address(address)
                    assert ip not in network or any(ip in block for block in excepted), address
    # and they do reach the hub's API, MLflow, serving and the app
    for name in ("mlflow", "serving", "app"):
        assert any(
            selects(peer.get("podSelector", {}), template_labels(built, name))
            for rule in egress
            for peer in rule["to"]
            if "podSelector" in peer
        ), name


def test_airflow_chart_values_agree_with_local_mode() -> None:
    values = yaml.safe_load((DEPLOY / "airflow" / "values.yaml").read_text())
    pinned = re.search(
        r"^apache-airflow==(\S+)$", (ROOT / "requirements" / "airflow.txt").read_text(), re.MULTILINE
    )

    assert values["airflowVersion"] == pinned.group(1)
    assert values["executor"] == "KubernetesExecutor"
    assert values["dags"]["gitSync"]["enabled"] is False
    (bundle,) = json.loads(values["config"]["dag_processor"]["dag_bundle_config_list"])
    assert bundle["name"] == airflow.BUNDLE_NAME
    assert bundle["classpath"] == "airflow.providers.git.bundles.git.GitDagBundle"
    assert bundle["kwargs"]["git_conn_id"] == airflow.GIT_CONN_ID
    assert bundle["kwargs"]["subdir"] == "dags" and bundle["kwargs"]["refresh_interval"] <= 60
    assert [item["envName"] for item in values["secret"]] == [f"AIRFLOW_CONN_{airflow.GIT_CONN_ID.upper()}"]
    env = {item["name"]: item["value"] for item in values["env"]}
    assert env["MLOPS_IDE_PIPELINE_RUNNER"] == "kubernetes"
    assert "mlops-ide-settings" in values["extraEnvFrom"]
    assert values["images"]["airflow"]["repository"].endswith("-airflow")
    assert (ROOT / "images" / "airflow" / "Dockerfile").is_file()
