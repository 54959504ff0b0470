"""What the skin-lesion DAGs share: where a step of src/skin_cancer/tasks.py runs, decided
at one point (`step`), and the settings they read. Not a DAG file (.airflowignore keeps
Airflow from parsing it): the DAG files import it, as Airflow 3 puts the bundle's folder
on sys.path for them, at parse time and when a task runs.

MLOPS_IDE_PIPELINE_RUNNER picks where steps run: `local`, the pipeline's virtualenv
(`@task.external_python`); `docker`, containers of images/pipeline on this machine
(DockerOperator, step_container.py); `kubernetes`, pods of that image
(KubernetesPodOperator). A step's arguments are one dict whatever the runner; its values
may be `Expr("params.epochs")` (a Jinja expression: a param, the run id) or
`output(other_step)`, and are rendered for each runner from the dict: native objects
locally, JSON (Jinja's `tojson`) on a container's command line.

No I/O and nothing heavy at import: environment variables and a path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# Declared in src/mlops_ide/settings/core.py (the settings table), read here from the
# environment Airflow gives its DAGs: the platform sets them locally, deploy/airflow on Kubernetes.
RUNNER = os.environ.get("MLOPS_IDE_PIPELINE_RUNNER", "local")
ON_KUBERNETES = RUNNER == "kubernetes"
IN_CONTAINERS = RUNNER in ("docker", "kubernetes")  # a step's arguments travel as JSON text
PIPELINE_PYTHON = os.environ.get("MLOPS_IDE_PIPELINE_PYTHON", "python3")
# images/pipeline as .github/workflows/images.yml names it: <prefix>-pipeline:<tag>
PIPELINE_IMAGE = os.environ.get("MLOPS_IDE_PIPELINE_IMAGE") or "{}-pipeline:{}".format(
    os.environ.get("MLOPS_IDE_IMAGE_PREFIX", "ghcr.io/mlops-ide/mlops-ide"),
    os.environ.get("MLOPS_IDE_IMAGE_TAG", "main"),
)
DATA_ROOT = os.environ.get("MLOPS_IDE_DATA_ROOT", "/data/skin-lesions")
# Pods share one volume (MLOPS_IDE_PIPELINE_CLAIM, at /data): the arrays go there.
WORK_ROOT = os.environ.get("MLOPS_IDE_WORK_ROOT", "/data/work" if ON_KUBERNETES else "/tmp/cnn-skin-cancer")
SERVING_URL = os.environ.get(
    "MLOPS_IDE_SERVING_URL", "http://serving:8500" if ON_KUBERNETES else "http://127.0.0.1:8500"
)
SRC = str(Path(__file__).resolve().parents[1] / "src")  # this commit's src/, beside dags/
# What every DAG of steps passes to @dag: run when asked, and locally "{{ params.epochs }}"
# must arrive as 10, not "10" (a container gets JSON text).
DAG_DEFAULTS = {"schedule": None, "catchup": False, "render_template_as_native_obj": not IN_CONTAINERS}


class Expr(str):
    """A Jinja expression whose value a step gets, e.g. Expr("params.epochs"), Expr("run_id")."""


class Output:
    """The return value of another step."""

    def __init__(self, step: Any) -> None:
        self.step = step


def output(step: Any) -> Output:
    return Output(step)


def run_step(src: str, step: str, arguments: dict):
    """In the pipeline's interpreter (its source is sent there): put this commit's src/
    first and run one step."""
    import sys

    sys.path.insert(0, src)
    from skin_cancer.tasks import STEPS

    return STEPS[step](**arguments)


def step(task_id: str, name: str, arguments: dict[str, Any]) -> Any:
    """One step, `name` in skin_cancer.tasks.STEPS, where MLOPS_IDE_PIPELINE_RUNNER says;
    it runs after every step whose output it takes."""
    if ON_KUBERNETES:
        return pod_step(task_id, name, arguments)
    if RUNNER == "docker":
        return container_step(task_id, name, arguments)
    from airflow.sdk import task  # its decorators load the standard provider (~30 ms): local steps only

    return task.external_python(task_id=task_id, python=PIPELINE_PYTHON, expect_airflow=False)(run_step)(
        SRC, name, native_arguments(arguments)
    )


def native_arguments(value: Any) -> Any:
    """For a local step: expressions as templates rendered to native objects, outputs as XComArgs."""
    if isinstance(value, Expr):
        return "{{ " + value + " }}"
    if isinstance(value, Output):
        return getattr(value.step, "output", value.step)  # an operator's, or a task's XComArg
    if isinstance(value, dict):
        return {key: native_arguments(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [native_arguments(item) for item in value]
    return value


def pod_step(task_id: str, name: str, arguments: dict[str, Any]) -> Any:
    """A pod of images/pipeline running `python -m skin_cancer.tasks <name> '<JSON arguments>'`."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    upstream: list[Any] = []
    operator = KubernetesPodOperator(
        task_id=task_id,
        name=task_id.replace("_", "-"),
        image=PIPELINE_IMAGE,
        cmds=[
            "python",
            "-m",
            "skin_cancer.tasks",
            name,
            "{{ " + jinja_literal(arguments, upstream) + " | tojson }}",
        ],
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        **pipeline_pod_settings(),
    )
    for before in upstream:
        before >> operator
    return operator


