"""deploy/ without a cluster: every manifest and the kustomize build validate against
Kubernetes' OpenAPI schemas (strict, 1.29/1.33/1.37); the settings file is one the hub
accepts; the NetworkPolicies select the pods that really exist (including the user pod
KubeSpawner builds); the Airflow chart values agree with local mode."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_ide.hub.modes import load
from mlops_ide.hub_services import preview_configmap
from mlops_ide.in_airflow import preview_policy
from mlops_ide.machine.components import airflow
from mlops_ide.portable import dag_folder, previews
from tests.support.kubernetes_hub_tools import (
    KUBERNETES_VERSIONS,
    as_dict,
    hub_config,
    make_spawner,
    point_kube_client_at,
    validate,
)
from tests.support.local_platform import ROOT
from tests.support.network_policy import Endpoint, allowed, outside, policy_types
from tests.support.pod_security import restricted_problems

DEPLOY = ROOT / "deploy"
MANIFESTS = sorted(path for path in DEPLOY.glob("*.yaml") if not path.name.startswith("kustomiz"))
SECRETS = {"hub-secrets", "mlflow-secrets"}
PLATFORM, PIPELINE = "mlops-ide", "mlops-ide-pipeline"
PIPELINE_STEP_LABELS = {
    "component": "pipeline-step"
}  # dags/pipeline_steps.py  # made by `kubectl create secret` (docs/kubernetes.md)


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
    assert "$(" not in text
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


def test_a_previews_token_comes_from_the_secrets_the_docs_create(built: list[dict]) -> None:
    """The hub's `pipeline-preview` token from hub-secrets (optional: previews are off by
    default), and the Secret a preview's pod steps name (preview_policy) created with the same
    value in the pipeline's namespace, as the pipeline's token is."""
    hub = find(built, "Deployment", "hub")["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in hub["env"]}
    assert env["MLOPS_IDE_MLFLOW_PREVIEW_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hub-secrets",
        "key": "mlflow-preview-token",
        "optional": True,
    }
    docs_text = (ROOT / "docs" / "kubernetes.md").read_text()
    assert '--from-literal=mlflow-preview-token="$PREVIEW_TOKEN"' in docs_text
    assert (
        f"kubectl -n {PIPELINE} create secret generic {preview_policy.POD_IDENTITY_SOURCE} \\\n"
        f'     --from-literal={preview_policy.POD_IDENTITY_KEY}="$PREVIEW_TOKEN"'
    ) in docs_text


def test_the_settings_file_is_one_the_hub_accepts(tmp_path: Path) -> None:
    settings = settings_file()
    secrets = {  # what hub-secrets adds in the pod
        "MLOPS_IDE_GITHUB_CLIENT_SECRET": "from-the-secret",
        "JUPYTERHUB_CRYPT_KEY": "ab" * 32,
        "CONFIGPROXY_AUTH_TOKEN": "from-the-secret",
        "MLOPS_IDE_MLFLOW_PIPELINE_TOKEN": "f" * 64,
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
def user_pod(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The pod KubeSpawner makes for a user (from jupyterhub_config.py), as the API sees it."""
    from tests.support.kubernetes_hub_tools import kubernetes_env

    monkeypatch = pytest.MonkeyPatch()
    try:
        config = hub_config(monkeypatch, kubernetes_env(tmp_path_factory.mktemp("hub")))
        point_kube_client_at(monkeypatch, "http://127.0.0.1:9")

        async def build() -> dict:
            spawner = make_spawner(config)
            await spawner.load_user_options()
            return await as_dict(await spawner.get_pod_manifest())

        return asyncio.run(build())
    finally:
        monkeypatch.undo()


@pytest.fixture(scope="module")
def user_pod_labels(user_pod: dict) -> dict[str, str]:
    return user_pod["metadata"]["labels"]


def template_labels(built: list[dict], name: str) -> dict[str, str]:
    return find(built, "Deployment", name)["spec"]["template"]["metadata"]["labels"]


def pod_templates(built: list[dict]) -> dict[str, dict]:
    return {
        f"{doc['kind']}/{doc['metadata']['name']}": doc["spec"]["template"]
        for doc in built
        if doc["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job")
    }


