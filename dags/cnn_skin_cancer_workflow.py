"""CNN skin-lesion classification: preprocess once, train three models in parallel,
register each in MLflow, make the best the `champion`, and have serving load it.

Where the steps run is one setting, MLOPS_IDE_PIPELINE_RUNNER: `local` runs them in the
pipeline's virtualenv (`@task.external_python`), `kubernetes` in pods of images/pipeline
(KubernetesPodOperator). The step functions are the same (src/skin_cancer/tasks.py), and
they come from this commit of the repository, like the DAG.

Nothing heavy happens at import: environment variables and a path, no I/O.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from airflow.sdk import dag, task

RUNNER = os.environ.get("MLOPS_IDE_PIPELINE_RUNNER", "local")
PIPELINE_PYTHON = os.environ.get("MLOPS_IDE_PIPELINE_PYTHON", "python3")
# images/pipeline as .github/workflows/images.yml names it: <prefix>-pipeline:<tag>
# (MLOPS_IDE_IMAGE_PREFIX and MLOPS_IDE_IMAGE_TAG from deploy/settings.env).
PIPELINE_IMAGE = os.environ.get("MLOPS_IDE_PIPELINE_IMAGE") or "{}-pipeline:{}".format(
    os.environ.get("MLOPS_IDE_IMAGE_PREFIX", "ghcr.io/mlops-ide/mlops-ide"),
    os.environ.get("MLOPS_IDE_IMAGE_TAG", "main"),
)
DATA_ROOT = os.environ.get("MLOPS_IDE_DATA_ROOT", "/data/skin-lesions")
# Pods share one volume (MLOPS_IDE_PIPELINE_CLAIM, at /data): the arrays go there.
WORK_ROOT = os.environ.get(
    "MLOPS_IDE_WORK_ROOT", "/data/work" if RUNNER == "kubernetes" else "/tmp/cnn-skin-cancer"
)
SERVING_URL = os.environ.get(
    "MLOPS_IDE_SERVING_URL", "http://serving:8500" if RUNNER == "kubernetes" else "http://127.0.0.1:8500"
)
SRC = str(Path(__file__).resolve().parents[1] / "src")  # this commit's src/, beside dags/
KINDS = ("basic_cnn", "crossval", "resnet50")


def run_step(src: str, step: str, arguments: dict):
    """In the pipeline's interpreter: put this commit's src/ first and run one step."""
    import sys

    sys.path.insert(0, src)
    from skin_cancer.tasks import STEPS

    return STEPS[step](**arguments)


def local_step(task_id: str, name: str, arguments: dict):
    return task.external_python(task_id=task_id, python=PIPELINE_PYTHON, expect_airflow=False)(run_step)(
        SRC, name, arguments
    )


def pod_step(task_id: str, name: str, arguments_json: str):
    """A pod of images/pipeline; `arguments_json` is a template of the step's JSON arguments."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    return KubernetesPodOperator(
        task_id=task_id,
        name=task_id.replace("_", "-"),
        image=PIPELINE_IMAGE,
        cmds=["python", "-m", "skin_cancer.tasks", name, arguments_json],
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        **pipeline_pod_settings(),
    )


def pipeline_pod_settings() -> dict:
    """What every pipeline pod gets: MLflow, the shared data volume, limits, non-root.
    (Kept in step with the copy in cnn_skin_cancer_test_inference.py.)"""
    from kubernetes.client import models as k8s

    return {
        "namespace": os.environ.get("MLOPS_IDE_PIPELINE_NAMESPACE") or None,
        "env_vars": {"MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", "http://mlflow:5000")},
        "volumes": [
            k8s.V1Volume(
                name="pipeline-data",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=os.environ.get("MLOPS_IDE_PIPELINE_CLAIM", "pipeline-data")
                ),
            )
        ],
        "volume_mounts": [k8s.V1VolumeMount(name="pipeline-data", mount_path="/data")],
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": "1", "memory": "2Gi"}, limits={"cpu": "4", "memory": "8Gi"}
        ),
        "security_context": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
        "container_security_context": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def epochs_of(kind: str) -> str:
    return "2" if kind == "resnet50" else "{{ params.epochs }}"  # ResNet50 is slow on CPUs


@dag(
    dag_id="cnn_skin_cancer_workflow",
    schedule=None,
    catchup=False,
    tags=["skin-cancer", "training", "mlflow"],
    doc_md=__doc__,
    params={"epochs": 10, "image_size": 64},
    # Locally, "{{ params.epochs }}" must arrive as 10, not "10"; pods get JSON text.
    render_template_as_native_obj=RUNNER != "kubernetes",
)
def cnn_skin_cancer_workflow():
    if RUNNER == "kubernetes":
        arrays = pod_step(
            "preprocess",
            "preprocess",
            json.dumps({"data_root": DATA_ROOT, "work_root": WORK_ROOT, "run_id": "{{ run_id }}"})[:-1]
            + ', "image_size": {{ params.image_size }}}',
        )
        trained = [
            pod_step(
                f"train_{kind}",
                "train",
                f'{{"kind": "{kind}", "arrays": {{{{ ti.xcom_pull("preprocess") | tojson }}}}, '
                f'"run_id": "{{{{ run_id }}}}", "params": {{"epochs": {epochs_of(kind)}}}}}',
            )
            for kind in KINDS
        ]
        task_ids = json.dumps([f"train_{kind}" for kind in KINDS])
        champion = pod_step(
            "compare", "compare", f'{{"results": {{{{ ti.xcom_pull(task_ids={task_ids}) | tojson }}}}}}'
        )
        reload = pod_step("reload_serving", "reload_serving", json.dumps({"serving_url": SERVING_URL}))
        arrays >> trained >> champion
    else:
        arrays = local_step(
            "preprocess",
            "preprocess",
            {
                "data_root": DATA_ROOT,
                "work_root": WORK_ROOT,
                "run_id": "{{ run_id }}",
                "image_size": "{{ params.image_size }}",
            },
        )
        trained = [
            local_step(
                f"train_{kind}",
                "train",
                {
                    "kind": kind,
                    "arrays": arrays,
                    "run_id": "{{ run_id }}",
                    "params": {"epochs": epochs_of(kind)},
                },
            )
            for kind in KINDS
        ]
        champion = local_step("compare", "compare", {"results": trained})
        reload = local_step("reload_serving", "reload_serving", {"serving_url": SERVING_URL})
    champion >> reload


cnn_skin_cancer_workflow()
