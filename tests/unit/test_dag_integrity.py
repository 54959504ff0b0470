"""Every DAG file imports cleanly with the network and the database out of reach, and
its top-level body is cheap: the equivalent of `astro dev parse`, run in Airflow's venv."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mlops_ide.machine.state.tools import Tools
from tests.support.kubernetes_hub_tools import KUBERNETES_VERSIONS, validate
from tests.support.local_platform import ROOT
from tests.support.pod_security import restricted_problems

DAGS = ROOT / "dags"
CHECKER = ROOT / "src" / "mlops_ide" / "portable" / "dag_check.py"
BODY_LIMIT_SECONDS = 0.5  # the target is 50 ms (bench/dag_parse.py prints it); generous here


def check_dags(folder: Path) -> dict[str, dict]:
    result = subprocess.run(
        [str(Tools.load().airflow_python), str(CHECKER), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return {entry["file"]: entry for entry in json.loads(result.stdout)["files"]}


@pytest.fixture(scope="module")
def repository_dags() -> dict[str, dict]:
    return check_dags(DAGS)


def test_every_dag_file_imports_without_error(repository_dags: dict[str, dict]) -> None:
    assert repository_dags, "no DAG files found"
    assert {name: entry["error"] for name, entry in repository_dags.items() if entry["error"]} == {}


def test_every_dag_file_defines_a_dag(repository_dags: dict[str, dict]) -> None:
    assert [name for name, entry in repository_dags.items() if not entry["dags"]] == []


def test_every_dag_file_body_is_cheap(repository_dags: dict[str, dict]) -> None:
    slow = {
        name: entry["body_seconds"]
        for name, entry in repository_dags.items()
        if entry["body_seconds"] > BODY_LIMIT_SECONDS
    }
    assert slow == {}


def test_the_push_hooks_anchor_dag_is_there(repository_dags: dict[str, dict]) -> None:
    assert repository_dags["platform_smoke_test.py"]["dags"] == ["platform_smoke_test"]


BAD_DAG_FILES = {
    "socket": (
        "import socket\nsocket.create_connection(('127.0.0.1', 9))\n",
        "must not open network connections",
    ),
    "http": (
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9/')\n",
        "must not open network connections",
    ),
    # clients that retry with a back-off (MLflow's, requests with urllib3's Retry): the check
    # fails at the DAG's line at once, not at Airflow's import timeout after their retries
    "mlflow_client": (
        "import mlflow\nclient = mlflow.MlflowClient('http://127.0.0.1:9')\n"
        "client.get_model_version_by_alias('m', 'champion')\n",
        "must not open network connections",
    ),
    "requests_retry": (
        "import requests\nfrom requests.adapters import HTTPAdapter, Retry\nsession = requests.Session()\n"
        "session.mount('http://', HTTPAdapter(max_retries=Retry(total=8, backoff_factor=2)))\n"
        "session.get('http://127.0.0.1:9/')\n",
        "must not open network connections",
    ),
    "variable_get": ("from airflow.sdk import Variable\nVariable.get('model_name')\n", ""),
    "syntax": ("def broken(:\n", "SyntaxError"),
    "missing_import": ("import module_that_is_not_installed\n", "ModuleNotFoundError"),
}


@pytest.fixture(scope="module")
def bad_dags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("bad_dags")
    for name, (body, _) in BAD_DAG_FILES.items():
        (folder / f"{name}.py").write_text(f"# an Airflow DAG file\n{body}")
    (folder / "helpers").mkdir()  # a sub-folder: Airflow looks there too
    (folder / "helpers" / "nested_dag.py").write_text("# an Airflow DAG\nraise ValueError('nested')\n")
    (folder / "helpers" / "plain.py").write_text("raise ValueError('no DAG here')\n")
    (folder / ".airflowignore").write_text("ignored_*\n")
    (folder / "ignored_dag.py").write_text("# an Airflow DAG\nraise ValueError('ignored')\n")
    return check_dags(folder)


def test_the_check_takes_the_files_airflows_discovery_takes(bad_dags: dict[str, dict]) -> None:
    # Airflow's own list_py_file_paths: sub-folders, .airflowignore, and its safe mode (a
    # file that does not mention both "airflow" and "dag" is not a DAG file, in Airflow either)
    assert (
        "helpers/nested_dag.py" in bad_dags
        and "ValueError: nested" in bad_dags["helpers/nested_dag.py"]["error"]
    )
    assert "helpers/plain.py" not in bad_dags and "ignored_dag.py" not in bad_dags


@pytest.mark.parametrize("name", BAD_DAG_FILES)
def test_the_check_catches_work_at_import(bad_dags: dict[str, dict], name: str) -> None:
    found = bad_dags[f"{name}.py"]["error"]

    assert found is not None and BAD_DAG_FILES[name][1] in found


def render_steps(runner: str, *preview: str, **env: str) -> dict[str, dict]:
    """What each step task of the DAGs would start with `runner` (tests/support/render_step_commands.py),
    as DAGs of the `preview` branch when one is named."""
    result = subprocess.run(
        [
            str(Tools.load().airflow_python),
            str(ROOT / "tests" / "support" / "render_step_commands.py"),
            runner,
            *preview,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def pods() -> dict[str, dict]:
    return render_steps("kubernetes", MLFLOW_DISABLE_TELEMETRY="true")  # as deploy/airflow/values.yaml


# what the platform gives Airflow with MLOPS_IDE_PIPELINE_RUNNER=docker (machine/components/airflow.py)
CONTAINER_ENV = {
    "DOCKER_HOST": "unix:///state/pipeline-engine/podman.sock",
    "MLOPS_IDE_PIPELINE_IMAGE": "localhost/mlops-ide-pipeline:local",
    "MLOPS_IDE_DATA_ROOT": "/state/data/skin-lesions",
    "MLOPS_IDE_WORK_ROOT": "/state/pipeline-runs",
    "MLOPS_IDE_SERVING_URL": "http://127.0.0.1:8500",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000/services/mlflow",
    "MLFLOW_TRACKING_TOKEN": "pipeline-token-0123456789",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


@pytest.fixture(scope="module")
def containers() -> dict[str, dict]:
    return render_steps("docker", **CONTAINER_ENV)


def test_every_pipeline_pod_is_valid_for_kubernetes(pods: dict[str, dict]) -> None:
    for name, rendered in pods.items():
        pod = rendered["pod"]
        for version in KUBERNETES_VERSIONS:
            validate(pod, version)
        spec = pod["spec"]
        (step,) = [container for container in spec["containers"] if container["name"] == "base"]
        env = {item["name"]: item for item in step["env"]}
        assert env["MLFLOW_TRACKING_URI"]["value"] == "http://hub.mlops-ide.svc:8091/services/mlflow", name
        assert env["MLFLOW_DISABLE_TELEMETRY"]["value"] == "true", name  # as Airflow has it
        token = env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]  # from its Secret, never inline
        assert token == {"name": "mlflow-pipeline-token", "key": "token"}, name
        assert {"mountPath": "/data", "name": "pipeline-data"} in step["volumeMounts"], name
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
        ]
        assert claims == ["pipeline-data"], name
        assert step["resources"]["limits"]["memory"] == "8Gi", name
        # what the pipeline namespace's Pod Security "restricted" and NetworkPolicies expect
        assert restricted_problems(spec) == [], name
        assert step["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert pod["metadata"]["labels"]["component"] == "pipeline-step", name
        assert pod["metadata"]["namespace"] == "pipelines", name


PREVIEW_TOKEN = {"secretKeyRef": {"name": "mlflow-preview-token", "key": "token"}}


def test_a_previews_pod_steps_get_the_preview_token_from_its_secret_never_a_value() -> None:
    """The real DAGs and KubernetesPodOperator, through the previews' cluster policy: each pod
    takes MLFLOW_TRACKING_TOKEN from the Secret mlflow-preview-token (hub service
    `pipeline-preview`, never `champion`) in place of the pipeline's, once, and neither the
    pod's spec nor the DAG as Airflow stores it holds a token or a template to render one."""
    token = "the-preview-token-0123456789abcdef"
    environment = {"MLFLOW_DISABLE_TELEMETRY": "true", "AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN": token}
    pods = render_steps("kubernetes", "preview/alice/lr", **environment)
    assert "cnn_skin_cancer_workflow__alice_lr.train_resnet50" in pods
    for name, rendered in pods.items():
        (step,) = [c for c in rendered["pod"]["spec"]["containers"] if c["name"] == "base"]
        tokens = [item for item in step["env"] if item["name"] == "MLFLOW_TRACKING_TOKEN"]
        assert tokens == [{"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": PREVIEW_TOKEN}], name
        env = {item["name"]: item for item in step["env"]}
        assert env["MLFLOW_EXPERIMENT_NAME"]["value"] == "preview/alice/lr", name
        assert env["MLFLOW_TRACKING_URI"]["value"] == "http://hub.mlops-ide.svc:8091/services/mlflow", name
        for text in (json.dumps(rendered["pod"]), rendered["serialized"]):
            assert token not in text and "var.value" not in text and "mlflow-pipeline-token" not in text, name
        for version in KUBERNETES_VERSIONS:
            validate(rendered["pod"], version)