def test_namespaces_keep_airflow_and_the_pipeline_apart_from_the_hub(built: list[dict]) -> None:
    namespaces = {doc["metadata"]["name"]: doc for doc in built if doc["kind"] == "Namespace"}
    where = [
        ((doc["kind"], doc["metadata"]["name"]), doc["metadata"].get("namespace"))
        for doc in built
        if doc["kind"] != "Namespace"
    ]

    assert set(namespaces) == {PLATFORM, PIPELINE}
    assert {key for key, namespace in where if namespace == PIPELINE} == {
        ("PersistentVolumeClaim", "pipeline-data"),
        ("ConfigMap", "mlops-ide-pipeline-settings"),
        ("NetworkPolicy", "default-deny"),
        ("NetworkPolicy", "dns"),
        ("NetworkPolicy", "pipeline"),
        ("ConfigMap", "mlops-ide-previews"),  # the previews' registry, kept by the hub's webhook
        ("Role", "hub-previews"),
        ("RoleBinding", "hub-previews"),
    }
    assert all(namespace in (PLATFORM, PIPELINE) for _, namespace in where)
    # the hub's rights stop at its namespace; Airflow's chart gets the other one
    assert find(built, "RoleBinding", "hub")["subjects"][0]["namespace"] == PLATFORM

    values = (DEPLOY / "airflow" / "values.yaml").read_text()
    assert f"--namespace {PIPELINE} " in values and "--namespace mlops-ide " not in values
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    assert f"helm upgrade --install airflow apache-airflow/airflow --namespace {PIPELINE}" in docs
    assert "--namespace mlops-ide \\" not in docs
    # Pod Security Standards: restricted enforced where every pod passes it
    platform = namespaces[PLATFORM]["metadata"]["labels"]
    assert platform["pod-security.kubernetes.io/enforce"] == "restricted"
    pipeline = namespaces[PIPELINE]["metadata"]["labels"]
    assert pipeline["pod-security.kubernetes.io/enforce"] == "baseline"
    assert pipeline["pod-security.kubernetes.io/warn"] == "restricted"


def test_the_hub_may_change_the_previews_registry_and_nothing_else_of_the_pipeline(built: list[dict]) -> None:
    """The webhook reads the ConfigMap and replaces it at the version read (preview_configmap.py);
    deploy/ ships it, so no `create`, which RBAC could not limit to its name."""
    bindings = [
        doc for doc in built if doc["kind"] == "RoleBinding" and doc["metadata"]["namespace"] == PIPELINE
    ]
    hub = {"kind": "ServiceAccount", "name": "hub", "namespace": PLATFORM}
    assert [doc["metadata"]["name"] for doc in bindings if hub in doc["subjects"]] == ["hub-previews"]
    role = find(built, "Role", "hub-previews")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [preview_configmap.NAME],
            "verbs": ["get", "update"],
        }
    ]
    registry = find(built, "ConfigMap", preview_configmap.NAME)
    assert registry["metadata"]["namespace"] == preview_configmap.NAMESPACE == PIPELINE
    assert "data" not in registry  # re-applying deploy/ must not empty the registry
    values = yaml.safe_load((DEPLOY / "airflow" / "values.yaml").read_text())
    assert {"name": "previews", "configMap": {"name": preview_configmap.NAME, "optional": True}} in values[
        "volumes"
    ]
    mount = next(item for item in values["volumeMounts"] if item["name"] == "previews")
    assert f"{mount['mountPath']}/{preview_configmap.KEY}" == next(
        item["value"] for item in values["env"] if item["name"] == "MLOPS_IDE_PREVIEWS_FILE"
    )


def test_every_pod_of_the_platform_namespace_passes_the_restricted_standard(
    built: list[dict], user_pod: dict
) -> None:
    templates = pod_templates(built)

    assert len(templates) == 6
    for name, template in templates.items():
        assert restricted_problems(template["spec"]) == [], name
    assert restricted_problems(user_pod["spec"]) == []


def test_every_long_running_container_is_probed_and_writes_only_to_volumes(built: list[dict]) -> None:
    for name, template in pod_templates(built).items():
        spec = template["spec"]
        assert spec.get("automountServiceAccountToken") is False or name == "Deployment/hub", name
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, (name, container["name"])
            if container["name"] != "pause":
                assert "readinessProbe" in container and "livenessProbe" in container, name
        for container in spec.get("initContainers", []):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, (name, container["name"])