def container_step(task_id: str, name: str, arguments: dict[str, Any]) -> Any:
    """A container of images/pipeline on the pipeline's engine (DOCKER_HOST), running the
    pod's command (the image's entry point: `python -m skin_cancer.tasks`). The dataset is
    mounted read-only and the work folder read-write, each at the path the arguments name;
    the host's network (MLflow and serving listen on 127.0.0.1); removed once it ends."""
    from docker.types import Mount
    from step_container import StepContainer

    upstream: list[Any] = []
    operator = StepContainer(
        task_id=task_id,
        image=PIPELINE_IMAGE,
        command=[name, "{{ " + jinja_literal(arguments, upstream) + " | tojson }}"],
        docker_url=os.environ.get("DOCKER_HOST") or None,
        mounts=[
            Mount(target=DATA_ROOT, source=DATA_ROOT, type="bind", read_only=True),
            Mount(target=WORK_ROOT, source=WORK_ROOT, type="bind"),
        ],
        environment={
            "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", ""),
            # MLflow's telemetry as the platform set it for Airflow (machine/components/mlflow.py)
            **{name: os.environ[name] for name in ("MLFLOW_DISABLE_TELEMETRY",) if name in os.environ},
        },
        network_mode="host",
        mount_tmp_dir=False,  # the engine is the pipeline account's: a folder of the worker's is no use
        auto_remove="force",
        do_xcom_push=True,
    )
    for before in upstream:
        before >> operator
    return operator


def jinja_literal(value: Any, upstream: list[Any]) -> str:
    """`value` as a Jinja expression: expressions as they are, outputs as XCom pulls (their
    steps added to `upstream`), everything else as a literal."""
    if isinstance(value, Expr):
        return f"({value})"
    if isinstance(value, Output):
        upstream.append(value.step)
        return f"ti.xcom_pull(task_ids={json.dumps(value.step.task_id)})"
    if isinstance(value, dict):
        items = ", ".join(
            f"{json.dumps(str(key))}: {jinja_literal(item, upstream)}" for key, item in value.items()
        )
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(jinja_literal(item, upstream) for item in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "none", True: "true", False: "false"}[value]
    if isinstance(value, str | int | float):
        return json.dumps(value)
    raise TypeError(f"a step argument must be JSON-like, an Expr or an output, not {type(value).__name__}")


def pipeline_pod_settings() -> dict[str, Any]:
    """What every pipeline pod gets: MLflow, the shared data volume, limits, and what the
    Pod Security Standard "restricted" asks (non-root, no escalation, no capabilities,
    RuntimeDefault seccomp), with a read-only root: it writes to /data and /tmp only."""
    from kubernetes.client import models as k8s

    return {
        "namespace": os.environ.get("MLOPS_IDE_PIPELINE_NAMESPACE") or None,
        "labels": {"component": "pipeline-step"},
        # HOME: Keras and MLflow keep their caches there
        "env_vars": [
            k8s.V1EnvVar(
                name="MLFLOW_TRACKING_URI",
                value=os.environ.get("MLFLOW_TRACKING_URI", "http://hub.mlops-ide.svc:8091/services/mlflow"),
            ),
            # the pipeline's hub token for MLflow's gate, from its Secret (never in the DAG)
            k8s.V1EnvVar(
                name="MLFLOW_TRACKING_TOKEN",
                value_from=k8s.V1EnvVarSource(
                    secret_key_ref=k8s.V1SecretKeySelector(name="mlflow-pipeline-token", key="token")
                ),
            ),
            k8s.V1EnvVar(name="HOME", value="/tmp"),
            # MLflow's telemetry as Airflow has it (deploy/airflow/values.yaml: off)
            *[
                k8s.V1EnvVar(name=name, value=os.environ[name])
                for name in ("MLFLOW_DISABLE_TELEMETRY",)
                if name in os.environ
            ],
        ],
        "volumes": [
            k8s.V1Volume(
                name="pipeline-data",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=os.environ.get("MLOPS_IDE_PIPELINE_CLAIM", "pipeline-data")
                ),
            ),
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="4Gi")),
        ],
        "volume_mounts": [
            k8s.V1VolumeMount(name="pipeline-data", mount_path="/data"),
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
        ],
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": "1", "memory": "2Gi"}, limits={"cpu": "4", "memory": "8Gi"}
        ),
        "security_context": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "container_security_context": LOCKED_DOWN,
        # the sidecar that hands the step's result back to Airflow
        "xcom_sidecar_container_security_context": LOCKED_DOWN,
    }


LOCKED_DOWN = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