def test_every_pod_step_gets_valid_json_arguments_on_kubernetes(pods: dict[str, dict]) -> None:

    assert set(pods) == {
        "cnn_skin_cancer_workflow.preprocess",
        "cnn_skin_cancer_workflow.train_basic_cnn",
        "cnn_skin_cancer_workflow.train_crossval",
        "cnn_skin_cancer_workflow.train_resnet50",
        "cnn_skin_cancer_workflow.compare",
        "cnn_skin_cancer_workflow.reload_serving",
        "cnn_skin_cancer_test_inference.check_serving",
    }
    assert pods["cnn_skin_cancer_workflow.preprocess"]["arguments"]["image_size"] == 64
    train = pods["cnn_skin_cancer_workflow.train_crossval"]
    assert train["step"] == "train"
    assert train["arguments"] == {
        "kind": "crossval",
        "arrays": "/work/preprocess/arrays",
        "run_id": "manual__test",
        "params": {"epochs": 10},
    }
    assert [r["kind"] for r in pods["cnn_skin_cancer_workflow.compare"]["arguments"]["results"]] == [
        "train_basic_cnn",
        "train_crossval",
        "train_resnet50",
    ]
    check = pods["cnn_skin_cancer_test_inference.check_serving"]["arguments"]
    assert (check["limit"], check["min_accuracy"]) == (20, 0.9)