def test_mlflow_keeps_its_database_password_off_its_command_line(built: list[dict]) -> None:
    (mlflow,) = find(built, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in mlflow["env"]}

    assert not [arg for arg in mlflow["command"] if "store-uri" in arg or "artifacts-destination" in arg]
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-secrets"
    assert env["MLFLOW_DISABLE_TELEMETRY"]["value"] == "true"  # nor its UI: no usage data sent
    assert "configMapKeyRef" in env["MLFLOW_ARTIFACTS_DESTINATION"]["valueFrom"]


@pytest.fixture(scope="module")
def policies(built: list[dict]) -> list[dict]:
    return [doc for doc in built if doc["kind"] == "NetworkPolicy"]


@pytest.fixture(scope="module")
def pods(built: list[dict], user_pod_labels: dict) -> dict[str, Endpoint]:
    """Every kind of pod on the cluster: ours from the build and from KubeSpawner, the
    pipeline's step pods (dags/pipeline_steps.py; test_dag_integrity checks their labels),
    and the Airflow chart's (its templates label them tier=airflow, component=<part>)."""
    found = {
        name: Endpoint(PLATFORM, template_labels(built, name))
        for name in ("hub", "proxy", "mlflow", "serving", "app")
    }
    found["alice"] = Endpoint(PLATFORM, {**user_pod_labels, "hub.jupyter.org/username": "alice"})
    found["bob"] = Endpoint(PLATFORM, {**user_pod_labels, "hub.jupyter.org/username": "bob"})
    found["pipeline step"] = Endpoint(PIPELINE, PIPELINE_STEP_LABELS)
    for part in ("api-server", "scheduler", "worker", "dag-processor", "triggerer"):
        found[f"airflow {part}"] = Endpoint(
            PIPELINE, {"tier": "airflow", "component": part, "release": "airflow"}
        )
    return found


# (from, to, port): every path the platform needs
ALLOWED = [
    ("proxy", "hub", 8081),
    ("alice", "hub", 8081),
    ("proxy", "hub", 8090),
    ("hub", "proxy", 8001),
    ("proxy", "alice", 8888),
    ("hub", "alice", 8888),
    ("proxy", "hub", 8091),  # MLflow through its gate: browsers ...
    ("alice", "hub", 8091),  # ... user servers ...
    ("serving", "hub", 8091),  # ... serving ...
    ("pipeline step", "hub", 8091),  # ... and the pipeline, each with a hub token
    ("airflow worker", "hub", 8091),
    ("hub", "mlflow", 5000),  # the gate itself
    ("app", "serving", 8500),
    ("proxy", "serving", 8500),
    ("pipeline step", "serving", 8500),
    ("hub", "airflow api-server", 8080),
    ("proxy", "airflow api-server", 8080),  # Airflow's UI through the hub
    ("airflow api-server", "proxy", 8000),  # its hub login, by the public path
    ("airflow scheduler", "airflow api-server", 8080),
    ("airflow worker", "airflow api-server", 8080),
]
# and the ones a user, a pushed task or a stolen pod must not have
FORBIDDEN = [
    ("alice", "bob", 8888),  # a user's server is theirs
    ("alice", "proxy", 8001),  # the proxy's API routes everyone's traffic
    ("pipeline step", "proxy", 8001),
    ("serving", "proxy", 8001),
    ("pipeline step", "hub", 8081),  # a pushed task never reaches the hub ...
    ("airflow worker", "hub", 8081),
    ("airflow worker", "hub", 8090),
    ("pipeline step", "alice", 8888),  # ... nor a user's server
    ("airflow scheduler", "alice", 8888),
    ("alice", "airflow api-server", 8080),  # users see Airflow through the hub, not around it
    ("alice", "serving", 8500),
    ("alice", "app", 8501),
    ("mlflow", "hub", 8081),
    ("app", "mlflow", 5000),
    ("alice", "mlflow", 5000),  # MLflow only through its gate: nobody goes around it
    ("serving", "mlflow", 5000),
    ("pipeline step", "mlflow", 5000),
    ("app", "hub", 8091),
]


@pytest.mark.parametrize(("source", "destination", "port"), ALLOWED, ids=lambda v: str(v))
def test_each_path_the_platform_needs_is_open(policies: list, pods: dict, source, destination, port) -> None:
    assert allowed(policies, pods[source], pods[destination], port)


@pytest.mark.parametrize(("source", "destination", "port"), FORBIDDEN, ids=lambda v: str(v))
def test_paths_nobody_needs_are_closed(policies: list, pods: dict, source, destination, port) -> None:
    assert not allowed(policies, pods[source], pods[destination], port)


def test_the_evaluator_reads_policies_as_kubernetes_does() -> None:
    """Defaults the API server applies, so a FORBIDDEN test cannot pass on a misreading."""
    deny = {"metadata": {"namespace": "n"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    opens = {  # no policyTypes, egress rules: Egress too; a key with no value selects all
        "metadata": {"namespace": "n"},
        "spec": {"podSelector": None, "egress": [{"to": [{"podSelector": None}], "ports": [{"port": 22}]}]},
    }
    inbound = {"metadata": {"namespace": "n"}, "spec": {"podSelector": {}, "ingress": [{}]}}
    a, b = Endpoint("n", {"app": "a"}), Endpoint("n", {"app": "b"})

    assert not allowed([deny], a, b, 22)
    assert allowed([deny, opens, inbound], a, b, 22)
    assert not allowed([deny, opens, inbound], a, b, 23)
    assert policy_types(opens["spec"]) == ["Ingress", "Egress"]


def test_every_policy_names_its_types(policies: list) -> None:
    assert all("policyTypes" in policy["spec"] for policy in policies)


def test_outside_the_cluster_only_what_each_pod_needs(policies: list, pods: dict) -> None:
    github, metadata, private = outside("140.82.112.3"), outside("169.254.169.254"), outside("10.20.0.1")

    assert allowed(policies, pods["alice"], github, 443)  # git, pip
    assert not allowed(policies, pods["alice"], metadata, 80)  # node credentials
    assert not allowed(policies, pods["alice"], private, 443)  # the cluster's own addresses
    assert allowed(policies, pods["hub"], private, 6443)  # the Kubernetes API for KubeSpawner
    assert allowed(policies, pods["airflow scheduler"], private, 443)  # and for the executor
    assert not allowed(policies, pods["pipeline step"], metadata, 80)
    assert not allowed(policies, pods["mlflow"], metadata, 80)
    assert not allowed(policies, pods["serving"], github, 443)
    assert not allowed(policies, pods["app"], github, 443)
    # the public port of the proxy takes the Ingress controller (any namespace)
    assert allowed(policies, Endpoint("ingress-nginx", {"app": "ingress-nginx"}), pods["proxy"], 8000)
    assert not allowed(policies, Endpoint("ingress-nginx", {"app": "ingress-nginx"}), pods["proxy"], 8001)
    # DNS for everyone
    dns = Endpoint("kube-system", {"k8s-app": "kube-dns"})
    assert all(allowed(policies, pod, dns, 53) for pod in pods.values())


def test_airflow_chart_values_agree_with_local_mode() -> None:
    values = yaml.safe_load((DEPLOY / "airflow" / "values.yaml").read_text())
    pinned = re.search(
        r"^apache-airflow==(\S+)$", (ROOT / "requirements" / "airflow.txt").read_text(), re.MULTILINE
    )

    assert values["airflowVersion"] == pinned.group(1)
    assert values["executor"] == "KubernetesExecutor"
    assert values["dags"]["gitSync"]["enabled"] is False
    bundle, *slots = json.loads(values["config"]["dag_processor"]["dag_bundle_config_list"])
    # the preview slots as local mode configures them by default (same connection and DAG folder)
    assert slots == airflow.dag_bundles(load({"MLOPS_IDE_HOME": "/nonexistent"}))[1:]
    assert int(values["config"]["dag_processor"]["bundle_refresh_check_interval"]) <= airflow.PREVIEW_REFRESH
    assert "preview_policy import dag_policy" in values["airflowLocalSettings"]
    previews_env = next(item["value"] for item in values["env"] if item["name"] == previews.ENV)
    (mount,) = values["volumeMounts"]
    assert previews_env == f"{mount['mountPath']}/previews.json"  # a folder: the kubelet brings updates
    assert values["volumes"] == [
        {"name": mount["name"], "configMap": {"name": "mlops-ide-previews", "optional": True}}
    ]
    assert bundle["name"] == airflow.BUNDLE_NAME
    assert bundle["classpath"] == "airflow.providers.git.bundles.git.GitDagBundle"
    assert bundle["kwargs"]["git_conn_id"] == airflow.GIT_CONN_ID
    # the DAG folder the hub, the webhook and every user's `mlops-ide dag` use is the bundle's
    assert bundle["kwargs"].get("subdir", ".") == dag_folder.parse(settings_file()["MLOPS_IDE_DAGS_FOLDER"])
    assert bundle["kwargs"]["refresh_interval"] <= 60
    assert [item["envName"] for item in values["secret"]] == [
        f"AIRFLOW_CONN_{airflow.GIT_CONN_ID.upper()}",
        "MLFLOW_TRACKING_TOKEN",
    ]
    env = {item["name"]: item["value"] for item in values["env"]}
    assert env["MLOPS_IDE_PIPELINE_RUNNER"] == "kubernetes"
    assert env["MLOPS_IDE_PIPELINE_NAMESPACE"] == PIPELINE
    # from the pipeline's namespace, the platform's services by their full names
    assert env["MLFLOW_TRACKING_URI"] == f"http://hub.{PLATFORM}.svc:8091/services/mlflow"
    assert env["AIRFLOW_VAR_MLFLOW_TRACKING_URI"] == env["MLFLOW_TRACKING_URI"]  # for Variable.get at parse
    assert {
        "envName": "MLFLOW_TRACKING_TOKEN",
        "secretName": "mlflow-pipeline-token",
        "secretKey": "token",
    } in (values["secret"])
    assert env["MLOPS_IDE_SERVING_URL"] == f"http://serving.{PLATFORM}.svc:8500"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"  # as locally: no usage data to MLflow's makers
    assert "name: mlops-ide-pipeline-settings" in values["extraEnvFrom"]
    pod = values["securityContexts"]["pod"]
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert values["securityContexts"]["containers"]["capabilities"] == {"drop": ["ALL"]}  # the chart's key
    assert values["images"]["airflow"]["repository"].endswith("-airflow")
    assert (ROOT / "images" / "airflow" / "Dockerfile").is_file()


def test_third_party_images_are_the_local_versions_or_pinned_by_digest(built: list[dict]) -> None:
    install = (ROOT / "scripts" / "install.sh").read_text()
    chp_version = re.search(r"^CHP_VERSION=(\S+)$", install, re.MULTILINE).group(1)
    images = {
        container["image"]
        for template in pod_templates(built).values()
        for key in ("containers", "initContainers")
        for container in template["spec"].get(key, [])
    }
    third_party = {
        image for image in images if not image.startswith(settings_file()["MLOPS_IDE_IMAGE_PREFIX"])
    }

    assert third_party == {
        f"quay.io/jupyterhub/configurable-http-proxy:{chp_version}",  # as local mode runs it
        "registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a",
    }


def built_without_components() -> list[dict]:
    result = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_user_servers_can_have_hosts_of_their_own(tmp_path: Path) -> None:
    """components/user-subdomains (with MLOPS_IDE_USER_DOMAIN): the Ingress also takes
    *.<host>, with the wildcard in the certificate's hosts."""
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    with (deploy / "kustomization.yaml").open("a") as kustomization:
        kustomization.write("components:\n  - components/user-subdomains\n")
    result = subprocess.run(["kubectl", "kustomize", str(deploy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    ingress = find([doc for doc in yaml.safe_load_all(result.stdout) if doc], "Ingress", "hub")
    host = settings_file()["MLOPS_IDE_HUB_HOST"]

    for version in KUBERNETES_VERSIONS:
        validate(ingress, version)
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [host, f"*.{host}"]
    assert ingress["spec"]["tls"][0]["hosts"] == [host, f"*.{host}"]
    assert ingress["spec"]["rules"][1]["http"] == ingress["spec"]["rules"][0]["http"]
    proxy = find([doc for doc in yaml.safe_load_all(result.stdout) if doc], "Deployment", "proxy")
    (chp,) = proxy["spec"]["template"]["spec"]["containers"]
    assert "--host-routing" in chp["command"]  # the hub's routes are by host then
    plain = find(built_without_components(), "Deployment", "proxy")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert "--host-routing" not in plain["command"]