def test_the_dags_shared_steps_module_is_not_parsed_as_a_dag_file(repository_dags: dict[str, dict]) -> None:
    """dags/pipeline_steps.py is imported by the DAG files; .airflowignore keeps Airflow
    (and this check, which reads the same file) from parsing it on its own."""
    assert (DAGS / "pipeline_steps.py").exists()
    assert "pipeline_steps.py" not in repository_dags
    assert {"cnn_skin_cancer_workflow.py", "cnn_skin_cancer_test_inference.py"} <= set(repository_dags)


def test_every_container_step_runs_what_its_pod_runs(containers: dict[str, dict]) -> None:
    """One DAG body, three runners: with MLOPS_IDE_PIPELINE_RUNNER=docker every step is a
    container of the pipeline image given the same step and JSON arguments as its pod
    (with the same settings)."""
    pods = render_steps("kubernetes", **CONTAINER_ENV)
    assert {name: (task["step"], task["arguments"]) for name, task in containers.items()} == {
        name: (task["step"], task["arguments"]) for name, task in pods.items()
    }
    assert {task["image"] for task in containers.values()} == {"localhost/mlops-ide-pipeline:local"}


def test_every_container_step_mounts_the_dataset_read_only_and_holds_no_credential(
    containers: dict[str, dict],
) -> None:
    """The dataset read-only and the work folder at the paths the arguments name; the
    platform's engine (DOCKER_HOST), not the machine's; removed once it ends. MLflow's
    token is read from the worker's environment when the step runs: none in the task as
    parsed nor as Airflow stores it."""
    token = CONTAINER_ENV["MLFLOW_TRACKING_TOKEN"]
    for name, task in containers.items():
        container = task["container"]
        assert container["mounts"] == [
            {
                "Target": "/state/data/skin-lesions",
                "Source": "/state/data/skin-lesions",
                "Type": "bind",
                "ReadOnly": True,
            },
            {
                "Target": "/state/pipeline-runs",
                "Source": "/state/pipeline-runs",
                "Type": "bind",
                "ReadOnly": False,
            },
        ], name
        assert container["docker_url"] == CONTAINER_ENV["DOCKER_HOST"], name
        assert container["environment"] == {
            "MLFLOW_TRACKING_URI": CONTAINER_ENV["MLFLOW_TRACKING_URI"],
            "MLFLOW_DISABLE_TELEMETRY": "true",  # as Airflow has it: MLflow's telemetry off
        }, name
        assert (container["network_mode"], container["auto_remove"]) == ("host", "force"), name
        assert container["mount_tmp_dir"] is False and container["privileged"] is False, name
        assert container["private_environment"] == {}, name
        assert token not in task["serialized"] and token not in json.dumps(container), name
